"""Choices the paper leaves open, as one small config object."""

from dataclasses import asdict, dataclass, fields
from typing import Any, Dict

ROUTING_TOKENS = ("mask", "iou", "mean")


@dataclass(frozen=True)
class PluginConfig:
    """Hyper-parameters of the Stable-SAM plugins.

    embed_dim: width of SAM's mask decoder (256 for every official SAM).
    kernel_size: depth-wise kernel of the offset net (paper: 5).
    offset_range: largest offset |Δp| along x and along y, in image-embedding grid cells;
        offsets are bounded with ``offset_range * tanh(.)``.
    sampled_pe: positional encoding of the deformed keys. False (default): the regular grid PE,
        so a key keeps its position and only its content moves; True: the PE is sampled at
        p + Δp together with the features.
    routing_token: which output token t_o drives the Dynamic Routing Plugin, read right after
        decoder layer 2's self-attention: "mask" (default; the single-mask output token, the one
        that produces the default single-mask prediction), "iou" (the IoU token) or "mean"
        (the mean of all output tokens).
    routing_hidden: hidden width of the routing MLP.
    use_routing: False ablates the DRP: features are mixed with fixed α = (0.5, 0.5).
    """

    embed_dim: int = 256
    kernel_size: int = 5
    offset_range: float = 4.0
    sampled_pe: bool = False
    routing_token: str = "mask"
    routing_hidden: int = 32
    use_routing: bool = True

    def __post_init__(self) -> None:
        if self.routing_token not in ROUTING_TOKENS:
            raise ValueError(
                f"routing_token must be one of {ROUTING_TOKENS}, got {self.routing_token!r}"
            )
        if self.offset_range <= 0:
            raise ValueError(f"offset_range must be > 0 grid cells, got {self.offset_range}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "PluginConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown plugin config keys: {unknown}")
        return cls(**values)
