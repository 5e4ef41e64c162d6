"""The forward pass and SAM's loss on one batch (the package's BCE + Dice, ignore-aware)."""

from contextlib import nullcontext
from typing import Dict, List, Tuple

import numpy as np
import torch
from segment_anything.modeling import Sam
from torch.nn import functional as F

from stablesam.training.losses import bce_loss, dice_loss, mask_ious

from .augment import Batch


def normalize(sam: Sam, batch: Batch) -> torch.Tensor:
    """SAM's preprocess (normalise, zero padding) for a batch of top-left placed images."""
    x = (batch.images.float() - sam.pixel_mean) / sam.pixel_std
    for j, (h, w) in enumerate(batch.sizes):
        x[j, :, h:, :] = 0
        x[j, :, :, w:] = 0
    return x


def batch_loss(sam: Sam, batch: Batch, loss_res: int, iou_weight: float,
               autocast: bool) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Mean over prompts of BCE + Dice (min over the 3 masks for a single click, as SAM) + MSE of
    the IoU head against each mask's IoU; ignore pixels count in none of them."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else nullcontext()
    r = loss_res
    with ctx:
        emb = sam.image_encoder(normalize(sam, batch))
        dense_pe = sam.prompt_encoder.get_dense_pe()
    losses: List[torch.Tensor] = []
    mask_terms, iou_terms = [], []
    for j, prompts in enumerate(batch.prompts):
        for p in prompts:
            points = boxes = None
            if p.points is not None:
                pts = torch.as_tensor(p.points, dtype=torch.float)
                points = (pts, torch.ones(pts.shape[:2], dtype=torch.int))
            if p.boxes is not None:
                boxes = torch.as_tensor(p.boxes, dtype=torch.float)
            with ctx:
                sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=None)
                low, iou_pred = sam.mask_decoder(emb[j:j + 1], dense_pe, sparse, dense, multimask_output=p.multimask)
            logits = F.interpolate(low.float(), (r, r), mode="bilinear", align_corners=False)[0][:, None]  # (M, 1, r, r)
            target = torch.from_numpy(p.target)[None, None]
            valid = None if p.valid is None else torch.from_numpy(p.valid)[None, None]
            m = logits.shape[0]
            dice = torch.stack([dice_loss(logits[i:i + 1], target, valid) for i in range(m)])
            mask_loss = bce_loss(logits, target, valid) + dice  # (M,)
            iou_loss = F.mse_loss(iou_pred.float()[0], mask_ious(logits, target, valid))
            best = mask_loss.min() if p.multimask else mask_loss[0]
            losses.append(best + iou_weight * iou_loss)
            mask_terms.append(float(best.detach()))
            iou_terms.append(float(iou_loss.detach()))
    loss = torch.stack(losses).mean()
    return loss, {"mask_loss": float(np.mean(mask_terms)), "iou_loss": float(np.mean(iou_terms))}


def param_groups(sam: Sam, weight_decay: float) -> List[Dict]:
    """AdamW groups: no decay for norms, biases, layer scales, and learned tokens/embeddings."""
    decay, no_decay = [], []
    for name, p in sam.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim <= 1 or "token" in name or "embed" in name
        (no_decay if plain else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
