"""The run record of `stablesam train`: its config, the resumable checkpoint, the loss log and
curve, and the weights it writes (plugin or decoder file, snapshots)."""

import csv
import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..backends.official import CheckpointError, read_weights
from ..fileio import save_figure, write_text
from ..modeling import PluginConfig, StableSam
from ..models.files import save_decoder, save_plugin
from .routing_terms import RoutingTerms
from .rts import RtsMixture

CHECKPOINT_FORMAT = "stablesam-train-checkpoint"


RESUME_KEYS = ("tune", "batch_size", "lr", "seed", "rts", "mixture", "plugin", "data", "model", "total_steps",
               "terms", "augment", "fit_gate_lr", "precision")


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message says why."""


class ResumeMismatch(TrainingError):
    """--resume found a checkpoint it cannot continue: unreadable, foreign, or another run's."""


# Adam's learning rate when none is given, per --tune: the leave-one-dataset-out winners
# (docs/results/lodo.md: plugins 1e-4 over 3e-4 and 1e-3, the whole decoder 3e-6 over 1e-6 to 1e-4).
DEFAULT_LR = {"plugins": 1e-4, "decoder": 3e-6, "prompt+decoder": 3e-6}


@dataclass
class TrainConfig:
    model: str
    data: List[str]
    tune: str = "plugins"  # plugins | decoder | prompt+decoder
    total_steps: int = 0
    batch_size: int = 8
    lr: Optional[float] = None  # Adam; None: DEFAULT_LR[tune]
    fit_gate_lr: Optional[float] = None  # Adam's lr for the fit gate (routing input "fit"); None: lr
    seed: int = 0
    rts: bool = True
    mixture: Dict = field(default_factory=lambda: RtsMixture().to_dict())
    plugin: Dict = field(default_factory=dict)
    terms: Dict = field(default_factory=lambda: RoutingTerms().to_dict())  # loss terms on the routing
    dice_weight: float = 1.0
    augment: int = 0  # augmented views per object (`stablesam.data.augment`), each visit draws one or the original
    checkpoint_every: int = 50
    precision: str = "fp32"  # autocast of the decoder passes: fp32 | bf16 | fp16 (`stablesam.precision`)
    # step -> file stem: the weights are also written as OUT/STEM.pt when that step is reached.
    # The learning rate is constant and each step a pure function of (seed, step), so a snapshot
    # at step s equals the final weights of the same run with total_steps = s.
    snapshots: Dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.lr is None:
            self.lr = DEFAULT_LR[self.tune]


def with_defaults(config: Dict) -> Dict:
    """A TrainConfig dict with the plugin and mixture options added since it was written filled
    in with what leaving them out meant then (`saved_values`), so checkpoints of earlier
    releases still resume."""
    out = dict(config)
    if out.get("plugin"):
        out["plugin"] = PluginConfig.saved_values(out["plugin"])
    if isinstance(out.get("mixture"), dict):
        out["mixture"] = RtsMixture.saved_values(out["mixture"])
    out["terms"] = RoutingTerms.saved_values(out.get("terms"))
    out.setdefault("augment", 0)  # trained without augmented views
    out.setdefault("fit_gate_lr", None)  # the fit gate trained at lr
    out.setdefault("precision", "fp32")  # trained before --precision: in fp32
    return out


def read_checkpoint(path: Path, config: TrainConfig, ignore: Sequence[str] = ()) -> Dict:
    """The training checkpoint at `path` if `config` (but the `ignore` keys) can continue it;
    ResumeMismatch saying why not otherwise. Cheap: `stablesam train --resume` calls it before
    embedding any image, then `train` again with the final config."""
    try:
        ckpt = read_weights(path, "cpu")
    except CheckpointError as e:
        raise ResumeMismatch(f"cannot resume: {e}") from None
    saved = ckpt.get("config")
    if ckpt.get("format") != CHECKPOINT_FORMAT or not isinstance(saved, dict) or \
            not isinstance(ckpt.get("step"), int) or not isinstance(ckpt.get("log"), list) or \
            not isinstance(ckpt.get("trainable"), dict) or not isinstance(ckpt.get("optimizer"), dict):
        raise ResumeMismatch(f"cannot resume: {path} is not a stablesam training checkpoint; "
                             "use another --out or drop --resume")
    current = with_defaults(asdict(config))
    changed = [k for k in RESUME_KEYS if k not in ignore and with_defaults(saved).get(k) != current.get(k)]
    if changed:
        raise ResumeMismatch(f"{path} belongs to another run (differs in: {', '.join(changed)}); "
                             "use another --out or drop --resume")
    return ckpt


def write_log_csv(out: Path, rows: List[Dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "loss", "lr", "seconds"])
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "log.csv", buf.getvalue())


def plot_loss(out: Path, rows: List[Dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss, alpha=0.35, label="loss")
    if len(loss) >= 10:
        w = max(5, len(loss) // 20)
        ax.plot(steps[w - 1:], np.convolve(loss, np.ones(w) / w, mode="valid"), label=f"mean of {w}")
    ax.set_xlabel("step"); ax.set_ylabel("BCE + Dice"); ax.grid(alpha=0.3); ax.legend()
    save_figure(fig, out / "loss.png")


def write_weights(model: StableSam, config: TrainConfig, out: Path, base_name: str, fingerprint: str,
                  steps: int, world: int, stem: Optional[str] = None) -> Path:
    """The trained weights after `steps` steps: OUT/plugin.pt or OUT/decoder.pt, or OUT/STEM.pt."""
    meta = {"steps": steps, "tune": config.tune, "data": config.data, "seed": config.seed,
            "batch_size": config.batch_size, "lr": config.lr, "rts": config.rts, "world_size": world}
    if config.tune == "plugins":
        path = out / f"{stem or 'plugin'}.pt"
        save_plugin(model, path, base_name=base_name, meta=meta)
    else:
        path = out / f"{stem or 'decoder'}.pt"
        save_decoder(model.sam, path, base_name, fingerprint, meta=meta,
                     prompt_encoder=config.tune == "prompt+decoder")
    return path
