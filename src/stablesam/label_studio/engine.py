"""Tasks in, Label Studio predictions out: one model, an LRU of image embeddings, one lock.

The encoder runs once per image (the store keeps the last `max_images`, keyed by the image's
URL or, for a local file, its path, modification time and size), so a further click or box on
the same image only runs the decoder. Model calls are serialised by one lock, as in the demo;
downloads and decoding run outside it.
"""

import threading
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from ..models.cache import encode_image
from ..demo.session import ImageStore, StoredImage
from ..data.images import MAX_PIXELS, InputError, LimitError, load_image
from ..limits import SERVER_BOXES
from ..modeling import StableSam
from ..backends.predictor import StableSamPredictor
from .config import LabelingConfig
from .fetch import ImageFetcher
from .regions import RegionPrompt, context_prompts, task_boxes
from .results import mask_results

ASPECT_TOLERANCE = 0.02  # Label Studio's size may differ from ours by rounding only


class LabelStudioEngine:
    """Stable-SAM for Label Studio: `predict(tasks, config, context)` -> one prediction per task."""

    def __init__(self, model: StableSam, model_version: str, fetcher: Optional[ImageFetcher] = None,
                 max_pixels: int = MAX_PIXELS, max_images: int = 8, negative_label: str = "Background"):
        self.model = model.eval()
        self.predictor = StableSamPredictor(model)
        self.model_version = model_version
        self.fetcher = fetcher if fetcher is not None else ImageFetcher()
        self.max_pixels = max_pixels
        self.negative_label = negative_label
        self.store = ImageStore(max_images)
        self.lock = threading.Lock()
        self.encoder_calls = 0

    def image(self, task: Dict[str, Any], key: str, where: str, cancel: Optional[threading.Event] = None) -> StoredImage:
        """The task's image (data[key]) with its embedding, from the store or fetched and encoded."""
        data = task.get("data")
        if not isinstance(data, dict) or key not in data:
            raise InputError(f"{where}.data has no {key!r} (the Image tag's value)")
        source = self.fetcher.resolve(data[key])
        item = self.store.get(source.key)
        if item is not None:
            return item
        content = self.fetcher.read(source, cancel)
        try:
            rgb = load_image(content, exif=True, max_pixels=self.max_pixels)
        except InputError as e:  # LimitError stays a LimitError (413)
            raise type(e)(f"image {str(data[key])[:120]}: {e}") from None
        with self.lock:
            item = self.store.get(source.key)  # a concurrent request for the same image may have won
            if item is None:
                item = StoredImage(source.key, str(data[key])[:200], rgb.shape[1], rgb.shape[0],
                                   encode_image(self.model.sam, rgb), b"")
                self.encoder_calls += 1
                self.store.put(item)
        return item

    def segment(self, item: StoredImage, prompts: List[RegionPrompt]) -> List[Tuple[np.ndarray, float]]:
        """(mask (H, W) bool, predicted IoU) per prompt; a lone click keeps the best of SAM's 3 masks."""
        pixels = [p.pixels(item.width, item.height) for p in prompts]
        with self.lock:
            self.predictor.set_embedding(item.embedding)
            if all(len(points) == 0 for _, points, _ in pixels):
                masks, scores, _ = self.predictor.predict_batch(np.stack([b for b, _, _ in pixels]))
                return [(m[0], float(s[0])) for m, s in zip(masks, scores)]
            out = []
            for box, points, labels in pixels:
                lone_click = box is None and len(points) == 1
                masks, scores, _ = self.predictor.predict_batch(
                    None if box is None else box[None], points[None], labels[None], multimask_output=lone_click)
                best = int(scores[0].argmax())
                out.append((masks[0, best], float(scores[0, best])))
            return out

    def predict_task(self, task: Any, config: LabelingConfig, prompts: List[RegionPrompt], where: str,
                     cancel: Optional[threading.Event] = None) -> Dict[str, Any]:
        """One task and its prompts -> {"result": [...], "score": mean predicted IoU, "model_version": ...}."""
        if not prompts:
            return {"result": [], "score": 0.0, "model_version": self.model_version}
        to_names = {p.to_name for p in prompts}
        results, scores = [], []
        for to_name in sorted(to_names, key=str):
            group = [p for p in prompts if p.to_name == to_name]
            image_name, key = config.image_key(to_name)
            item = self.image(task, key, where, cancel)
            for prompt, (mask, score) in zip(group, self.segment(item, group)):
                tags = config.targets(image_name, prompt.label)
                results.extend(mask_results(self.fit(mask, prompt.size), tags, prompt.label, score))
                scores.append(score)
        return {"result": results, "score": round(float(np.mean(scores)), 4), "model_version": self.model_version}

    @staticmethod
    def fit(mask: np.ndarray, size: Optional[Tuple[int, int]]) -> np.ndarray:
        """The mask at the size Label Studio shows the image (original_width x original_height)."""
        h, w = mask.shape
        if size is None or size == (w, h):
            return mask
        if abs(size[0] / size[1] - w / h) > ASPECT_TOLERANCE * w / h:
            raise InputError(f"Label Studio shows the image as {size[0]}x{size[1]} px but it is {w}x{h} px here "
                             "(a different image, or EXIF orientation not applied by the browser?)")
        return cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0

    def predict(self, tasks: Any, config: LabelingConfig, context: Any,
                cancel: Optional[threading.Event] = None) -> List[Dict[str, Any]]:
        """The /predict answer's results: interactive when context.result holds regions, else
        pre-annotation of each task's rectangles. At most `SERVER_BOXES` boxes per request. A
        task with nothing to predict from gets no prediction (Label Studio would store an empty
        one and then take the task as predicted): a request of such tasks only is answered with
        no results; in a request that mixes them with others, they keep an empty placeholder,
        since Label Studio pairs results with tasks by position."""
        if not isinstance(tasks, list):
            raise InputError("tasks must be a list")
        if context is not None and not isinstance(context, dict):
            raise InputError("params.context must be an object or null")
        result = (context or {}).get("result")
        if result:
            if len(tasks) != 1:
                raise InputError(f"an interactive request (context.result) takes one task, got {len(tasks)}")
            prompts = [context_prompts(result, self.negative_label)]
        else:
            prompts = [task_boxes(task, f"tasks[{i}]") if isinstance(task, dict) else None
                       for i, task in enumerate(tasks)]
        for i, task in enumerate(tasks):
            if not isinstance(task, dict):
                raise InputError(f"tasks[{i}] must be an object")
        boxes = sum(len(p) for p in prompts)
        if boxes > SERVER_BOXES:
            raise LimitError(f"{boxes} boxes in one request; at most {SERVER_BOXES} (each is an image-sized mask "
                             "in memory until the answer is sent): send fewer tasks per request")
        if not any(prompts):
            return []
        return [self.predict_task(task, config, p, f"tasks[{i}]", cancel) for i, (task, p) in enumerate(zip(tasks, prompts))]
