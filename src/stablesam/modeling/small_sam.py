"""Builder for SAMs with a small image encoder and SAM's standard prompt encoder and decoder.

The architecture is a plain dict (stored inside stablesam SAM files), e.g.
{"encoder": "vit", "img_size": 256, "patch_size": 16, "embed_dim": 32, "depth": 1,
 "num_heads": 2, "window_size": 0, "global_attn_indexes": []}
or, for the compact convolutional encoder of the embedded tiny SAM (`TINY_SAM_ARCH`),
{"encoder": "conv", "img_size": 512, "patch_size": 16, "widths": [32, 64, 160],
 "depths": [1, 2, 6], "kernel_size": 7, "expansion": 2}.
"""

from functools import partial
from typing import Any, Dict, Sequence

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

PROMPT_EMBED_DIM = 256
ENCODERS = ("vit", "conv")

# The embedded tiny SAM: 512 px input, 32 x 32 image embedding.
TINY_SAM_ARCH: Dict[str, Any] = {
    "encoder": "conv", "img_size": 512, "patch_size": 16,
    "widths": [32, 64, 160], "depths": [1, 2, 6], "kernel_size": 7, "expansion": 2,
}


class ConvBlock(nn.Module):
    """Residual block: depth-wise k x k conv -> BN -> 1x1 expand -> GELU -> 1x1 project -> BN.

    The last BN starts with zero scale, so every block starts as the identity."""

    def __init__(self, dim: int, kernel_size: int = 7, expansion: int = 2):
        super().__init__()
        hidden = dim * expansion
        self.dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim, bias=False)
        self.norm1 = nn.BatchNorm2d(dim)
        self.pw1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.pw2 = nn.Conv2d(hidden, dim, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(dim)
        nn.init.zeros_(self.norm2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.norm2(self.pw2(self.act(self.pw1(self.norm1(self.dw(x))))))


def conv_bn_act(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.GELU()
    )


class ConvImageEncoder(nn.Module):
    """A compact conv net with total stride 16 and a SAM-style neck.

    (B, 3, img_size, img_size) -> (B, out_chans, img_size / 16, img_size / 16). Stem: two 3 x 3
    stride-2 convs (stride 4); stages at strides 4, 8, 16 of `depths[i]` `ConvBlock`s at
    `widths[i]` channels, joined by 3 x 3 stride-2 convs; neck as SAM's ViT encoder: 1 x 1 conv
    to `out_chans` -> LayerNorm2d -> 3 x 3 conv -> LayerNorm2d. Built from torch modules and
    segment_anything's LayerNorm2d only. `img_size` is read by SamPredictor and the SAM wrapper.
    """

    def __init__(
        self,
        img_size: int = 512,
        widths: Sequence[int] = (32, 64, 160),
        depths: Sequence[int] = (1, 2, 6),
        kernel_size: int = 7,
        expansion: int = 2,
        out_chans: int = PROMPT_EMBED_DIM,
        stem: str = "patch",
    ):
        super().__init__()
        if len(widths) != 3 or len(depths) != 3:
            raise ValueError(f"conv encoder needs 3 stage widths and depths (strides 4, 8, 16), got {widths}, {depths}")
        if img_size % 16:
            raise ValueError(f"conv encoder img_size must be a multiple of 16, got {img_size}")
        self.img_size = img_size
        if stem == "patch":
            layers = [nn.Conv2d(3, widths[0], 4, stride=4, bias=False), nn.BatchNorm2d(widths[0])]
        elif stem == "conv":
            layers = [conv_bn_act(3, widths[0] // 2, 2), conv_bn_act(widths[0] // 2, widths[0], 2)]
        else:
            raise ValueError(f"conv encoder stem must be 'patch' or 'conv', got {stem!r}")
        for i, (width, depth) in enumerate(zip(widths, depths)):
            if i > 0:
                layers.append(conv_bn_act(widths[i - 1], width, 2))
            layers.extend(ConvBlock(width, kernel_size, expansion) for _ in range(depth))
        self.trunk = nn.Sequential(*layers)
        self.neck = nn.Sequential(
            nn.Conv2d(widths[-1], out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels_last: PyTorch's CPU backward of depth-wise convs is ~20x faster in this layout.
        x = self.trunk(x.contiguous(memory_format=torch.channels_last))
        return self.neck(x).contiguous()


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
        if arch.get("patch_size", 16) != 16:
            raise ValueError(f"the conv encoder has stride 16; patch_size must be 16, got {arch['patch_size']}")
        return ConvImageEncoder(
            img_size=arch["img_size"],
            widths=tuple(arch.get("widths", TINY_SAM_ARCH["widths"])),
            depths=tuple(arch.get("depths", TINY_SAM_ARCH["depths"])),
            kernel_size=arch.get("kernel_size", 7),
            expansion=arch.get("expansion", 2),
            out_chans=PROMPT_EMBED_DIM,
            stem=arch.get("stem", "patch"),
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
