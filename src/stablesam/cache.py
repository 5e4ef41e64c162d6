"""On-disk cache of SAM image embeddings: the frozen encoder runs once per image."""

import hashlib
import os
import zlib
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import Sam

from .checkpoints import atomic_torch_save, encoder_fingerprint

CACHE_FORMAT = 2  # 2: each entry carries a CRC-32 of its tensor bytes


def tensor_checksum(t: torch.Tensor) -> int:
    """CRC-32 of a CPU tensor's bytes: catches damaged entries (0.3-0.5 ms per MiB here,
    benchmarks/cache_checksum.py)."""
    return zlib.crc32(t.contiguous().reshape(-1).view(torch.uint8).numpy())


def default_cache_dir() -> Path:
    """$STABLESAM_CACHE, else the user's cache dir (e.g. ~/.cache/stablesam/embeddings)."""
    env = os.environ.get("STABLESAM_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("stablesam")) / "embeddings"


class Embedding:
    """An image embedding (1, C, h, w) with the sizes SamPredictor needs."""

    def __init__(self, features: torch.Tensor, input_size: Tuple[int, int], original_size: Tuple[int, int]):
        self.features = features
        self.input_size = tuple(int(v) for v in input_size)
        self.original_size = tuple(int(v) for v in original_size)


def encode_image(sam: Sam, image: np.ndarray) -> Embedding:
    """SAM's own `set_image` (resize, normalise, pad, encode) on an (H, W, 3) uint8 RGB image."""
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    return Embedding(predictor.features, predictor.input_size, predictor.original_size)


class EmbeddingCache:
    """Embeddings keyed by (model weights, image content, input size), one file each.

    Writes are atomic (temporary file + rename); an unreadable or inconsistent entry (wrong
    format, key, sizes or shape, or tensor bytes that do not match the CRC-32 stored with them)
    is deleted and recomputed. `root=None` keeps everything in memory only. `encoder_calls` counts encoder
    runs (what the cache exists to avoid).
    """

    def __init__(self, root: Optional[Union[str, Path]] = None, memory_items: int = 4):
        self.root = Path(root) if root is not None else None
        self.memory_items = memory_items
        self._memory: Dict[str, Embedding] = {}
        self._fingerprints: Dict[int, str] = {}
        self.encoder_calls = 0

    def model_key(self, sam: Sam) -> str:
        key = self._fingerprints.get(id(sam))
        if key is None:
            key = self._fingerprints[id(sam)] = encoder_fingerprint(sam)
        return key

    def key(self, sam: Sam, image: np.ndarray) -> str:
        digest = hashlib.sha256()
        digest.update(self.model_key(sam).encode())
        digest.update(f"{sam.image_encoder.img_size}:{image.shape}:{image.dtype}".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        return digest.hexdigest()[:32]

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.pt"

    def get(self, sam: Sam, image: np.ndarray) -> Embedding:
        key = self.key(sam, image)
        hit = self._memory.get(key)
        if hit is None and self.root is not None:
            hit = self._read(key, sam, tuple(image.shape[:2]))
        if hit is None:
            hit = encode_image(sam, image)
            self.encoder_calls += 1
            if self.root is not None:
                features = hit.features.detach().cpu()
                atomic_torch_save(
                    {
                        "format": CACHE_FORMAT,
                        "key": key,
                        "features": features,
                        "crc32": tensor_checksum(features),
                        "input_size": list(hit.input_size),
                        "original_size": list(hit.original_size),
                    },
                    self.path(key),
                )
        self._remember(key, hit)
        return hit

    def _read(self, key: str, sam: Sam, image_size: Tuple[int, int]) -> Optional[Embedding]:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            features = obj["features"]
            ok = (
                obj.get("format") == CACHE_FORMAT
                and obj.get("key") == key
                and tuple(obj.get("original_size", ())) == image_size
                and features.ndim == 4
                and features.shape[1] == sam.prompt_encoder.embed_dim
                and obj.get("crc32") == tensor_checksum(features)
            )
        except Exception:  # any unreadable entry (truncated, garbage) is simply recomputed
            ok = False
        if not ok:
            path.unlink(missing_ok=True)
            return None
        return Embedding(features.to(sam.device), obj["input_size"], obj["original_size"])

    def _remember(self, key: str, value: Embedding) -> None:
        self._memory.pop(key, None)
        self._memory[key] = value
        while len(self._memory) > self.memory_items:
            self._memory.pop(next(iter(self._memory)))
