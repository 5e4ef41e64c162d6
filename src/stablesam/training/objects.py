"""What a training run trains on: each object's cached embedding and its mask in the decoder's
low-res logit frame, prepared once before the first step; with `augment` > 0, also that many
augmented views of it (`stablesam.data.augment`), each embedded and cached like an image."""

from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..data.augment import augmented_view
from ..data.datasets import DataError, Sample, read_image
from ..modeling import StableSam
from ..models.cache import EmbeddingCache, as_dtype
from ..precision import default_cache_dtype
from ..prompts.generation import object_rng


@dataclass
class TrainObject:
    """One training object, ready for decoder passes."""

    name: str
    embedding: torch.Tensor  # (1, C, h, w), in the cache's stored dtype (float16 on CUDA)
    target: torch.Tensor  # (1, 1, 4h, 4w) whole-object mask in the low-res logit frame, soft
    mask_bits: np.ndarray  # np.packbits of the (H, W) mask
    shape: tuple  # (H, W)
    valid: Optional[torch.Tensor] = None  # (1, 1, 4h, 4w) weight: 0 on ignore pixels, None if none
    extras: Dict = field(default_factory=dict)  # what else the family's decoder reads (Embedding.extras)
    views: List["TrainObject"] = field(default_factory=list)  # augmented views of the same object
    # streamed: () -> (embedding, extras) read from the disk cache at each use (`embedding` is then
    # empty), so a run holds no embedding in memory
    loader: Optional[Callable[[], Tuple[torch.Tensor, Dict]]] = None

    def features(self) -> Tuple[torch.Tensor, Dict]:
        """The embedding (1, C, h, w) and the extras, from memory or (streamed) from the cache."""
        return self.loader() if self.loader is not None else (self.embedding, self.extras)

    def mask(self) -> np.ndarray:
        h, w = self.shape
        return np.unpackbits(self.mask_bits, count=h * w).reshape(h, w).astype(bool)


def view_rng(seed: int, name: str, view: int) -> np.random.Generator:
    """The generator of augmented view `view` (1, 2, ...) of object `name` ('dataset/object')."""
    return object_rng(seed, "augment", name, view)


View = Tuple[int, np.ndarray, np.ndarray, Optional[np.ndarray]]  # index, image, mask, ignore


def object_views(sample: Sample, name: str, augment: int, seed: int) -> Iterator[View]:
    """(view index, image, mask, ignore) of each of the `augment` augmented views of `sample`."""
    for view in range(1, augment + 1):
        yield (view, *augmented_view(sample.image, sample.mask, sample.ignore, view_rng(seed, name, view)))


def make_object(name: str, image: np.ndarray, mask: np.ndarray, ignore: Optional[np.ndarray], model: StableSam,
                cache: EmbeddingCache, stream: bool = False) -> TrainObject:
    """A training object; with `stream` (a disk cache that can be written), its embedding is
    read from the cache at each use instead of held in memory."""
    sam, backend = model.sam, model.backend
    hit = cache.get(sam, image)
    valid = None if ignore is None else 1 - backend.low_res_target(ignore, sam)
    target, bits = backend.low_res_target(mask, sam), np.packbits(mask.ravel())
    if stream and cache.root is not None and not cache.read_only:  # the entry is on disk
        key, size = cache.key(sam, image), tuple(image.shape[:2])

        def load() -> Tuple[torch.Tensor, Dict]:
            entry = cache.load(key, sam, size)
            return entry.features, entry.extras

        return TrainObject(name, torch.empty(0), target, bits, mask.shape, valid, loader=load)
    # Kept in the cache's stored dtype (float16 on CUDA: the values the cache hands out are
    # rounded through it, so this loses nothing and halves the memory); the step casts to float32.
    emb = as_dtype(hit, cache.dtype or default_cache_dtype(backend.device(sam))).to(torch.device("cpu"))
    return TrainObject(name, emb.features.detach(), target, bits, mask.shape, valid, emb.extras)


def prepare_objects(datasets: Sequence, model: StableSam, cache: EmbeddingCache, progress: bool,
                    augment: int = 0, seed: int = 0, stream: bool = False) -> List[TrainObject]:
    """Embeddings (through the cache: the encoder runs at most once per image and view) and
    targets; each object with `augment` augmented views drawn from `seed`; with `stream`, the
    embeddings stay on disk and each step reads its objects' (`make_object`)."""
    objects = []
    for ds in datasets:
        for i in tqdm(range(len(ds)), desc=f"prepare {ds.name}", unit="obj", disable=not progress):
            sample = ds.load(i)
            if sample is None:
                continue
            name = f"{ds.name}/{sample.name}"
            obj = make_object(name, sample.image, sample.mask, sample.ignore, model, cache, stream)
            for view, image, mask, ignore in object_views(sample, name, augment, seed):
                obj.views.append(make_object(f"{name}#{view}", image, mask, ignore, model, cache, stream))
            objects.append(obj)
    return objects


def warm_cache(datasets: Sequence, model: StableSam, cache: EmbeddingCache, rank: int, world: int,
               progress: bool, augment: int = 0, seed: int = 0) -> None:
    """Embed this process's share of the images (every world-th distinct image, in order; then
    every world-th object's augmented views) into the on-disk cache, so that under torchrun the
    encoder work is split between the processes. Unreadable images are left to
    `prepare_objects`, which reports them."""
    images = list(dict.fromkeys(ref.image_path for ds in datasets for ref in ds.objects))
    for path in tqdm(images[rank::world], desc=f"embed ({world} processes)", unit="img", disable=not progress):
        try:
            image = read_image(path)
        except DataError:
            continue
        cache.get(model.sam, image)
    if augment <= 0:
        return
    refs = [(ds, i) for ds in datasets for i in range(len(ds))]
    for ds, i in tqdm(refs[rank::world], desc=f"embed views ({world} processes)", unit="obj", disable=not progress):
        sample = ds.load(i)
        if sample is None:
            continue
        for _, image, _, _ in object_views(sample, f"{ds.name}/{sample.name}", augment, seed):
            cache.get(model.sam, image)
