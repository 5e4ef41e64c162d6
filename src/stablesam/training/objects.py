"""What a training run trains on: each object's cached embedding and its mask in the decoder's
low-res logit frame, prepared once before the first step."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ..data.datasets import DataError, read_image
from ..modeling import StableSam
from ..models.cache import EmbeddingCache


@dataclass
class TrainObject:
    """One training object, ready for decoder passes."""

    name: str
    embedding: torch.Tensor  # (1, C, h, w)
    target: torch.Tensor  # (1, 1, 4h, 4w) whole-object mask in the low-res logit frame, soft
    mask_bits: np.ndarray  # np.packbits of the (H, W) mask
    shape: tuple  # (H, W)
    valid: Optional[torch.Tensor] = None  # (1, 1, 4h, 4w) weight: 0 on ignore pixels, None if none
    extras: Dict = field(default_factory=dict)  # what else the family's decoder reads (Embedding.extras)

    def mask(self) -> np.ndarray:
        h, w = self.shape
        return np.unpackbits(self.mask_bits, count=h * w).reshape(h, w).astype(bool)


def prepare_objects(datasets: Sequence, model: StableSam, cache: EmbeddingCache, progress: bool) -> List[TrainObject]:
    """Embeddings (through the cache: the encoder runs at most once per image) and targets."""
    sam, backend = model.sam, model.backend
    objects = []
    for ds in datasets:
        for i in tqdm(range(len(ds)), desc=f"prepare {ds.name}", unit="obj", disable=not progress):
            sample = ds.load(i)
            if sample is None:
                continue
            emb = cache.get(sam, sample.image).to(torch.device("cpu"))
            valid = None if sample.ignore is None else 1 - backend.low_res_target(sample.ignore, sam)
            objects.append(TrainObject(
                f"{ds.name}/{sample.name}", emb.features.detach(), backend.low_res_target(sample.mask, sam),
                np.packbits(sample.mask.ravel()), sample.mask.shape, valid, emb.extras,
            ))
    return objects


def warm_cache(datasets: Sequence, model: StableSam, cache: EmbeddingCache, rank: int, world: int,
               progress: bool) -> None:
    """Embed this process's share of the images (every world-th distinct image, in order) into
    the on-disk cache, so that under torchrun the encoder work is split between the processes.
    Unreadable images are left to `prepare_objects`, which reports them."""
    images = list(dict.fromkeys(ref.image_path for ds in datasets for ref in ds.objects))
    for path in tqdm(images[rank::world], desc=f"embed ({world} processes)", unit="img", disable=not progress):
        try:
            image = read_image(path)
        except DataError:
            continue
        cache.get(model.sam, image)
