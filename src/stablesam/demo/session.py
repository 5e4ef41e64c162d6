"""Uploaded images of the demo: decoding with limits, and a bounded LRU of their embeddings."""

import hashlib
import io
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..cache import Embedding
from ..segment import InputError

MIN_SIDE = 2  # prompts need an image of at least 2 x 2 px (prompts.fix_boxes)


class LimitError(InputError):
    """An upload over the byte or pixel limit (HTTP 413)."""


def image_id(data: bytes) -> str:
    """The id of an upload: sha256 of its bytes (32 hex digits)."""
    return hashlib.sha256(data).hexdigest()[:32]


def mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def decode_upload(data: bytes, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Uploaded file bytes -> (H, W, 3) uint8 RGB, EXIF orientation applied (as browsers show it).

    The pixel limit is checked on the header, before any pixel is decoded."""
    if len(data) > max_bytes:
        raise LimitError(f"the file is {mb(len(data))}; the limit is {mb(max_bytes)} (stablesam demo --max-bytes)")
    if not data:
        raise InputError("the file is empty")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise LimitError(f"the image is {w}x{h} = {w * h / 1e6:.1f} MP; the limit is "
                                 f"{max_pixels / 1e6:.1f} MP (stablesam demo --max-pixels)")
            im.load()
            im = ImageOps.exif_transpose(im)
            rgb = np.array(im.convert("RGB"))
    except InputError:
        raise
    except Image.DecompressionBombError:
        raise LimitError(f"the image has too many pixels; the limit is {max_pixels / 1e6:.1f} MP") from None
    except UnidentifiedImageError:
        raise InputError("not an image (no image format recognised in the file)") from None
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise InputError(f"corrupt or truncated image ({type(e).__name__}: {str(e)[:80]})") from None
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise InputError(f"the image is {rgb.shape[1]}x{rgb.shape[0]} px; it needs at least {MIN_SIDE} px per side")
    return rgb


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
