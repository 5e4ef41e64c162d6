"""The decode-time options that run the mask decoder a second time, as hooks of `StableSam`.

- routing input "fit" (`box_fit`): before the plugged pass, a plain one measures how each box
  fits the base's mask;
- `selector` (`output_selector`): after it, a plain pass; each prompt keeps the output its IoU
  head prefers ("iou", "iou-box"); "box" and "iou-box" leave calls of clicks alone to SAM
  without running the plugins at all;
- `refine` (`box_refiner`): after that, the prompts whose box does not fit their mask are decoded
  again with the mask's (widened) box.

All of them act only while the plugins are engaged and on (`StableSam.active`), so plugins off
is SAM bit for bit; the selector and refinement act at inference only.
"""

from typing import Any, Dict, List, Tuple

import torch
from torch import nn

from .box_fit import prompt_fit
from .box_refiner import first_mask_boxes, rows_to_refine, widen
from .deformable_sampling import is_tracing
from .output_selector import choose_plugged, effective_routing, put_rows, select_rows
from .plugin_config import CLICKS_TO_SAM, OUTPUT_SELECTORS


class SecondPasses:
    """Mixin of `StableSam` (which provides backend, sam, config, active, _state and last_*)."""

    def _second_pass_hooks(self) -> List[Any]:
        c, decoder = self.config, self.backend.decoder(self.sam)
        hooks = []
        if c.reads_fit or c.selector != "none" or c.refine != "none":
            hooks.append(self.backend.prompt_encoder(self.sam).register_forward_pre_hook(self._keep_prompt,
                                                                                         with_kwargs=True))
        if c.reads_fit:
            hooks.append(decoder.register_forward_pre_hook(self._measure_fit, with_kwargs=True))
        if c.selector in OUTPUT_SELECTORS:  # forward hooks run in this order: refinement refines the selected output
            hooks.append(decoder.register_forward_hook(self._select_output, with_kwargs=True))
        if c.refine != "none":
            hooks.append(decoder.register_forward_hook(self._refine_output, with_kwargs=True))
        return hooks

    def _keep_prompt(self, module: nn.Module, args: Tuple, kwargs: Dict) -> None:
        """Before the prompt encoder: keep the prompt; with a selector that leaves clicks alone to
        SAM, a call without boxes stands aside (`StableSam.active` is False until the next prompt)."""
        if not (self.plugins_enabled and self._engaged > 0):
            return
        prompt = self.backend.prompt_inputs(args, kwargs)
        aside = self.config.selector in CLICKS_TO_SAM and prompt["boxes"] is None and not torch.is_grad_enabled()
        self._state.update(prompt=prompt, aside=aside)
        if not self._state.get("refining"):
            self.last_refined = None  # set by this call's refinement, if it runs
        if self.config.selector in CLICKS_TO_SAM:
            n = len(prompt["boxes"] if prompt["boxes"] is not None else
                    prompt["points"][0] if prompt["points"] is not None else prompt["masks"])
            device = self.backend.device(self.sam)
            self.last_selected = torch.full((n,), not aside, dtype=torch.bool, device=device)
            if aside:  # SAM's output: the routing of a prompt that got it (`output_selector.effective_routing`)
                h, w = self.backend.embedding_size(self.sam)
                self.last_alpha = torch.tensor([[0.0, 1.0]], device=device).repeat(n, 1)
                self.last_offsets = torch.zeros(n, h, w, 2, device=device)

    def prompts_with_box(self, with_box: torch.Tensor) -> None:
        """Stand aside per prompt within a traced call (ONNX export, where the prompt encoder is
        not called): with_box (B,) bool; prompts without a box get α = (0, 1), which reads the
        regular features only, i.e. SAM's output. Call inside `engaged()`."""
        self._state["with_box"] = with_box

    def _measure_fit(self, module: nn.Module, args: Tuple, kwargs: Dict) -> None:
        """Before the plugged decoder pass, the same call with the plugins off: the fit of each
        prompt's box to the base's mask (the best-scored one), kept as (B, 2) = (fit, has a box)."""
        if not self.active:
            return
        self.plugins_enabled = False
        try:
            with torch.no_grad():
                masks, scores = self.backend.decoder_masks(module(*args, **kwargs))
        finally:
            self.plugins_enabled = True
        boxes = (self._state.get("prompt") or {}).get("boxes")
        fit = prompt_fit(masks, scores, boxes, self.backend.image_size(self.sam))
        self._state["fit"] = self.last_fit = fit

    def _select_output(self, module: nn.Module, args: Tuple, kwargs: Dict, output: Any) -> Any:
        """After the plugged decoder pass (inference only), the same call with the plugins off;
        each prompt keeps the plugged output only where the IoU head prefers it
        (`output_selector`)."""
        if not self.active or torch.is_grad_enabled() or is_tracing():
            return None
        self.plugins_enabled = False
        try:
            plain = module(*args, **kwargs)
        finally:
            self.plugins_enabled = True
        keep = choose_plugged(self.backend.decoder_masks(plain)[1], self.backend.decoder_masks(output)[1],
                              self.config.selector_margin)
        self.last_selected = keep
        if self.last_alpha is not None and self.last_alpha.shape[0] == keep.shape[0]:
            self.last_alpha, self.last_offsets = effective_routing(self.last_alpha, self.last_offsets, keep)
        return select_rows(plain, output, keep)

    def _refine_output(self, module: nn.Module, args: Tuple, kwargs: Dict, output: Any) -> Any:
        """After the decoder pass (inference only): the prompts `box_refiner.rows_to_refine` picks
        are decoded again, their box replaced by their first mask's widened box (clicks and mask
        input kept); their rows of the output are the second pass's, the others' are unchanged."""
        prompt = self._state.get("prompt")
        if not self.active or self._state.get("refining") or prompt is None or torch.is_grad_enabled() \
                or is_tracing():
            return None
        logits, scores = self.backend.decoder_masks(output)
        size = self.backend.image_size(self.sam)
        first, nonempty = first_mask_boxes(logits, scores, size)
        labels = None if prompt["points"] is None else prompt["points"][1]
        rows = rows_to_refine(first, prompt["boxes"], labels, nonempty, self.config.refine_below,
                              self.config.refine_clicks)
        self.last_refined = rows
        if not bool(rows.any()):
            return None
        kept = (self.last_alpha, self.last_offsets, self.last_selected)
        points = prompt["points"]
        again = dict(points=None if points is None else (points[0][rows], points[1][rows]),
                     boxes=widen(first[rows], self.config.refine_margin, size),
                     masks=None if prompt["masks"] is None else prompt["masks"][rows])
        self._state["refining"] = True
        try:
            sparse, dense = self.backend.prompt_encoder(self.sam)(**again)
            args, kwargs = self.backend.with_prompt_embeddings(args, kwargs, sparse, dense)
            second = module(*args, **kwargs)
        finally:
            self._state["refining"] = False
            self._state.update(prompt=prompt, aside=False)
        self._merge_routing(kept, rows)
        return put_rows(output, second, rows)

    def _merge_routing(self, first: Tuple, rows: torch.Tensor) -> None:
        """last_alpha / last_offsets / last_selected of all B prompts after a second pass over
        `rows`: the second pass's values for those rows, the first pass's elsewhere."""
        names = ("last_alpha", "last_offsets", "last_selected")
        for name, before in zip(names, first):
            after = getattr(self, name)
            if before is None or after is None or before.shape[0] != rows.shape[0] \
                    or after.shape[0] != int(rows.sum()):
                continue
            merged = before.clone()
            merged[rows] = after.to(merged.dtype)
            setattr(self, name, merged)
