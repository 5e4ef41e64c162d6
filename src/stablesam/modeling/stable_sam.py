"""StableSam: a frozen SAM (any family, see `stablesam.backends`) with the DSP and DRP plugged
into its decoder."""

import functools
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from .deformable_sampling import DeformableSamplingPlugin, is_tracing
from .dynamic_routing import DynamicRoutingPlugin
from .family import Backend
from .plugin_config import PluginConfig
from .registry import backend_for
from .second_pass import SecondPasses

CHUNK_ELEMENTS = 1 << 20  # inference works on ~4 MB of float32 features at a time


def build_plugin_pair(c: PluginConfig) -> Tuple[DeformableSamplingPlugin, DynamicRoutingPlugin]:
    """The DSP and DRP of one attention site, as `c` configures them."""
    dsp = DeformableSamplingPlugin(c.embed_dim, c.kernel_size, c.offset_range, c.amplitude, c.offset_groups,
                                   c.projection, c.offset_width, c.projection_rank)
    return dsp, DynamicRoutingPlugin(c.embed_dim, c.routing_hidden, 1 + len(c.token_inputs), c.routing_temperature,
                                     c.fit_gate if c.reads_fit else None)


def build_plugins(c: PluginConfig) -> Dict[str, nn.Module]:
    """Every site's DSP and DRP by module name: the paper's site, layer 2's token-to-image
    attention ("dsp", "drp"), and a pair per site of `c.extra_sites` ("dsp_layer1", "drp_final", ...)."""
    plugins: Dict[str, nn.Module] = {}
    for site in ("layer2",) + tuple(c.extra_sites):
        suffix = "" if site == "layer2" else f"_{site}"
        plugins["dsp" + suffix], plugins["drp" + suffix] = build_plugin_pair(c)
    return plugins


class StableSam(SecondPasses, nn.Module):
    """Wraps a SAM without copying or editing its code: Meta's `segment_anything` Sam, an
    HQ-SAM, a SAM 2 / 2.1 (`SAM2Base`) or a Hugging Face `SamModel` / `Sam2Model`; the family's
    backend (`self.backend`) says where its decoder modules are.

    Three forward hooks on the model's own mask decoder do the work, and only while this wrapper
    is engaged (inside `engaged()`, which `forward`, `decode` and `StableSamPredictor` use):
      - a pre-hook on the two-way transformer keeps the image PE and the grid size;
      - a hook on decoder layer 2's `norm1` keeps the output token t_o after self-attention;
      - a pre-hook on layer 2's token-to-image attention swaps its keys/values for
        α1·x*_{p+Δp} + α2·x_p.
    Layer 2's image-to-token attention still sees the regular x_p. With the routing input "fit",
    a pre-hook on the prompt encoder keeps the box prompts and a pre-hook on the mask decoder runs
    the same decoder call with the plugins off first, to measure how the boxes fit its masks.
    Outside `engaged()` the Sam computes exactly what it computed before wrapping (a plain
    `SamPredictor(sam)` included).
    """

    def __init__(self, sam: nn.Module, config: Optional[PluginConfig] = None):
        super().__init__()
        self.backend: Backend = backend_for(sam)
        self.backend.check(sam)
        self.config = config or PluginConfig()
        width = self.backend.decoder_width(sam)
        if self.config.embed_dim != width:
            raise ValueError(
                f"plugin embed_dim {self.config.embed_dim} does not match the SAM decoder width {width}"
            )
        if self.config.reads_fit and not self.backend.box_fit_routing:
            raise ValueError(f"the routing input 'fit' is not available for {self.backend.title} models "
                             "(SAM 1 and HQ-SAM only)")
        for option, name in (("selector", "the output selector"), ("refine", "refinement")):
            if getattr(self.config, option) != "none" and not self.backend.box_fit_routing:
                raise ValueError(f"{name} is not available for {self.backend.title} models (SAM 1 and HQ-SAM only)")
        self.sam = sam
        self.sam.requires_grad_(False)
        for name, module in build_plugins(self.config).items():
            self.add_module(name, module)
        self.plugins_enabled = True
        self.last_alpha: Optional[torch.Tensor] = None  # (B, 2) of the last engaged call
        self.last_offsets: Optional[torch.Tensor] = None  # (B, h, w, 2), grid cells
        self.last_fit: Optional[torch.Tensor] = None  # (B, 2) = (box fit, has a box), routing input "fit"
        self.last_selected: Optional[torch.Tensor] = None  # (B,) bool: kept the plugged output (selector)
        self.last_refined: Optional[torch.Tensor] = None  # (B,) bool: took the second pass (refine)
        # With gradients on (training): site -> (α (B, 2), offsets (B, h, w, 2) or (B, h, w, G, 2))
        # of the last call, not detached, for loss terms on the routing (`stablesam.training.routing_terms`).
        self.routing_graph: Dict[str, Tuple[torch.Tensor, torch.Tensor]] = {}
        self._engaged = 0
        self._state: Dict[str, Any] = {}
        self._hooks = self._install_hooks()

    # ----------------------------------------------------------------- hooks
    def _install_hooks(self) -> List[Any]:
        transformer = self.backend.transformer(self.sam)
        self._tokens = self.backend.token_positions(self.sam)
        self._prompt_start = self.backend.prompt_token_start(self.sam)
        hooks = [transformer.register_forward_pre_hook(self._keep_grid, with_kwargs=True)]
        for site in ("layer2",) + tuple(self.config.extra_sites):
            if site == "final":
                attention = transformer.final_attn_token_to_image
            else:
                layer = transformer.layers[0 if site == "layer1" else 1]
                attention = layer.cross_attn_token_to_image
                norm = getattr(layer, self.backend.norm_name)
                hooks.append(norm.register_forward_hook(functools.partial(self._keep_token, site)))
            hooks.append(attention.register_forward_pre_hook(functools.partial(self._swap_keys, site),
                                                             with_kwargs=True))
        return hooks + self._second_pass_hooks()

    def remove_hooks(self) -> None:
        """Detach from the Sam for good (the wrapper stops working)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    @property
    def active(self) -> bool:
        """The plugins act on the current decoder call (engaged, on, and not standing aside)."""
        return self.plugins_enabled and self._engaged > 0 and not self._state.get("aside", False)

    def _keep_grid(self, module: nn.Module, args: Tuple, kwargs: Dict) -> None:
        if not self.active:
            return
        image_embedding, image_pe = self.backend.grid_inputs(args, kwargs)
        h, w = image_embedding.shape[-2:]
        # The dense PE encodes grid positions only: every family repeats one (1, C, h, w) map per
        # prompt, so one copy serves all prompts (broadcast). Made contiguous in the token layout
        # once, adding it reads memory in order (the strided view costs ~3 % of a decoder pass).
        self._state.update(hw=(h, w), pe=image_pe[:1].flatten(2).transpose(1, 2).contiguous())

    def _routing_token(self, tokens: torch.Tensor) -> torch.Tensor:
        """The DRP's input from the decoder's tokens (B, n, C) (HF: (B, P, n, C)): t_o (B, C), or
        with token `routing_inputs` t_o and those inputs concatenated, (B, (1 + len(inputs)) * C)."""
        iou, mask, out_tokens = self._tokens
        tokens = tokens.flatten(0, -3)  # HF's (B, P, n, C) -> (B * P, n, C)
        if self.config.routing_token == "iou":
            t_o = tokens[:, iou]
        elif self.config.routing_token == "mask":
            t_o = tokens[:, mask]
        else:
            t_o = tokens[:, out_tokens].mean(dim=1)
        if not self.config.token_inputs:
            return t_o
        parts = [t_o]
        for name in self.config.token_inputs:
            if name == "iou":
                parts.append(tokens[:, iou])
            else:  # "prompt": the prompt's sparse tokens (box corners, clicks), pooled; none -> zeros
                prompt = tokens[:, self._prompt_start:]
                parts.append(prompt.mean(dim=1) if prompt.shape[1] else torch.zeros_like(t_o))
        return torch.cat(parts, dim=-1)

    def _keep_token(self, site: str, module: nn.Module, args: Tuple, output: torch.Tensor) -> None:
        if self.active:
            self._state["token_" + site] = self._routing_token(output)

    def _swap_keys(self, site: str, module: nn.Module, args: Tuple, kwargs: Dict) -> Optional[Tuple]:
        if not self.active:
            return None
        suffix = "" if site == "layer2" else f"_{site}"
        dsp, drp = getattr(self, "dsp" + suffix), getattr(self, "drp" + suffix)
        h, w = self._state["hw"]
        q_name, k_name, v_name = self.backend.attn_kwargs
        shape = kwargs[v_name].shape  # (B, h*w, C); HF: (B * P, 1, h*w, C)
        pe, x = self._state["pe"], kwargs[v_name].reshape(-1, h * w, shape[-1])  # x = x_p
        if self.config.use_routing:  # the final attention's token is its own query (with its PE)
            token = self._routing_token(kwargs[q_name]) if site == "final" else self._state["token_" + site]
            alpha = drp(token, self._state.get("fit"))
        else:
            alpha = x.new_full((x.shape[0], 2), 0.5)
        with_box = self._state.get("with_box")
        if with_box is not None:  # traced standing aside: α = (0, 1) reads the regular features only
            alpha = torch.where(with_box[:, None], alpha, torch.tensor([0.0, 1.0], dtype=alpha.dtype, device=alpha.device))
        a1 = alpha[:, :1, None]
        plain = dsp.groups == 1 and not dsp.amplitude
        if torch.is_grad_enabled() or is_tracing() or not plain:  # training, ONNX export, options: out of place
            deformed, offsets = dsp(x, h, w)
            mixed = torch.lerp(x, deformed, a1)  # α1·x* + α2·x with α2 = 1 - α1
            if self.config.sampled_pe:
                pe = pe.expand(x.shape[0], -1, -1)
                pe = torch.lerp(pe, dsp.resample(pe, offsets, h, w), a1)
            k, v = mixed + pe, mixed
            raw_offsets = offsets
            if offsets.dim() == 5:  # per-group offsets: their mean is what is shown
                offsets = offsets.mean(dim=3)
        else:
            k_in = kwargs[k_name]
            k_out = k_in.view(x.shape) if k_in.is_contiguous() else torch.empty_like(x)
            k, v, offsets = self._mix_in_chunks(dsp, x, pe, a1, k_out, h, w)
            raw_offsets = offsets
        if torch.is_grad_enabled() and not is_tracing():
            self.routing_graph[site] = (alpha, raw_offsets)
        if site == "layer2":
            self.last_alpha, self.last_offsets = alpha.detach(), offsets.detach()
        return args, {**kwargs, k_name: k.view(shape), v_name: v.view(shape)}

    def _mix_in_chunks(self, dsp, x, pe, a1, k_out, h, w):
        """The same computation for inference, a few prompts at a time.

        Each chunk's intermediates (about 4 MB) stay cached by the allocator and the CPU,
        where whole-batch intermediates (B x 4 MB each) cost fresh pages on every call; the
        block's own k is not used after this call, so it is overwritten in place.
        """
        b, n, c = x.shape
        v_out = torch.empty_like(x)
        offsets = x.new_empty(b, h, w, 2)
        step = max(1, CHUNK_ELEMENTS // (n * c))
        for i in range(0, b, step):
            s = slice(i, i + step)
            deformed, offsets[s] = dsp(x[s], h, w)
            pe_s = pe  # (1, n, C), broadcast over the chunk's prompts
            if self.config.sampled_pe:
                pe_s = pe.expand(offsets[s].shape[0], -1, -1)
                pe_s = torch.lerp(pe_s, dsp.sample(pe_s, offsets[s], h, w), a1[s])
            torch.lerp(x[s], deformed, a1[s], out=v_out[s])
            torch.add(v_out[s], pe_s, out=k_out[s])
        return k_out, v_out, offsets

    # ------------------------------------------------------------- running
    @contextmanager
    def engaged(self) -> Iterator["StableSam"]:
        """Within this block the Sam's decoder runs with the plugins (if `plugins_enabled`)."""
        self._engaged += 1
        try:
            yield self
        finally:
            self._engaged -= 1
            if self._engaged == 0:
                self._state = {}

    def forward(self, batched_input: List[Dict[str, Any]], multimask_output: bool, **kwargs: Any) -> List[Dict]:
        """Same inputs and outputs as the wrapped model's own forward (`Sam.forward` for SAM 1)."""
        with self.engaged():
            return self.sam(batched_input, multimask_output, **kwargs)

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        boxes: Optional[torch.Tensor] = None,
        mask_input: Optional[torch.Tensor] = None,
        multimask_output: bool = False,
        extras: Optional[Dict[str, List[torch.Tensor]]] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Prompt encoder + mask decoder for B prompts on one image, differentiable.

        image_embeddings: (1, C, h, w); points: ((B, k, 2), (B, k)) and boxes (B, 4) in the
        model's input frame; extras: the rest of a cached `Embedding` (HQ-SAM's early ViT
        features, SAM 2's high-res features). Returns low-res mask logits (B, M, 4h, 4w) and
        IoU scores (B, M).
        """
        with self.engaged():
            return self.backend.decode(self.sam, image_embeddings, extras or {}, points, boxes,
                                       mask_input, multimask_output)

    # ----------------------------------------------------------- parameters
    @property
    def device(self) -> torch.device:
        return self.backend.device(self.sam)

    @property
    def family(self) -> str:
        """The wrapped model's family: sam1 | hq | sam2 | hf."""
        return self.backend.family

    def plugin_modules(self) -> Dict[str, nn.Module]:
        """{"dsp": ..., "drp": ...} for layer 2, plus "dsp_<site>", "drp_<site>" for extra sites."""
        return {name: module for name, module in self.named_children() if name.split("_")[0] in ("dsp", "drp")}

    def plugin_parameters(self) -> Iterator[nn.Parameter]:
        for module in self.plugin_modules().values():
            yield from module.parameters()

    def num_plugin_parameters(self) -> int:
        return sum(p.numel() for p in self.plugin_parameters())

    def plugin_state_dict(self) -> Dict[str, torch.Tensor]:
        return {
            f"{name}.{key}": value.detach().clone()
            for name, module in self.plugin_modules().items()
            for key, value in module.state_dict().items()
        }

    def load_plugin_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        expected = set(self.plugin_state_dict())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise ValueError(
                f"plugin weights do not fit this plugin config: missing {missing}, "
                f"unexpected {unexpected}"
            )
        for name, module in self.plugin_modules().items():
            prefix = name + "."
            module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

