"""On-disk cache of SAM image embeddings: the frozen encoder runs once per image.

Entries are keyed by the model family, the encoder's weights, the input size and the image;
they hold what the family's decoder reads (SAM 2's high-res features, HQ-SAM's early ViT
features) next to the embedding itself."""

import hashlib
import os
import warnings
import zlib
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..modeling.family import Embedding
from ..modeling.registry import backend_for
from ..fileio import atomic_torch_save
from ..fileio import creation_problem, nearest_folder
from ..precision import autocast, check_precision, default_cache_dtype
from .files import encoder_fingerprint

CACHE_FORMAT = 2  # 2: each entry carries a CRC-32 of its tensor bytes


def tensor_checksum(t: torch.Tensor, extras: Optional[Dict[str, List[torch.Tensor]]] = None) -> int:
    """CRC-32 of a CPU tensor's bytes (then of the extras', in key order): catches damaged
    entries (0.3-0.5 ms per MiB here, benchmarks/cache_checksum.py)."""
    crc = zlib.crc32(t.contiguous().reshape(-1).view(torch.uint8).numpy())
    for key in sorted(extras or {}):
        for x in extras[key]:
            crc = zlib.crc32(x.contiguous().reshape(-1).view(torch.uint8).numpy(), crc)
    return crc


class CacheError(ValueError):
    """A cache path that cannot be a folder (a file, a link to nothing, a link loop)."""


class CacheWarning(UserWarning):
    """The cache cannot be written: it is read only, new embeddings stay in memory."""


def default_cache_dir() -> Path:
    """$STABLESAM_CACHE, else the user's cache dir (e.g. ~/.cache/stablesam/embeddings)."""
    env = os.environ.get("STABLESAM_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("stablesam")) / "embeddings"


def encode_image(sam: nn.Module, image: np.ndarray) -> Embedding:
    """The family's own preprocessing and encoder (SAM 1: `SamPredictor.set_image`) on an
    (H, W, 3) uint8 RGB image. An image too thin for the model's resize is an InputError
    (`stablesam.limits.check_image_side`)."""
    from ..prompts.checks import check_image

    check_image(image, getattr(getattr(sam, "image_encoder", None), "img_size", None))
    return backend_for(sam).encode(sam, image)


def as_dtype(hit: Embedding, dtype: torch.dtype) -> Embedding:
    """The embedding with its floating-point tensors (features and extras) cast to `dtype`."""
    def cast(t: torch.Tensor) -> torch.Tensor:
        return t.to(dtype) if t.is_floating_point() else t

    extras = {k: [cast(t) for t in v] for k, v in hit.extras.items()}
    return Embedding(cast(hit.features), hit.input_size, hit.original_size, extras)


class EmbeddingCache:
    """Embeddings keyed by (model weights, image content, input size), one file each.

    Writes are atomic (temporary file + rename); an unreadable or inconsistent entry (wrong
    format, key, sizes or shape, or tensor bytes that do not match the CRC-32 stored with them)
    is deleted and recomputed. `root=None` keeps everything in memory only. `encoder_calls` counts encoder
    runs (what the cache exists to avoid). A cache that cannot be written (`read_only`, or found
    so at a write, with one `CacheWarning`) reads its entries, recomputes damaged ones in memory
    without deleting them, and keeps new embeddings in memory.

    `precision` (fp32 | bf16 | fp16) is the encoder's autocast; entries of a precision other than
    fp32 have keys of their own. `dtype` is how embeddings are stored (None: float16 on CUDA,
    float32 elsewhere); what `get` returns is always float32, rounded through the stored dtype,
    so a fresh and a cached embedding are the same numbers.
    """

    def __init__(self, root: Optional[Union[str, Path]] = None, memory_items: int = 4, read_only: bool = False,
                 precision: str = "fp32", dtype: Optional[torch.dtype] = None):
        self.root = Path(root) if root is not None else None
        self.memory_items = memory_items
        self.read_only = read_only
        self.precision = check_precision(precision)
        self.dtype = dtype
        self._memory: Dict[str, Embedding] = {}
        self._fingerprints: Dict[int, str] = {}
        self.encoder_calls = 0

    @classmethod
    def checked(cls, root: Union[str, Path], memory_items: int = 4, precision: str = "fp32",
                dtype: Optional[torch.dtype] = None) -> "EmbeddingCache":
        """A cache on `root`, checked first: CacheError when `root` cannot be a folder; read-only
        with a CacheWarning when no file can be created there."""
        existing, problem = nearest_folder(Path(root))
        if problem:
            raise CacheError(problem)
        cache = cls(root, memory_items, precision=precision, dtype=dtype)
        problem = creation_problem(existing)
        if problem:
            cache.stop_writing(problem)
        return cache

    def stop_writing(self, why: str) -> None:
        self.read_only = True
        warnings.warn(f"embedding cache {self.root}: {why}; its entries are read, new embeddings are kept "
                      "in memory only", CacheWarning, stacklevel=3)

    def model_key(self, sam: nn.Module) -> str:
        key = self._fingerprints.get(id(sam))
        if key is None:
            key = self._fingerprints[id(sam)] = encoder_fingerprint(sam)
        return key

    def key(self, sam: nn.Module, image: np.ndarray) -> str:
        backend = backend_for(sam)
        digest = hashlib.sha256()
        if backend.family != "sam1":  # SAM 1 keys stay what they were
            digest.update(backend.family.encode())
        if self.precision != "fp32":  # fp32 keys stay what they were
            digest.update(f"precision={self.precision}".encode())
        digest.update(self.model_key(sam).encode())
        digest.update(f"{backend.image_size(sam)}:{image.shape}:{image.dtype}".encode())
        digest.update(np.ascontiguousarray(image).tobytes())
        return digest.hexdigest()[:32]

    def path(self, key: str) -> Path:
        assert self.root is not None
        return self.root / key[:2] / f"{key}.pt"

    def get(self, sam: nn.Module, image: np.ndarray) -> Embedding:
        key = self.key(sam, image)
        hit = self._memory.get(key)
        if hit is None and self.root is not None:
            hit = self._read(key, sam, tuple(image.shape[:2]))
        if hit is None:
            device = backend_for(sam).device(sam)
            with torch.no_grad(), autocast(device, self.precision):
                hit = encode_image(sam, image)
            stored = as_dtype(hit, self.dtype or default_cache_dtype(device))
            hit = as_dtype(stored, torch.float32)
            self.encoder_calls += 1
            if self.root is not None and not self.read_only:
                self._write(key, stored)
        self._remember(key, hit)
        return hit

    def load(self, key: str, sam: nn.Module, image_size: Tuple[int, int]) -> Embedding:
        """The on-disk entry `key` (of an image of `image_size` (H, W)), as `get` returns it;
        CacheError when it is missing or damaged (training streams its embeddings this way)."""
        hit = self._read(key, sam, tuple(image_size)) if self.root is not None else None
        if hit is None:
            raise CacheError(f"embedding {key} is missing from {self.root} or damaged: rerun the command")
        return hit

    def _write(self, key: str, hit: Embedding) -> None:
        features = hit.features.detach().cpu()
        extras = {k: [t.detach().cpu() for t in v] for k, v in hit.extras.items()}
        entry = {"format": CACHE_FORMAT, "key": key, "features": features, **({"extras": extras} if extras else {}),
                 "crc32": tensor_checksum(features, extras), "input_size": list(hit.input_size),
                 "original_size": list(hit.original_size)}
        try:
            atomic_torch_save(entry, self.path(key))
        except OSError as e:
            self.stop_writing(f"cannot write {e.filename or self.path(key)} ({e.strerror or e})")

    def _read(self, key: str, sam: nn.Module, image_size: Tuple[int, int]) -> Optional[Embedding]:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
            features, extras = obj["features"], obj.get("extras", {})
            ok = (
                obj.get("format") == CACHE_FORMAT
                and obj.get("key") == key
                and tuple(obj.get("original_size", ())) == image_size
                and features.ndim == 4
                and features.shape[1] == backend_for(sam).decoder_width(sam)
                and obj.get("crc32") == tensor_checksum(features, extras)
            )
        except Exception:  # any unreadable entry (truncated, garbage) is simply recomputed
            ok = False
        if not ok:
            if not self.read_only:
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    pass  # a folder that lets us read but not delete: recomputed in memory
            return None
        device = backend_for(sam).device(sam)
        hit = Embedding(features, obj["input_size"], obj["original_size"], extras)
        return as_dtype(hit, torch.float32).to(device)

    def _remember(self, key: str, value: Embedding) -> None:
        self._memory.pop(key, None)
        self._memory[key] = value
        while len(self._memory) > self.memory_items:
            self._memory.pop(next(iter(self._memory)))
