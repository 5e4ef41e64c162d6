"""StableSamPredictor: the family's own predictor's call shape (SamPredictor for SAM 1 and
HQ-SAM, SAM2ImagePredictor for SAM 2), plus batched prompts and routing read-outs."""

from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from segment_anything import SamPredictor

from ..modeling import StableSam
from ..prompts.checks import check_boxes, check_image, check_points, check_prompt
from ..modeling.geometry import prompts_to_frame

CPU_MAX_BATCH = 4  # prompts per decoder pass on a CPU (see predict_batch)


def check_stable(model: object, who: str = "StableSamPredictor") -> None:
    if not isinstance(model, StableSam):
        raise TypeError(
            f"{who} takes a StableSam, got {type(model).__name__}; wrap the SAM with "
            "stablesam.StableSam(sam) (or use the family's own predictor for plain SAM)"
        )


class StablePredictorMixin:
    """What every family's Stable predictor adds to the family's own predictor: `predict_batch`,
    `routing` and `set_embedding`. A family's class puts this first in its bases and provides
    `_batch_inputs` (original-image prompts -> input-frame tensors) and `_decode_batch`."""

    stable: StableSam

    def set_image(self, image: np.ndarray, *args, **kwargs) -> None:
        """The family's own `set_image`, after `prompts.checks.check_image`: an image so thin that a
        side would vanish in the model's resize is an InputError naming its size."""
        check_image(image, getattr(getattr(self, "transform", None), "target_length", None))
        return super().set_image(image, *args, **kwargs)

    def predict(self, point_coords: Optional[np.ndarray] = None, point_labels: Optional[np.ndarray] = None,
                box: Optional[np.ndarray] = None, *args, **kwargs):
        """The family's own `predict` (same arguments and results), after the checks the command
        line makes (`prompts.checks.check_prompt`): finite coordinates, labels 1 / 0 (-1: padding), x0 <= x1 and
        y0 <= y1, at most `limits.CLICKS` clicks; anything else is a `stablesam.InputError`."""
        check_prompt(point_coords, point_labels, box)
        return super().predict(point_coords, point_labels, box, *args, **kwargs)

    def _batch_inputs(self, boxes, point_coords, point_labels):
        """SamPredictor's transform: returns (points, labels, boxes) tensors or None each."""
        return prompts_to_frame(self.transform, self.original_size, self.device, boxes, point_coords, point_labels)

    def _decode_batch(self, points, labels, boxes, multimask_output: bool, return_logits: bool):
        return self.predict_torch(points, labels, boxes, None, multimask_output, return_logits=return_logits)

    def _empty_batch(self, multimask_output: bool, return_logits: bool):
        m = 3 if multimask_output else 1
        h, w = self.original_size
        lh, lw = self.stable.backend.mask_input_size(self.stable.sam)
        empty = np.zeros((0, m, h, w), dtype=np.float32 if return_logits else bool)
        return empty, np.zeros((0, m), np.float32), np.zeros((0, m, lh, lw), np.float32)

    def predict_batch(
        self,
        boxes: Optional[np.ndarray] = None,
        point_coords: Optional[np.ndarray] = None,
        point_labels: Optional[np.ndarray] = None,
        multimask_output: bool = False,
        return_logits: bool = False,
        max_batch: Optional[int] = None,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """N prompts for the current image, batched through the decoder.

        All N go through one decoder call on a GPU. On a CPU the call is split into passes of
        `max_batch` prompts (default CPU_MAX_BATCH): the decoder's per-prompt tensors
        (B x 32 x 256 x 256 and more) then stay small, which measured about 1.5x faster than
        one 20-prompt pass here (benchmarks/eval_throughput.py). Results do not depend on it.

        boxes: (N, 4) XYXY; point_coords: (N, k, 2) XY with point_labels (N, k) (1 foreground,
        0 background, -1 padding), all in original-image pixels. Returns masks (N, M, H, W),
        scores (N, M) and low-res logits (N, M, 4h, 4w) (256 x 256 for SAM), M = 3 with multimask_output else 1.
        For each n, the result equals a single `predict` call with that prompt.
        """
        if not self.is_image_set:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        n = check_batch_prompts(boxes, point_coords, point_labels)
        if n == 0:
            return self._empty_batch(multimask_output, return_logits)
        points_t, labels_t, boxes_t = self._batch_inputs(boxes, point_coords, point_labels)
        step = max(1, max_batch or (n if self.device.type == "cuda" else CPU_MAX_BATCH))
        outputs, alphas, offsets = [], [], []
        for i in range(0, n, step):
            s = slice(i, i + step)
            outputs.append(self._decode_batch(
                take(points_t, s), take(labels_t, s), take(boxes_t, s), multimask_output, return_logits
            ))
            alphas.append(self.stable.last_alpha)
            offsets.append(self.stable.last_offsets)
        if alphas[0] is not None:
            self.stable.last_alpha, self.stable.last_offsets = torch.cat(alphas), torch.cat(offsets)
        # float32 out also when the decoder ran under bf16 / fp16 autocast (`stablesam.precision`)
        masks, scores, logits = (torch.cat(parts).cpu() for parts in zip(*outputs))
        masks, scores, logits = (t.float().numpy() if t.is_floating_point() else t.numpy()
                                 for t in (masks, scores, logits))
        return masks, scores, logits

    @property
    def routing(self) -> Dict[str, Optional[np.ndarray]]:
        """α (N, 2) = (deformed, regular) weights and Δp (N, h, w, 2) in embedding-grid cells
        of the last call (None when the plugins were off)."""
        alpha, offsets = self.stable.last_alpha, self.stable.last_offsets
        return {
            "alpha": None if alpha is None else alpha.cpu().numpy(),
            "offsets": None if offsets is None else offsets.cpu().numpy(),
        }


class Sam2StylePredictorMixin:
    """What SAM 2's `SAM2ImagePredictor` and SAM 3's `SAM3InteractiveImagePredictor` (the same
    design) need for the plugins: decoding engaged, batched prompts through their `_prep_prompts`
    and `_predict`, and cached embeddings (with the high-res features). Put before
    `StablePredictorMixin` in the bases."""

    @property
    def is_image_set(self) -> bool:
        return self._is_image_set

    @property
    def original_size(self) -> Tuple[int, int]:
        return tuple(self._orig_hw[-1])

    @torch.no_grad()
    def _predict(self, *args: Any, **kwargs: Any) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.stable.last_alpha = self.stable.last_offsets = None
        with self.stable.engaged():
            return super()._predict(*args, **kwargs)

    def _batch_inputs(self, boxes: Optional[np.ndarray], point_coords: Optional[np.ndarray],
                      point_labels: Optional[np.ndarray]):
        _, coords, labels, boxes_t = self._prep_prompts(point_coords, point_labels, boxes, None, True)
        return coords, labels, boxes_t

    def _decode_batch(self, points, labels, boxes, multimask_output: bool, return_logits: bool):
        return self._predict(points, labels, boxes, None, multimask_output, return_logits=return_logits)

    def set_embedding(self, embedding) -> None:
        """Use a cached `Embedding` (with its high-res features) instead of `set_image`."""
        self.reset_predictor()
        embedding = embedding.to(self.device)
        self._features = {"image_embed": embedding.features, "high_res_feats": embedding.extras["high_res_feats"]}
        self._orig_hw = [tuple(embedding.original_size)]
        self._is_image_set = True


class StableSamPredictor(StablePredictorMixin, SamPredictor):
    """`SamPredictor` for a `StableSam`: `set_image`, `predict`, `predict_torch` unchanged in
    shape and meaning, with the plugins active when `model.plugins_enabled` is True.

    For a StableSam of another family, `StableSamPredictor(model)` returns that family's Stable
    predictor (HQ-SAM: SamPredictor's shape with `hq_token_only`; SAM 2: SAM2ImagePredictor's;
    Hugging Face: SamPredictor's), each with `predict_batch`, `routing` and `set_embedding`.
    """

    def __new__(cls, model: StableSam, *args, **kwargs):
        check_stable(model)
        if cls is StableSamPredictor and model.family != "sam1":
            return model.backend.predictor(model, *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, model: StableSam) -> None:
        check_stable(model)
        super().__init__(model.sam)
        self.stable = model

    @torch.no_grad()
    def predict_torch(self, *args, **kwargs) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self.stable.last_alpha = self.stable.last_offsets = None
        with self.stable.engaged():
            return super().predict_torch(*args, **kwargs)

    def set_embedding(self, embedding) -> None:
        """Use a precomputed image embedding (see `stablesam.models.cache`) instead of `set_image`."""
        self.reset_image()
        self.features = embedding.features.to(self.device)
        self.original_size = tuple(embedding.original_size)
        self.input_size = tuple(embedding.input_size)
        self.is_image_set = True


def take(t: Optional[torch.Tensor], s: slice) -> Optional[torch.Tensor]:
    return None if t is None else t[s]


def check_batch_prompts(
    boxes: Optional[np.ndarray], point_coords: Optional[np.ndarray], point_labels: Optional[np.ndarray]
) -> int:
    """Validate batched prompt shapes; returns N."""
    if boxes is None and point_coords is None:
        raise ValueError("predict_batch needs boxes (N x 4) and/or point_coords (N x k x 2)")
    n = None
    if boxes is not None:
        boxes = np.asarray(boxes)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must have shape (N, 4), got {boxes.shape}")
        n = boxes.shape[0]
    if point_coords is not None:
        if point_labels is None:
            raise ValueError("point_coords given without point_labels")
        coords, labels = np.asarray(point_coords), np.asarray(point_labels)
        if coords.ndim != 3 or coords.shape[2] != 2:
            raise ValueError(f"point_coords must have shape (N, k, 2), got {coords.shape}")
        if labels.shape != coords.shape[:2]:
            raise ValueError(
                f"point_labels must have shape (N, k) = {coords.shape[:2]}, got {labels.shape}"
            )
        if n is not None and coords.shape[0] != n:
            raise ValueError(f"{n} boxes but {coords.shape[0]} point sets: N must match")
        n = coords.shape[0]
        check_points(coords, labels, padding=True)
    elif point_labels is not None:
        raise ValueError("point_labels given without point_coords")
    if boxes is not None:
        check_boxes(boxes)
    return int(n)
