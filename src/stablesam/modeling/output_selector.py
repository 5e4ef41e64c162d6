"""Fall back at the output: per prompt, keep the plugged decoder's output or plain SAM's.

With `PluginConfig.selector` "iou" the mask decoder runs twice on the same inputs, with the
plugins off and on, and each prompt keeps the plugged output only where the decoder's own IoU
head rates it at least as well as SAM's (plus a margin); elsewhere it gets SAM's output, bit for
bit. Nothing here is trained: the selector reads the IoU head that SAM already has.
"""

from typing import Any, Tuple

import torch


def choose_plugged(plain_scores: torch.Tensor, plugged_scores: torch.Tensor, margin: float) -> torch.Tensor:
    """Which prompts keep the plugged output.

    plain_scores, plugged_scores: (B, M) predicted IoUs of each branch's M masks.
    Returns (B,) bool: the plugged branch's best score >= the plain branch's best + margin.
    """
    return plugged_scores.max(dim=1).values >= plain_scores.max(dim=1).values + margin


def select_rows(plain: Any, plugged: Any, keep_plugged: torch.Tensor) -> Any:
    """The decoder output (a tensor or a tuple / list of them, each (B, ...)) with row b from
    `plugged` where keep_plugged[b] and from `plain` elsewhere; entries that are not per-prompt
    tensors (None, other batch sizes) are taken from `plugged` (they are the same in both)."""
    if isinstance(plugged, torch.Tensor):
        if plugged.dim() == 0 or plugged.shape[0] != keep_plugged.shape[0] or plain.shape != plugged.shape:
            return plugged
        return torch.where(keep_plugged.view(-1, *([1] * (plugged.dim() - 1))), plugged, plain)
    if isinstance(plugged, (tuple, list)):
        return type(plugged)(select_rows(a, b, keep_plugged) for a, b in zip(plain, plugged))
    return plugged


def put_rows(full: Any, part: Any, rows: torch.Tensor) -> Any:
    """The decoder output `full` (a tensor or a tuple / list of them, each (B, ...)) with its rows
    where rows[b] replaced, in order, by those of `part` (each (rows.sum(), ...)); entries that are
    not per-prompt tensors are taken from `full`."""
    if isinstance(full, torch.Tensor):
        if full.dim() == 0 or full.shape[0] != rows.shape[0] or not isinstance(part, torch.Tensor) \
                or part.shape[1:] != full.shape[1:]:
            return full
        out = full.clone()
        out[rows] = part.to(out.dtype)
        return out
    if isinstance(full, (tuple, list)):
        return type(full)(put_rows(a, b, rows) for a, b in zip(full, part))
    return full


def effective_routing(alpha: torch.Tensor, offsets: torch.Tensor,
                      keep_plugged: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """α (B, 2) and offsets (B, h, w, 2) of the outputs actually returned: prompts that got SAM's
    output read α = (0, 1) (no deformed features) and zero offsets."""
    keep = keep_plugged.to(alpha.dtype)
    plain_alpha = torch.tensor([0.0, 1.0], dtype=alpha.dtype, device=alpha.device)
    alpha = torch.where(keep_plugged[:, None], alpha, plain_alpha)
    offsets = offsets * keep.view(-1, *([1] * (offsets.dim() - 1)))
    return alpha, offsets
