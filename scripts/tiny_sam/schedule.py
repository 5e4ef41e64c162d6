"""Run configuration, learning-rate schedule and EMA weights."""

import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import nn


@dataclass
class RunConfig:
    arch: Dict
    seed: int = 0
    total_steps: int = 3600
    batch_size: int = 8
    prompts_per_image: int = 2
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 200
    min_lr_ratio: float = 0.02
    clip: float = 1.0
    iou_weight: float = 1.0
    loss_res: int = 256
    ema_decay: float = 0.0  # 0: no EMA weights
    train_list_sha256: str = ""


# A checkpoint resumes only a run with the same values of these.
RESUME_KEYS = ("arch", "seed", "total_steps", "batch_size", "prompts_per_image", "lr", "weight_decay",
               "warmup_steps", "min_lr_ratio", "clip", "iou_weight", "loss_res", "ema_decay", "train_list_sha256")


def lr_at(step: int, cfg: RunConfig, rewarm_from: Optional[int] = None, rewarm_steps: int = 0) -> float:
    """Linear warmup, cosine decay to min_lr_ratio * lr at total_steps; an extra linear re-warmup
    after `rewarm_from` (a fresh optimizer on --init weights)."""
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    progress = min(1.0, step / max(1, cfg.total_steps))
    cos = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if rewarm_from is not None and rewarm_steps > 0:
        warm = min(warm, (step - rewarm_from + 1) / rewarm_steps)
    return cfg.lr * warm * cos


class Ema:
    """Exponential moving average of a model's floating-point state (parameters and buffers).

    The decay ramps up as min(decay, (1 + step) / (10 + step)), so early weights do not linger.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone().float() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in model.state_dict().items():
            if k in self.state:
                self.state[k].mul_(d).add_(v.detach().float(), alpha=1 - d)

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict({**model.state_dict(), **self.state})
