"""Deformable Sampling Plugin (DSP): learned offsets move where image features are read."""

from typing import Dict, Tuple

import torch
from torch import nn
from torch.nn import functional as F


def is_tracing() -> bool:
    """True while torch.jit / torch.onnx trace the model: the plugins then use plain,
    out-of-place ops (no chunking, caches or in-place kernels) that export to standard ONNX."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class DeformableSamplingPlugin(nn.Module):
    """x_p -> (x*_{p+Δp}, Δp).

    x*_p = Conv1x1(x_p); Δp = range * tanh(Conv1x1(GELU(LN(DWConv(x*_p))))), in grid cells;
    x*_{p+Δp} is x*_p sampled bilinearly at p + Δp. Initialised as the identity: the first
    1x1 conv is the identity matrix and the offset conv is zero, so x*_{p+Δp} = x_p.

    Features travel in the decoder's token layout (B, H*W, C) throughout; viewed as
    (B, C, H, W) that layout is channels-last, so no layout copies are needed around the
    1x1 convs (plain matmuls) or the depth-wise conv.
    """

    def __init__(self, embed_dim: int = 256, kernel_size: int = 5, offset_range: float = 4.0):
        super().__init__()
        self.offset_range = float(offset_range)
        self.proj = nn.Linear(embed_dim, embed_dim)  # the 1x1 conv producing x*_p
        self.dwconv = nn.Conv2d(
            embed_dim, embed_dim, kernel_size, padding=kernel_size // 2, groups=embed_dim
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.offset = nn.Linear(embed_dim, 2)  # the 1x1 conv to (Δx, Δy)
        self._grids: Dict[Tuple, torch.Tensor] = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.eye_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)
        nn.init.zeros_(self.offset.weight)
        nn.init.zeros_(self.offset.bias)

    def cell_grid(self, h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """(x, y) index of every cell, (h, w, 2), cached per size/device/dtype."""
        key = (h, w, device, dtype)
        grid = None if is_tracing() else self._grids.get(key)
        if grid is None:
            ys, xs = torch.meshgrid(
                torch.arange(h, device=device, dtype=dtype),
                torch.arange(w, device=device, dtype=dtype),
                indexing="ij",
            )
            grid = torch.stack((xs, ys), dim=-1)
            if not is_tracing():
                self._grids[key] = grid
        return grid

    def compute_offsets(self, x_star: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """x_star: (B, h*w, C) -> Δp: (B, h, w, 2) in grid cells, (dx, dy)."""
        b, _, c = x_star.shape
        spatial = x_star.view(b, h, w, c).permute(0, 3, 1, 2)  # channels-last view, no copy
        d = self.dwconv(spatial).permute(0, 2, 3, 1)  # (B, h, w, C)
        d = self.norm(d)
        d = F.gelu(d) if torch.is_grad_enabled() or is_tracing() else torch.ops.aten.gelu_(d)
        return self.offset_range * torch.tanh(self.offset(d))

    def sample(self, x: torch.Tensor, offsets: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Bilinear sampling of x (B, h*w, C) at p + offsets (B, h, w, 2) -> (B, h*w, C).

        Computes what `grid_sample(mode="bilinear", padding_mode="border",
        align_corners=False)` computes on the (B, C, h, w) map, but gathers rows of the token
        layout directly (an `embedding_bag` of the 4 corners with their bilinear weights), so
        neither the input nor the output changes layout. While tracing (ONNX export) the same
        sum is four row gathers (ONNX Gather), each weighted and added.
        """
        b, n, c = x.shape
        pos = self.cell_grid(h, w, x.device, x.dtype) + offsets
        px = pos[..., 0].clamp(0, w - 1)
        py = pos[..., 1].clamp(0, h - 1)
        x0, y0 = px.detach().floor(), py.detach().floor()
        fx, fy = px - x0, py - y0
        x0, y0 = x0.long(), y0.long()
        x1, y1 = (x0 + 1).clamp(max=w - 1), (y0 + 1).clamp(max=h - 1)
        row0 = y0 * w + torch.arange(b, device=x.device).view(b, 1, 1) * n
        row1 = y1 * w + (row0 - y0 * w)
        index = torch.stack((row0 + x0, row0 + x1, row1 + x0, row1 + x1), dim=-1)
        gx, gy = 1 - fx, 1 - fy
        weight = torch.stack((gx * gy, fx * gy, gx * fy, fx * fy), dim=-1)
        if is_tracing():
            rows, index, weight = x.reshape(b * n, c), index.view(b * n, 4), weight.view(b * n, 4, 1)
            out = sum(rows[index[:, i]] * weight[:, i] for i in range(4))
            return out.view(b, n, c)
        out = F.embedding_bag(
            index.view(-1, 4), x.reshape(b * n, c), per_sample_weights=weight.view(-1, 4), mode="sum"
        )
        return out.view(b, n, c)

    def forward(self, x: torch.Tensor, h: int, w: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """x: (B, h*w, C) image features x_p -> (x*_{p+Δp} (B, h*w, C), Δp (B, h, w, 2))."""
        x_star = self.proj(x)
        offsets = self.compute_offsets(x_star, h, w)
        return self.sample(x_star, offsets, h, w), offsets
