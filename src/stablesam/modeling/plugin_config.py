"""Choices the paper leaves open, as one small config object."""

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Tuple

ROUTING_TOKENS = ("mask", "iou", "mean")
ROUTING_INPUTS = ("prompt", "iou", "fit")
FIT_GATES = ("both", "close")
TOKEN_INPUTS = ("prompt", "iou")  # routing inputs read from the decoder's tokens
EXTRA_SITES = ("layer1", "final")
SELECTORS = ("none", "iou", "iou-box", "box")  # `output_selector`
OUTPUT_SELECTORS = ("iou", "iou-box")  # a second, plain decoder pass chooses per prompt
CLICKS_TO_SAM = ("iou-box", "box")  # calls of clicks alone get SAM's output (the plugins stand aside)
REFINES = ("none", "box")  # `box_refiner`


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
    amplitude: the DSP also predicts a per-cell modulation m_p = 2 sigmoid(z_p) of the sampled
        features ("locations and amplitudes"; m = 1 at init, so the untrained plugin is SAM).
    offset_groups: G > 1 gives each of G channel groups its own offset (per-head offsets in the
        manner of deformable attention; 8 groups of 32 channels for SAM's 8 heads).
    extra_sites: further token-to-image attentions that get their own DSP + DRP, beyond the
        paper's layer 2: "layer1" (decoder layer 1) and/or "final" (the final attention, whose
        routing token is its own query).
    projection: True (the paper): x*_p = Conv1x1(x_p) before the offset net and the sampling;
        False: x*_p = x_p (no 1x1 conv: C*C + C fewer parameters, about half the plugin's cost).
    projection_rank: 0 (the paper): the 1x1 conv is a full C x C matrix; r > 0: it is identity +
        a rank-r product (C -> r -> C, the second factor zero at init), 2rC instead of C^2 weights
        and multiply-adds per cell (ignored when projection is False). Default 32 (the plugin
        study: as good as the full matrix at 42 % of the parameters and half the decoder overhead).
    offset_width: 0 (the paper): the offset net (DWConv, LayerNorm, GELU, 1x1 conv) works on all
        C channels of x*_p; r > 0: a 1x1 conv first reduces x*_p to r channels for the offset net
        (the sampled features keep all C), which makes the offset net about C/r times cheaper.
        Default 32.
    routing_inputs: what the DRP reads besides t_o, each taken from the same tokens (after the
        site's self-attention) and concatenated to t_o, so the routing can see prompt quality:
        "prompt" (the mean of the prompt's own sparse tokens: box corners, clicks) and/or "iou"
        (the IoU token, which learns to predict mask quality). Each adds C x routing_hidden
        weights; α is still (0.5, 0.5) at init, so the untrained plugin stays SAM. "fit": how
        tightly a box prompt fits the mask the frozen SAM draws from it (`box_fit`; a plugin-free
        decoder pass, without gradient, before each plugged one), through a learnt gate on α
        (`box_fit.FitGate`); SAM 1 and HQ-SAM models. Default "prompt" and "iou" (chosen by
        leave-one-dataset-out, docs/results/lodo.md); () is the paper's DRP.
    fit_gate: how the routing input "fit" moves α (`box_fit.FitGate`): "both" adds s·(c − fit)
        to the logit of the deformed features, so loose boxes open the DSP as tight ones close
        it; "close" adds −s·max(0, fit − c), so it only closes the DSP for boxes that fit the base's
        mask tightly and leaves loose ones to the rest of the DRP. Ignored without "fit".
    selector: fall back at the output (`output_selector`): "none" (default) returns the plugged
        decoder's output; "iou" also runs the decoder with the plugins off and keeps, per prompt,
        the plugged output only where its predicted IoU is at least plain SAM's + selector_margin
        (elsewhere SAM's output, bit for bit; α then reads (0, 1)); "iou-box" does the same for
        prompts with a box and gives prompts of clicks alone SAM's output (the plugins stand aside
        where the IoU head misjudges them, docs/results/lodo.md); "box" keeps the plugged output
        for prompts with a box and gives prompts of clicks alone SAM's output, with no second
        pass (the plugins stand aside for such a call). Inference only: training trains the
        plugged branch. SAM 1 and HQ-SAM models; "iou" and "iou-box" cost about 2x the decoder's
        time for prompts with a box.
    selector_margin: how much higher (in predicted IoU) the plugged output must score to be kept.
    refine: re-prompt with the model's own mask (`box_refiner`): "none" (default); "box" decodes
        each prompt a second time with its box replaced by the box of its first mask, widened by
        refine_margin of its size on each side (a click-only prompt gains that box; clicks and
        mask input are kept), for the prompts whose box has an IoU below refine_below with that
        mask's box, and prompts of at most refine_clicks clicks without a box. Inference only; SAM 1 and HQ-SAM models; one more
        decoder pass for the prompts it refines.
    refine_margin: the share of the first mask's box width / height added on each side (0..1).
    refine_below: refine a box only where its IoU with its first mask's box is below this (0..1;
        1 refines every box that does not fit exactly).
    refine_clicks: refine a prompt without a box only if it has at most this many clicks (0: none).
    routing_temperature: α = softmax(z / T): T < 1 makes the routing more decisive for the same
        logits z (and scales their gradients by 1/T); 1 is the paper's softmax.
    The other extensions are off by default; each keeps the untrained plugin exactly SAM.
    A plugin file written before an option existed reads that option as ``ABSENT_MEANS`` (the
    behaviour of that time), not as today's default.
    """

    embed_dim: int = 256
    kernel_size: int = 5
    offset_range: float = 4.0
    sampled_pe: bool = False
    routing_token: str = "mask"
    routing_hidden: int = 32
    use_routing: bool = True
    amplitude: bool = False
    offset_groups: int = 1
    extra_sites: Tuple[str, ...] = ()
    projection: bool = True
    offset_width: int = 32
    projection_rank: int = 32
    routing_inputs: Tuple[str, ...] = ("prompt", "iou")
    routing_temperature: float = 1.0
    fit_gate: str = "both"
    selector: str = "none"
    selector_margin: float = 0.0
    refine: str = "none"
    refine_margin: float = 0.1
    refine_below: float = 1.0
    refine_clicks: int = 1

    def __post_init__(self) -> None:
        self.check_types_and_ranges()
        object.__setattr__(self, "extra_sites", tuple(self.extra_sites))  # lists from JSON / plugin files
        object.__setattr__(self, "routing_inputs", tuple(self.routing_inputs))
        unknown_inputs = sorted(set(self.routing_inputs) - set(ROUTING_INPUTS))
        if unknown_inputs or len(set(self.routing_inputs)) != len(self.routing_inputs):
            raise ValueError(f"routing_inputs must be distinct names from {ROUTING_INPUTS}, got "
                             f"{list(self.routing_inputs)}")
        # t_o itself is always read: an input naming the routing token adds nothing.
        object.__setattr__(self, "routing_inputs", tuple(x for x in self.routing_inputs if x != self.routing_token))
        if self.selector not in SELECTORS:
            raise ValueError(f"selector must be one of {SELECTORS}, got {self.selector!r}")
        if not (isinstance(self.selector_margin, (int, float)) and math.isfinite(self.selector_margin)
                and -1 <= self.selector_margin <= 1):
            raise ValueError(f"selector_margin must be a number within -1..1, got {self.selector_margin!r}")
        if self.refine not in REFINES:
            raise ValueError(f"refine must be one of {REFINES}, got {self.refine!r}")
        for name in ("refine_margin", "refine_below"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
                    and 0 <= value <= 1):
                raise ValueError(f"{name} must be a number within 0..1, got {value!r}")
        if isinstance(self.refine_clicks, bool) or not isinstance(self.refine_clicks, int) \
                or not 0 <= self.refine_clicks <= 1000:
            raise ValueError(f"refine_clicks must be a whole number within 0..1000, got {self.refine_clicks!r}")
        if self.fit_gate not in FIT_GATES:
            raise ValueError(f"fit_gate must be one of {FIT_GATES}, got {self.fit_gate!r}")
        if not (math.isfinite(self.routing_temperature) and self.routing_temperature > 0):
            raise ValueError(f"routing_temperature must be a finite number > 0, got {self.routing_temperature}")
        unknown = sorted(set(self.extra_sites) - set(EXTRA_SITES))
        if unknown or len(set(self.extra_sites)) != len(self.extra_sites):
            raise ValueError(f"extra_sites must be distinct names from {EXTRA_SITES}, got {list(self.extra_sites)}")
        if self.offset_groups < 1 or self.embed_dim % self.offset_groups:
            raise ValueError(f"offset_groups must divide embed_dim {self.embed_dim}, got {self.offset_groups}")
        if self.routing_token not in ROUTING_TOKENS:
            raise ValueError(
                f"routing_token must be one of {ROUTING_TOKENS}, got {self.routing_token!r}"
            )
        if self.projection_rank < 0:
            raise ValueError(f"projection_rank must be >= 0 (0: a full matrix), got {self.projection_rank}")
        if self.offset_width < 0:
            raise ValueError(f"offset_width must be >= 0 channels (0: all of them), got {self.offset_width}")
        if self.routing_hidden < 1:
            raise ValueError(f"routing_hidden must be >= 1, got {self.routing_hidden}")
        if self.offset_range <= 0:
            raise ValueError(f"offset_range must be > 0 grid cells, got {self.offset_range}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1, got {self.kernel_size}")

    def check_types_and_ranges(self) -> None:
        """Each option of the right type (a plugin file's config is data, not code) and within its
        range (`stablesam.limits`: widths and ranks bounded, numbers finite), or ValueError."""
        from .. import limits

        for name in ("sampled_pe", "use_routing", "amplitude", "projection"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {str(getattr(self, name))[:40]!r}")
        for name in ("routing_token", "fit_gate", "selector", "refine"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be a name, got {str(getattr(self, name))[:40]!r}")
        for name in ("extra_sites", "routing_inputs"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or \
                    not all(isinstance(x, str) for x in value):
                raise ValueError(f"{name} must be a list of names, got {str(value)[:60]!r}")
        limits.EMBED_DIM.check(self.embed_dim, "embed_dim")
        limits.KERNEL_SIZE.check(self.kernel_size, "kernel_size")
        limits.ROUTING_HIDDEN.check(self.routing_hidden, "routing_hidden")
        width = limits.Range("width", 0, self.embed_dim, integer=True, why=f"at most embed_dim = {self.embed_dim}")
        width.check(self.offset_width, "offset_width")
        width.check(self.projection_rank, "projection_rank")
        limits.Range("offset_groups", 1, self.embed_dim, integer=True).check(self.offset_groups, "offset_groups")
        limits.OFFSET_RANGE.check(self.offset_range, "offset_range")
        limits.ROUTING_TEMPERATURE.check(self.routing_temperature, "routing_temperature")

    def to_dict(self) -> Dict[str, Any]:
        values = asdict(self)
        values["extra_sites"] = list(self.extra_sites)
        values["routing_inputs"] = list(self.routing_inputs)
        return values

    @property
    def token_inputs(self) -> Tuple[str, ...]:
        """The routing inputs read from the decoder's tokens, in order."""
        return tuple(x for x in self.routing_inputs if x in TOKEN_INPUTS)

    @property
    def reads_fit(self) -> bool:
        return "fit" in self.routing_inputs

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "PluginConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown plugin config keys: {unknown}")
        return cls(**values)

    @classmethod
    def saved_values(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        """Every option of a config dict saved by some release: those it predates read as
        `ABSENT_MEANS` (what leaving them out meant then), the rest of the missing as defaults."""
        return {**cls().to_dict(), **ABSENT_MEANS, **values}

    @classmethod
    def from_saved(cls, values: Dict[str, Any]) -> "PluginConfig":
        """The config a plugin file records (`saved_values`)."""
        return cls.from_dict(cls.saved_values(values))


# What a config written before an option existed meant by leaving it out: the paper's plugin.
ABSENT_MEANS: Dict[str, Any] = {"offset_width": 0, "projection_rank": 0, "routing_inputs": [],
                                "routing_temperature": 1.0, "fit_gate": "both"}
