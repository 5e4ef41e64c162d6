"""What a reproduction will cost, from a probe on a few of its own images: the encoder's time
per image, an embedding's size on disk, and a decoder pass's time per prompt, scaled to the
whole run. The probed embeddings go into the cache, so the probe costs nothing later."""

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import torch

from ..data.datasets import DataError, read_image
from ..modeling import StableSam
from ..modeling.geometry import prompts_to_frame
from ..models.cache import EmbeddingCache, encode_image
from ..precision import autocast, default_cache_dtype

ENTRY_OVERHEAD = 2048  # bytes of a cache entry besides its tensors (keys, sizes, the pickle)
TRAIN_PASS_COST = 3.0  # a training step's forward + backward, in forward passes


@dataclass
class Probe:
    """Measured on `images` images: seconds per encoder run, bytes per cache entry (as stored),
    bytes per embedding in a training run's memory (the stored dtype), seconds per decoder pass
    per prompt."""

    images: int
    encode_s: float
    entry_bytes: int
    memory_bytes: int
    decode_s: float


@dataclass
class Estimate:
    """The run's cost: disk for the cache, memory for training, hours per stage (an estimate)."""

    train_images: int
    test_images: int
    disk_gb: float
    train_memory_gb: float
    embed_hours: float
    train_hours: float
    eval_hours: float
    probe: Dict

    @property
    def hours(self) -> float:
        return self.embed_hours + self.train_hours + self.eval_hours

    def to_dict(self) -> Dict:
        return {**asdict(self), "hours": self.hours}

    def lines(self) -> List[str]:
        p = self.probe
        return [
            f"estimate from a probe of {p['images']} images ({p['encode_s']:.2f} s per image in the encoder, "
            f"{p['decode_s'] * 1e3:.2f} ms per prompt in the decoder, {p['entry_bytes'] / 2**20:.2f} MiB per "
            "cached embedding):",
            f"  embedding cache: {self.disk_gb:.1f} GB on disk for {self.train_images + self.test_images} images "
            f"(training streams them from there: {self.train_memory_gb:.1f} GB read per epoch)",
            f"  time: {self.hours:.2f} h (encoder {self.embed_hours:.2f} h, training {self.train_hours:.2f} h, "
            f"evaluation {self.eval_hours:.2f} h)",
        ]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def probe(model: StableSam, images: Sequence[Path], cache: EmbeddingCache, samples: int) -> Probe:
    """Encode `images` through `cache` (timing the encoder where it runs, or once more on the last
    image when all were cached; unreadable images are left out) and time one decoder pass of
    `samples` box prompts on the last embedding."""
    device = model.device
    times, hit = [], None
    for path in images:
        try:
            image = read_image(path)
        except DataError:
            continue
        calls = cache.encoder_calls
        sync(device)
        t0 = time.perf_counter()
        hit = cache.get(model.sam, image)
        sync(device)
        if cache.encoder_calls > calls:
            times.append(time.perf_counter() - t0)
    if hit is None:
        raise DataError("no probe image could be read")
    if not times:  # every probe image was cached already (a resumed run): time one encoder run
        sync(device)
        t0 = time.perf_counter()
        with torch.no_grad(), autocast(device, cache.precision):
            encode_image(model.sam, image)
        sync(device)
        times.append(time.perf_counter() - t0)
    stored = torch.empty((), dtype=cache.dtype or default_cache_dtype(device)).element_size()
    numel = hit.features.numel() + sum(t.numel() for v in hit.extras.values() for t in v)
    h, w = hit.original_size
    boxes = np.array([[w * 0.2, h * 0.2, w * 0.8, h * 0.8]] * samples)
    frame = prompts_to_frame(model.backend.prompt_transform(model.sam), (h, w), device, boxes)[2]
    features = hit.features.to(device)
    extras = {k: [t.to(device) for t in v] for k, v in hit.extras.items()}
    with torch.no_grad(), autocast(device, cache.precision):
        model.decode(features, None, frame, multimask_output=False, extras=extras)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        model.decode(features, None, frame, multimask_output=False, extras=extras)
        sync(device)
    decode_s = (time.perf_counter() - t0) / samples
    return Probe(len(images), float(np.mean(times)), numel * stored + ENTRY_OVERHEAD,
                 numel * stored, decode_s)


def estimate(p: Probe, train_images: int, test_images: int, epochs: float, trainings: int, models: int,
             prompts: int, samples: int) -> Estimate:
    """Scale a probe to the run: every image encoded once; `trainings` runs of `epochs` epochs
    over the training images (one object each); `models` x `prompts` x `samples` decoder
    passes per test image."""
    images = train_images + test_images
    train_s = trainings * epochs * train_images * TRAIN_PASS_COST * p.decode_s
    eval_s = test_images * models * prompts * samples * p.decode_s
    return Estimate(train_images, test_images, images * p.entry_bytes / 1e9, train_images * p.memory_bytes / 1e9,
                    images * p.encode_s / 3600, train_s / 3600, eval_s / 3600, asdict(p))
