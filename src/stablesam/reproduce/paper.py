"""The paper's headline table and the prompts of its experiment.

Source: Fan et al., "Stable Segment Anything Model", arXiv:2311.15776 (ICLR 2025): SAM ViT-L,
mIoU (%) averaged over DIS, ThinObject-5K, COIFT and HR-SOD, as recorded in the project's notes
on the method (docs/reproduce.md quotes them). A figure not recorded there is not guessed: its
cell reads SEE_PAPER.
"""

from typing import Dict, Optional, Tuple

SOURCE = "Fan et al., Stable Segment Anything Model, arXiv:2311.15776 (ICLR 2025)"
SEE_PAPER = "see the paper"

# (row label, the prompt type that measures it (stablesam.prompts), the paper's mIoU per model)
HEADLINE: Tuple[Tuple[str, str, Dict[str, Optional[float]]], ...] = (
    ("noisy box", "noisy-box@0.4", {"SAM": 48.8, "HQ-SAM": 72.4, "Stable-SAM": 82.3}),
    ("1 point", "points@1", {"SAM": 43.3, "HQ-SAM": 43.2, "Stable-SAM": 76.9}),
    ("3 points", "points@3", {"SAM": 78.7, "HQ-SAM": 81.8, "Stable-SAM": 84.0}),
    ("ground-truth box", "gt-box", {"SAM": 79.5, "HQ-SAM": None, "Stable-SAM": None}),
)
PROMPTS = tuple(prompt for _, prompt, _ in HEADLINE)
PAPER_MODELS = ("SAM", "HQ-SAM", "Stable-SAM")


def paper_cell(row: Dict[str, Optional[float]], model: str) -> str:
    """The paper's figure for `model` in a row, or SEE_PAPER where none is recorded."""
    value = row.get(model)
    return SEE_PAPER if value is None else f"{value:.1f}"
