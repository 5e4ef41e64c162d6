"""What the mask token looks at: the token-to-image attention of SAM's decoder layer 2.

Stable-SAM's argument is that a sloppy prompt makes the output token's attention drift to the
background or to one part of the object, and that the plugins pull it back. `AttentionProbe`
records, for every decoder call while it is active, the attention weights of one output token
(by default the single-mask token) over the image grid in layer 2's token-to-image attention,
averaged over heads, from the keys that attention really used (with the plugins on, the routed
mix of deformed and regular features). It hooks SAM's own `Attention` module and recomputes its
softmax from the module's own projections; nothing in the decoder changes.
"""

import math
from typing import List, Optional

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import nn
from torch.nn import functional as F

SINGLE_MASK_TOKEN = 1  # decoder tokens: [IoU token, 4 mask tokens, prompt tokens]; index 1 = single-mask output


def attention_weights(module: nn.Module, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """softmax(q_proj(q) k_proj(k)^T / sqrt(d)) of a segment_anything `Attention`, per head:
    (B, heads, N_q, N_k) for q (B, N_q, C), k (B, N_k, C)."""
    qh = module._separate_heads(module.q_proj(q), module.num_heads)
    kh = module._separate_heads(module.k_proj(k), module.num_heads)
    return torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1]), dim=-1)


def token_to_image_attention(sam: Sam, layer: int = 1) -> nn.Module:
    """SAM's token-to-image attention module of decoder layer `layer` (0-based; 1 = layer 2)."""
    return sam.mask_decoder.transformer.layers[layer].cross_attn_token_to_image


class AttentionProbe:
    """Context manager: records (B, h*w) head-averaged attention of output token `token` in each
    decoder call, in `self.maps` (one tensor per call, on the CPU)."""

    def __init__(self, sam: Sam, token: int = SINGLE_MASK_TOKEN, layer: int = 1):
        self.module, self.token = token_to_image_attention(sam, layer), token
        self.maps: List[torch.Tensor] = []
        self._handle = None

    def _record(self, module: nn.Module, args, kwargs, output) -> None:
        q, k = (kwargs["q"], kwargs["k"]) if "q" in kwargs else args[:2]
        with torch.no_grad():
            attn = attention_weights(module, q[:, self.token:self.token + 1], k)  # (B, heads, 1, h*w)
        self.maps.append(attn.mean(1)[:, 0].float().cpu())

    def __enter__(self) -> "AttentionProbe":
        self.maps = []
        self._handle = self.module.register_forward_hook(self._record, with_kwargs=True)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def last(self) -> Optional[torch.Tensor]:
        """All maps of the calls so far as one (N, h*w) tensor (several decoder passes concatenated)."""
        return torch.cat(self.maps) if self.maps else None


def grid_fraction(mask: np.ndarray, img_size: int, grid: tuple) -> np.ndarray:
    """(H, W) bool mask -> (h, w) fraction of each embedding cell it covers, in SAM's padded
    input frame (resize the longest side to img_size, pad bottom/right)."""
    h, w = mask.shape
    nh, nw = ResizeLongestSide.get_preprocess_shape(h, w, img_size)
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    t = F.interpolate(t, (nh, nw), mode="bilinear", align_corners=False)
    t = F.pad(t, (0, img_size - nw, 0, img_size - nh))
    return F.interpolate(t, grid, mode="area")[0, 0].numpy()


def reads_from(maps: np.ndarray, offsets: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Where Stable-SAM's attention takes its features from: the key at cell p holds
    α2·x_p + α1·x_{p+Δp}, so a weight a_p on it reads (1 - α1)·a_p at p and α1·a_p at p + Δp,
    spread bilinearly over the four cells around p + Δp (border-clamped, as the sampling).

    maps (N, h*w), offsets (N, h, w, 2) in cells (x, y), alpha (N, 2) -> (N, h*w)."""
    n, h, w = offsets.shape[:3]
    out = maps * (1 - alpha[:, :1])
    ys, xs = np.mgrid[:h, :w]
    for i in range(n):
        a = (maps[i] * alpha[i, 0]).reshape(h, w)
        px = np.clip(xs + offsets[i, ..., 0], 0, w - 1)
        py = np.clip(ys + offsets[i, ..., 1], 0, h - 1)
        x0, y0 = np.floor(px).astype(int), np.floor(py).astype(int)
        x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        fx, fy = px - x0, py - y0
        for yy, xx, wt in ((y0, x0, (1 - fx) * (1 - fy)), (y0, x1, fx * (1 - fy)),
                           (y1, x0, (1 - fx) * fy), (y1, x1, fx * fy)):
            np.add.at(out[i], (yy * w + xx).ravel(), (a * wt).ravel())
    return out


def mass_inside(maps, fraction: np.ndarray) -> np.ndarray:
    """Share of each (N, h*w) attention map that falls inside the object: sum(attn * fraction)."""
    maps = maps.numpy() if isinstance(maps, torch.Tensor) else maps
    return (maps * fraction.reshape(1, -1)).sum(1)
