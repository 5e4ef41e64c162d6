"""Uploaded images of the demo: decoding with limits, and a bounded LRU of their embeddings."""

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Tuple

import cv2
import numpy as np

from ..models.cache import Embedding
from ..data.images import MAX_PIXELS, InputError, LimitError, load_image

__all__ = ["ImageStore", "LimitError", "StoredImage", "UploadLimits", "decode_upload", "image_id", "sizes", "to_jpeg"]


@dataclass(frozen=True)
class UploadLimits:
    """Limits on the images a server takes (the demo's uploads, Label Studio's fetched images)."""

    max_bytes: int = 20_000_000  # largest image file, in bytes
    max_pixels: int = MAX_PIXELS  # largest image, width x height
    max_images: int = 8  # image embeddings kept in memory, least recently used dropped first


def image_id(data: bytes) -> str:
    """The id of an upload: sha256 of its bytes (32 hex digits)."""
    return hashlib.sha256(data).hexdigest()[:32]


def size_text(n: int) -> str:
    """A byte count for people: 'N bytes', 'N.N kB' or 'N.N MB'."""
    if n < 1000:
        return f"{n} bytes"
    return f"{n / 1e3:.1f} kB" if n < 1_000_000 else f"{n / 1e6:.1f} MB"


def sizes(size: int, limit: int) -> Tuple[str, str]:
    """A size and its limit for one message; exact byte counts where rounding would make them equal."""
    a, b = size_text(size), size_text(limit)
    return (f"{size:,} bytes", f"{limit:,} bytes") if a == b else (a, b)


def decode_upload(data: bytes, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Uploaded file bytes -> (H, W, 3) uint8 RGB through the shared loader
    (`stablesam.data.images.load_image`: EXIF orientation applied, as browsers show it; the pixel
    limit checked on the header)."""
    if len(data) > max_bytes:
        size, limit = sizes(len(data), max_bytes)
        raise LimitError(f"the file is {size}; the limit is {limit} (stablesam demo --max-bytes)")
    return load_image(data, exif=True, max_pixels=max_pixels)


@dataclass
class StoredImage:
    """One uploaded image: its embedding, its size and the JPEG the page shows."""

    id: str
    name: str
    width: int
    height: int
    embedding: Embedding
    jpeg: bytes


def to_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """What the page draws: the decoded pixels the model saw (orientation and colour as used)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError("could not re-encode the image")
    return buf.tobytes()


class ImageStore:
    """The last `max_items` images by id (least recently used dropped first); thread-safe."""

    def __init__(self, max_items: int = 8):
        if max_items < 1:
            raise ValueError("the image store needs room for at least 1 image")
        self.max_items = max_items
        self._items: "OrderedDict[str, StoredImage]" = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Optional[StoredImage]:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, item: StoredImage) -> None:
        with self._lock:
            self._items[item.id] = item
            self._items.move_to_end(item.id)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
