"""The paper's training recipe as `stablesam train` commands (what `stablesam reproduce` runs,
and what docs/reproduce.md gives for torchrun)."""

from pathlib import Path
from typing import List

from .layout import TRAIN_SETS, HqsegSet

# The paper's plugin (a full 1x1 projection, the offset net on all 256 channels, the DRP reading
# its token alone) trained without this project's routing terms: HQ-SAM's recipe (Adam, lr 1e-3,
# single-mask output), one epoch, with the default RTS prompt mixture.
PAPER_PLUGIN_FLAGS = ("--projection-rank", "0", "--offset-width", "0", "--routing-inputs", "none",
                      "--consistency", "0", "--alpha-prior", "0")


def specs(root: Path, sets: List[HqsegSet]) -> List[str]:
    return [s.spec(root) for s in sets]


def train_argv(config, tune: str, folder: Path) -> List[str]:
    """The `stablesam train` command of a training stage (what docs/reproduce.md gives for torchrun)."""
    argv = ["train", "--data", *specs(config.hqseg, list(TRAIN_SETS)), "--model", config.base_spec,
            "--out", str(folder), "--cache", str(config.cache_root), "--epochs", f"{config.epochs:g}",
            "--batch-size", str(config.batch_size), "--seed", str(config.seed), "--precision", config.precision,
            "--stream-embeddings"]
    if tune == "plugins":
        argv += ["--lr", f"{config.lr:g}", *PAPER_PLUGIN_FLAGS]
    else:
        argv += ["--tune", "decoder"]
    if config.device:
        argv += ["--device", config.device]
    return argv
