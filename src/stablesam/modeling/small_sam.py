"""Builder for SAMs with a small image encoder and SAM's standard prompt encoder and decoder.

The architecture is a plain dict (stored inside stablesam SAM files), e.g.
{"encoder": "vit", "img_size": 256, "patch_size": 16, "embed_dim": 32, "depth": 1,
 "num_heads": 2, "window_size": 0, "global_attn_indexes": []}.
"""

from functools import partial
from typing import Any, Dict

import torch
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

PROMPT_EMBED_DIM = 256
ENCODERS = ("vit",)


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
