"""Every number a user can give, with its range, in one place.

Each `Range` is checked where the value enters the package (an option of the command line, a
prompt string such as `noisy-box@0.4`, a keyword of the Python API, a plugin or checkpoint
config, a demo or Label Studio request), before any work starts; a value outside its range is a
`RangeError` (an `InputError`, so a `ValueError` too) whose one line names the value and the
range. Upper bounds that exist to keep memory and time sane say so in `why`.

Besides the ranges: the memory a run will need where it scales with user input
(`check_memory`), the device a string names (`checked_device`), the smallest image side a
model can take after its resize (`check_image_side`) and file names the file system refuses
(`name_problem`).
"""

import math
import os
from dataclasses import dataclass
from typing import Any, Optional, Union

from .data.images import InputError


class RangeError(InputError):
    """A number outside its range: one line naming the value and the range."""


def _number_text(v: float) -> str:
    return f"{int(v)}" if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


@dataclass(frozen=True)
class Range:
    """The values `what` may take: low..high (`open_low`: low itself excluded), integers only
    when `integer`; `why` says where a bound comes from (memory, time, meaning)."""

    what: str
    low: float
    high: float
    integer: bool = False
    open_low: bool = False
    why: str = ""

    def text(self) -> str:
        kind = "an integer" if self.integer else "a number"
        lo = f"> {_number_text(self.low)} and <= {_number_text(self.high)}" if self.open_low else \
            f"in {_number_text(self.low)}..{_number_text(self.high)}"
        return f"{kind} {lo}"

    def check(self, value: Any, what: Optional[str] = None) -> Union[int, float]:
        """`value` as an int (integer ranges) or a finite float, or RangeError."""
        name = what or self.what
        shown = str(value)[:40]
        if isinstance(value, bool) or (self.integer and not _is_integer(value)):
            raise RangeError(f"{name} must be {self.text()}, got {shown!r}")
        try:
            v = int(value) if self.integer else float(value)
        except (TypeError, ValueError, OverflowError):
            raise RangeError(f"{name} must be {self.text()}, got {shown!r}") from None
        if not self.integer and not math.isfinite(v):
            raise RangeError(f"{name} = {shown} is not a finite number: it must be {self.text()}")
        inside = (self.low < v if self.open_low else self.low <= v) and v <= self.high
        if not inside:
            why = f" ({self.why})" if self.why else ""
            raise RangeError(f"{name} = {shown} is out of range: it must be {self.text()}{why}")
        return v


def _is_integer(value: Any) -> bool:
    import numbers

    return isinstance(value, numbers.Integral)


# --- seeds and prompt strings ------------------------------------------------------------------
SEED = Range("--seed", 0, 2**32 - 1, integer=True, why="the seeds NumPy and PyTorch take")
NOISE_SCALE = Range("noise scale", 0, 1, why="noisy-box@S, adv-box@S, best-box@S and the RTS max-noise: each "
                    "side moves at most S box widths/heights; at 1 a side may already cross the box")
CLICKS = Range("clicks per prompt", 1, 100, integer=True, why="each click is one more token in every decoder "
               "attention: tokens x 4096 grid cells x 8 heads of floats per prompt")
POINTS = Range("--point count", 1, CLICKS.high, integer=True, why=CLICKS.why)

# --- eval -------------------------------------------------------------------------------------
SAMPLES = Range("--samples", 1, 1000, integer=True, why="K prompts x prompt types x objects are decoded and "
                "kept as rows in memory; 1000 already means hours for a few hundred objects")
ADV_BUDGET = Range("--adv-budget", 1, 10_000, integer=True, why="decoder passes per object and model")
MAX_CLICKS = Range("--max-clicks", 1, 1000, integer=True, why="one decoder pass per click and object")
EXPLAIN = Range("--explain", 0, 1000, integer=True, why="one figure row per object")
LIMIT = Range("--limit", 1, 10**9, integer=True)

# --- train ------------------------------------------------------------------------------------
BATCH_SIZE = Range("--batch-size", 1, 4096, integer=True, why="objects decoded at once; memory grows with "
                   "batch x grid x tokens and is checked against the device too")
LEARNING_RATE = Range("--lr", 0, 1, open_low=True, why="Adam moves each weight about lr per step; above 1 the "
                      "weights leave any sensible range in one step")
STEPS = Range("--steps", 1, 10**9, integer=True)
EPOCHS = Range("--epochs", 0, 100_000, open_low=True)
CHECKPOINT_EVERY = Range("--checkpoint-every", 1, 10**9, integer=True)
AUGMENT = Range("--augment", 0, 64, integer=True, why="each view is one more encoder run and cached embedding "
                "per object")
INTERACTIVE_CLICKS = Range("interactive-clicks", 1, 32, integer=True, why="one decoder pass with gradient per "
                           "click and object, all kept for the backward pass")
RTS_MAX_POINTS = Range("max-points", 1, CLICKS.high, integer=True, why=CLICKS.why)
RTS_ADV_BUDGET = Range("adv-budget", 1, 10_000, integer=True, why="decoder passes per mined box")
LOSS_WEIGHT = Range("loss weight", 0, 1e6)

# --- plugin configs (command line, plugin files, checkpoints) -------------------------------------
EMBED_DIM = Range("embed_dim", 1, 4096, integer=True, why="SAM's decoders are 256 wide; 4096 bounds the "
                  "plugin's C x C weights at 64 M")
KERNEL_SIZE = Range("kernel_size", 1, 31, integer=True, why="the offset net's depth-wise kernel on a 64 x 64 grid")
ROUTING_HIDDEN = Range("routing_hidden", 1, 4096, integer=True, why="the DRP's MLP; 4096 bounds it at 32 M weights")
OFFSET_RANGE = Range("offset_range", 0, 64, open_low=True, why="in image-embedding cells: SAM's grid is 64 x 64")
ROUTING_TEMPERATURE = Range("routing_temperature", 0, 1000, open_low=True)

# --- servers ----------------------------------------------------------------------------------
SERVER_CLICKS = 32  # clicks per prompt in one demo or Label Studio request
SERVER_BOXES = 100  # boxes per Label Studio request (each an H x W mask kept until the answer is written)
FETCH_DEADLINE_S = 60.0  # a task image's whole download, however slowly it trickles in


# --- memory -------------------------------------------------------------------------------------
def available_memory(device: Any) -> Optional[int]:
    """Bytes free on `device` (a CUDA GPU: its free memory; else the machine's available RAM),
    or None when it cannot be told."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        try:
            return int(torch.cuda.mem_get_info(device)[0])
        except Exception:  # pragma: no cover - a driver without the query
            return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return None


def decoder_bytes(batch: int, grid_cells: int = 4096, tokens: int = 8, width: int = 256,
                  training: bool = True) -> int:
    """Memory of one decoder pass over `batch` prompts: each prompt carries its own copy of the
    image embedding through the two-way transformer (batch x grid x width floats, about 30 such
    tensors kept for the backward pass in training, 6 without), its token-to-image attention
    maps (batch x 8 heads x tokens x grid, both directions, per layer) and its upscaled masks
    (batch x 4 x (4 x 64)^2). Measured against this package's training steps, see docs/ranges.md."""
    per_grid = (30 if training else 6) * grid_cells * width
    attention = 2 * 3 * 8 * tokens * grid_cells
    masks = 4 * 16 * grid_cells * (8 if training else 2)
    return 4 * batch * (per_grid + attention + masks)


def check_memory(need: int, device: Any, what: str, option: str, share: float = 0.8) -> None:
    """RangeError when `need` bytes would not fit in `share` of what `device` has free."""
    free = available_memory(device)
    if free is not None and need > share * free:
        raise RangeError(f"{what} needs about {need / 2**30:.1f} GB but {device} has {free / 2**30:.1f} GB "
                         f"free: lower {option}")


# --- devices, images, file names ---------------------------------------------------------------
def checked_device(text: Any) -> "torch.device":  # noqa: F821
    """The torch.device a --device string (or a torch.device) names, when that device exists
    here; else RangeError naming it (an unknown name, `meta`, a GPU that is not there)."""
    import torch

    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, TypeError, ValueError):
        raise RangeError(f"--device {str(text)[:40]!r} is not a device torch knows: give cpu, cuda, cuda:N or mps") \
            from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise RangeError(f"--device {text}: no CUDA GPU is available here (use --device cpu)")
        if device.index is not None and device.index >= count:
            raise RangeError(f"--device {text}: this machine has {count} CUDA GPU(s), cuda:0..cuda:{count - 1}")
        return device
    if device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise RangeError(f"--device {text}: Apple's MPS is not available here (use --device cpu)")
        return device
    raise RangeError(f"--device {text}: {device.type} devices cannot run a model here; give cpu, cuda, cuda:N or mps")


def resized_side(side: int, other: int, target: int) -> int:
    """The side `side` of an image after SAM's ResizeLongestSide to `target` (long side)."""
    scale = target / max(side, other)
    return int(side * scale + 0.5)


def check_image_side(height: int, width: int, target: int, min_side: int = 1) -> None:
    """RangeError when a side of an H x W image would be under `min_side` px after the model's
    resize of its long side to `target` px (an extreme aspect ratio, e.g. 3000 x 2)."""
    short = min(resized_side(height, width, target), resized_side(width, height, target))
    if short < min_side:
        need = math.ceil(max(height, width) * (min_side - 0.5) / target)
        raise RangeError(f"the {width}x{height} image is too thin for this model: its short side would be "
                         f"{short} px after the resize to {target} px (the short side must be at least {need} px "
                         f"for this long side)")


def name_problem(path: Union[str, os.PathLike]) -> Optional[str]:
    """Why the file system would refuse the path `path` by its name (a part longer than the
    folder's NAME_MAX, the whole longer than PATH_MAX, a NUL byte), or None."""
    text = os.fspath(path)
    if "\0" in text:
        return "the name holds a NUL byte"
    folder = os.path.dirname(os.path.abspath(text)) or "."
    while folder and not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        name_max = os.pathconf(folder or "/", "PC_NAME_MAX")
        path_max = os.pathconf(folder or "/", "PC_PATH_MAX")
    except (OSError, ValueError, AttributeError):
        name_max, path_max = 255, 4096
    for part in os.path.abspath(text).split(os.sep):
        if len(os.fsencode(part)) > name_max - 20:  # room for the temporary and backup files' suffixes
            return f"a file name of {len(os.fsencode(part))} bytes is too long (at most {name_max - 20} here, with room for a temporary file's suffix)"
    if len(os.fsencode(os.path.abspath(text))) >= path_max:
        return f"the path is too long (at most {path_max - 1} bytes)"
    return None


def nonfinite_weight(state: dict) -> Optional[str]:
    """The name of the first floating-point tensor in a state dict holding NaN or infinity, or None."""
    import torch

    for name, tensor in state.items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all():
            return str(name)
    return None


REPEATED_OPTIONS = {"--point": POINTS}  # options a command line may repeat, and how often


def repeated_option_problem(argv: list) -> Optional[str]:
    """Why a command line repeats an option more often than its range allows (counted before
    argparse, whose time grows with the square of such repeats), or None."""
    for option, limit in REPEATED_OPTIONS.items():
        count = sum(1 for a in argv if a == option or a.startswith(option + "="))
        if count > limit.high:
            return f"{option} given {count} times: at most {int(limit.high)} ({limit.why})"
    return None
