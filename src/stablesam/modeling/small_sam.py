"""Builder for SAMs with a small image encoder and SAM's standard prompt encoder and decoder.

The architecture is a plain dict (stored inside stablesam SAM files), e.g.
{"encoder": "vit", "img_size": 256, "patch_size": 16, "embed_dim": 32, "depth": 1,
 "num_heads": 2, "window_size": 0, "global_attn_indexes": []}
or, for the compact convolutional encoder of the embedded tiny SAM v2 (`TINY_SAM_ARCH`: a
4-stage pyramid, strides 4-32, depth-wise kernels 3/3/5/7, 2.94 M parameters),
{"encoder": "conv", "img_size": 512, "patch_size": 16, "widths": [48, 96, 192, 320],
 "depths": [2, 2, 6, 2], "kernel_size": [3, 3, 5, 7], "expansion": 2}.
v1 (3 stages, 3 x 3 kernels, 1.64 M) was {"widths": [32, 64, 192], "depths": [1, 2, 6], "kernel_size": 3}.
"""

from functools import partial
from typing import Any, Dict, Sequence, Union

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from torch import nn
from torch.nn import functional as F

PROMPT_EMBED_DIM = 256
ENCODERS = ("vit", "conv")

# The embedded tiny SAM's architecture: 512 px input, 32 x 32 x 256 image embedding.
TINY_SAM_ARCH: Dict[str, Any] = {
    "encoder": "conv", "img_size": 512, "patch_size": 16,
    "widths": [48, 96, 192, 320], "depths": [2, 2, 6, 2], "kernel_size": [3, 3, 5, 7], "expansion": 2,
}


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (what segment_anything's LayerNorm2d
    computes), as one fused kernel on the NHWC view of a channels_last tensor."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvBlock(nn.Module):
    """ConvNeXt-style residual block: depth-wise k x k conv -> LayerNorm -> Linear (expand)
    -> GELU -> Linear (project) -> per-channel scale, added to the input.

    The Linears run on the NHWC view of a channels_last tensor (plain GEMMs, no copies)."""

    def __init__(self, dim: int, kernel_size: int = 3, expansion: int = 2, layer_scale: float = 0.1):
        super().__init__()
        self.dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, dim * expansion)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(dim * expansion, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.norm(y)))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvImageEncoder(nn.Module):
    """A compact conv net with SAM's neck; built from torch modules only.

    (B, 3, img_size, img_size) -> (B, out_chans, img_size / out_stride, img_size / out_stride).
    - stem: 4 x 4 stride-4 conv to widths[0] + channel LayerNorm;
    - 3 or 4 stages at strides 4, 8, 16 (, 32) of depths[i] `ConvBlock`s at widths[i] channels
      with kernel_sizes[i] depth-wise kernels, each after the first entered through channel
      LayerNorm + 2 x 2 stride-2 conv;
    - neck as SAM's ViT encoder: 1 x 1 conv to out_chans -> LayerNorm -> 3 x 3 conv -> LayerNorm.
      With out_stride 8, or a stride-32 stage, the 1 x 1 conv is a feature pyramid's top-down
      path: every stage at stride >= out_stride gets its own 1 x 1 conv, upsampled (bilinear) to
      out_stride and summed, so a fine grid still sees the deepest stage's receptive field.
    Runs in channels_last memory format: PyTorch's CPU backward of depth-wise convs is ~20x
    faster there. `img_size` is what SamPredictor and stablesam's cache read.
    """

    def __init__(
        self,
        img_size: int = 512,
        widths: Sequence[int] = (32, 64, 192),
        depths: Sequence[int] = (1, 2, 6),
        kernel_size: Union[int, Sequence[int]] = 3,
        expansion: int = 2,
        out_chans: int = PROMPT_EMBED_DIM,
        out_stride: int = 16,
    ):
        super().__init__()
        n = len(widths)
        kernels = [kernel_size] * n if isinstance(kernel_size, int) else list(kernel_size)
        if n not in (3, 4) or len(depths) != n or len(kernels) != n:
            raise ValueError(f"conv encoder needs 3 or 4 stage widths, depths and kernel sizes (strides 4, 8, 16, 32), "
                             f"got {widths}, {depths}, {kernel_size}")
        if out_stride not in (8, 16):
            raise ValueError(f"conv encoder out_stride must be 8 or 16, got {out_stride}")
        if img_size % (4 * 2 ** (n - 1)):
            raise ValueError(f"conv encoder img_size must be a multiple of {4 * 2 ** (n - 1)}, got {img_size}")
        if any(k % 2 == 0 for k in kernels):
            raise ValueError(f"conv encoder kernel sizes must be odd, got {kernel_size}")
        self.img_size, self.out_stride = img_size, out_stride
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 4, stride=4), ChannelNorm(widths[0]))
        stages = []
        for i, (width, depth) in enumerate(zip(widths, depths)):
            layers = [] if i == 0 else [ChannelNorm(widths[i - 1]), nn.Conv2d(widths[i - 1], width, 2, stride=2)]
            layers += [ConvBlock(width, kernels[i], expansion) for _ in range(depth)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        first = {8: 1, 16: 2}[out_stride]  # index of the first stage read by the neck
        self.laterals = nn.ModuleList(nn.Conv2d(widths[i], out_chans, 1, bias=False) for i in range(first, n - 1))
        self.neck = nn.Sequential(
            nn.Conv2d(widths[-1], out_chans, 1, bias=False),
            ChannelNorm(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            ChannelNorm(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        y = self.neck[0](features[-1])
        pyramid = features[len(features) - 1 - len(self.laterals):-1]  # finest first
        for lateral, f in zip(reversed(self.laterals), reversed(pyramid)):
            y = F.interpolate(y, size=f.shape[-2:], mode="bilinear", align_corners=False) + lateral(f)
        return self.neck[1:](y).contiguous()


def build_image_encoder(arch: Dict[str, Any]) -> torch.nn.Module:
    kind = arch.get("encoder")
    if kind == "vit":
        return ImageEncoderViT(
            img_size=arch["img_size"],
            patch_size=arch.get("patch_size", 16),
            embed_dim=arch["embed_dim"],
            depth=arch["depth"],
            num_heads=arch["num_heads"],
            mlp_ratio=arch.get("mlp_ratio", 4.0),
            out_chans=PROMPT_EMBED_DIM,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=arch.get("use_rel_pos", False),
            window_size=arch.get("window_size", 0),
            global_attn_indexes=tuple(arch.get("global_attn_indexes", ())),
        )
    if kind == "conv":
        if arch.get("patch_size", 16) not in (8, 16):
            raise ValueError(f"the conv encoder has stride 8 or 16: patch_size must be 8 or 16, got {arch['patch_size']}")
        return ConvImageEncoder(
            img_size=arch["img_size"],
            widths=tuple(arch.get("widths", TINY_SAM_ARCH["widths"])),
            depths=tuple(arch.get("depths", TINY_SAM_ARCH["depths"])),
            kernel_size=arch.get("kernel_size", TINY_SAM_ARCH["kernel_size"]),
            expansion=arch.get("expansion", TINY_SAM_ARCH["expansion"]),
            out_chans=PROMPT_EMBED_DIM,
            out_stride=arch.get("patch_size", 16),
        )
    raise ValueError(f"unknown image encoder {kind!r}; known: {', '.join(ENCODERS)}")


def build_small_sam(arch: Dict[str, Any]) -> Sam:
    """A Sam: the encoder `arch` describes + SAM's prompt encoder and 256-d two-way decoder."""
    img_size = arch["img_size"]
    grid = img_size // arch.get("patch_size", 16)
    sam = Sam(
        image_encoder=build_image_encoder(arch),
        prompt_encoder=PromptEncoder(
            embed_dim=PROMPT_EMBED_DIM,
            image_embedding_size=(grid, grid),
            input_image_size=(img_size, img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_EMBED_DIM, mlp_dim=2048, num_heads=8),
            transformer_dim=PROMPT_EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
    )
    return sam.eval()
