"""The one image loader: every image the CLI, the demo, the datasets and the Python API read.

Whatever Pillow opens becomes an (H, W, 3) uint8 RGB array the model can use, or an
`InputError` whose one-line message names the problem (never a silently wrong image):

- 8-bit modes (1, L, P, RGB, CMYK, YCbCr, ...) are converted to RGB as Pillow does.
- Single-channel data with more than 8 bits (I;16, I;16B, I;16L, I;16N, 32-bit I, float F) is
  scaled linearly from the image's own minimum..maximum to 0..255 (a 12-bit scan in a 16-bit
  file uses its full contrast instead of showing nearly black); NaN and -inf pixels become the
  minimum, +inf the maximum; a constant image becomes black.
- 16 bits per colour channel (48-bit RGB, 64-bit RGBA): Pillow decodes these at 8 bits per
  channel (the high byte, i.e. scaled by the type's range), which is what we use.
- Transparency (LA, La, PA, RGBA, RGBa, P or L or RGB with a transparent colour) is composited
  on a white background (`BACKGROUND`), as a page shows a transparent image.
- EXIF orientation (`exif=True`, the default for user-facing entry points) turns a phone photo
  upright; datasets pass `exif=False`, since their masks are drawn on the stored pixels.
- `max_pixels` (width x height) is checked on the header, before any pixel is decoded; images
  over Pillow's own decompression-bomb limit are refused whatever `max_pixels` says.
- An animation or a multi-page file (GIF, APNG, WebP, TIFF with several frames) is refused: which
  frame was meant is not ours to guess. A camera's MPO JPEG (a photo and its previews) is the photo.
"""

import io
import os
import threading
import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 25_000_000  # default --max-pixels of `segment` and `demo`, and of `load_image`
MIN_SIDE = 2  # prompts need an image of at least 2 x 2 px (prompts.fix_boxes)
BACKGROUND = (255, 255, 255)  # what transparent pixels are composited on
HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
PILLOW_PIXEL_LIMIT = 2 * Image.MAX_IMAGE_PIXELS  # Pillow raises DecompressionBombError above it
ImageSource = Union[str, os.PathLike, bytes]
_WARNINGS_LOCK = threading.Lock()  # catch_warnings changes process-wide state (demo: many threads)


class InputError(ValueError):
    """Bad user input, reported in one line."""


class LimitError(InputError):
    """Input over a size limit (bytes or pixels; the demo answers HTTP 413)."""


def scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """High-bit-depth data -> uint8, linearly from its own finite min..max to 0..255."""
    a = values.astype(np.float32)
    finite = np.isfinite(a)
    if not finite.any():
        raise InputError("the image holds no finite pixel value")
    lo, hi = float(a[finite].min()), float(a[finite].max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    a = np.nan_to_num(a, nan=lo, posinf=hi, neginf=lo)
    return np.rint((a - lo) * (255.0 / (hi - lo))).clip(0, 255).astype(np.uint8)


def to_rgb8(im: Image.Image) -> np.ndarray:
    """A decoded Pillow image of any mode -> (H, W, 3) uint8 RGB (the rules in the module doc)."""
    if im.mode in HIGH_DEPTH_MODES:
        grey = scale_to_uint8(np.asarray(im))
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode in ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        return np.array(Image.alpha_composite(background, rgba).convert("RGB"))
    try:
        return np.array(im.convert("RGB"))
    except ValueError:  # e.g. LAB: Pillow has no conversion to RGB
        raise InputError(f"image mode {im.mode} cannot be converted to RGB") from None


def frame_count(im: Image.Image) -> int:
    """Frames of an animation or multi-page file; 1 for a still (and for an MPO camera JPEG,
    whose other frames are previews of the same photo)."""
    if im.format == "MPO" or not getattr(im, "is_animated", False):
        return 1
    return int(getattr(im, "n_frames", 2))


def check_pixels(width: int, height: int, max_pixels: Optional[int], min_side: int) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise LimitError(f"the image is {width}x{height} = {width * height / 1e6:.1f} MP; the limit is "
                         f"{max_pixels / 1e6:.1f} MP (--max-pixels)")
    if min(width, height) < min_side:
        raise InputError(f"the image is {width}x{height} px; it needs at least {min_side} px per side")


def load_image(source: ImageSource, exif: bool = True, max_pixels: Optional[int] = MAX_PIXELS,
               min_side: int = MIN_SIDE) -> np.ndarray:
    """An image file (path) or its bytes -> (H, W, 3) uint8 RGB, or InputError (LimitError for
    an image over `max_pixels`) whose one-line message names the problem (and the file's path).

    exif: apply the EXIF orientation (True for user-facing images; datasets use False).
    max_pixels: largest width x height (None: only Pillow's decompression-bomb limit).
    min_side: smallest width and height in pixels.
    """
    prefix = "" if isinstance(source, bytes) else f"{source}: "
    try:
        return decode(source, exif, max_pixels, min_side)
    except InputError as e:
        raise type(e)(prefix + str(e)) from None


def decode(source: ImageSource, exif: bool, max_pixels: Optional[int], min_side: int) -> np.ndarray:
    """`load_image` without the file name in its messages."""
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise InputError("not a file" if Path(source).exists() else "no such file")
    if (len(source) if isinstance(source, bytes) else Path(source).stat().st_size) == 0:
        raise InputError("the file is empty")
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():  # Pillow warns between its two limits; ours decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(stream)  # reads the header only
        with im:
            check_pixels(*im.size, max_pixels, min_side)
            frames = frame_count(im)
            if frames > 1:
                raise InputError(f"the file holds {frames} frames (an animated or multi-page {im.format}); only "
                                 "single images are read: save the frame you want as its own file")
            im.load()
            if exif:
                im = ImageOps.exif_transpose(im)
            return to_rgb8(im)
    except InputError:
        raise
    except Image.DecompressionBombError:
        limit = PILLOW_PIXEL_LIMIT if max_pixels is None else min(max_pixels, PILLOW_PIXEL_LIMIT)
        raise LimitError(f"the image has more than {PILLOW_PIXEL_LIMIT / 1e6:.0f} MP (Pillow's "
                         f"decompression-bomb limit); the limit is {limit / 1e6:.1f} MP (--max-pixels)") from None
    except UnidentifiedImageError:
        raise InputError("not an image (no image format recognised)") from None
    except MemoryError:
        raise LimitError("the image is too large to decode in the memory available") from None
    except Exception as e:  # Pillow raises many types for corrupt or truncated data
        reason = str(e).splitlines()[0][:80] if str(e) else ""
        raise InputError(f"corrupt or truncated image ({type(e).__name__}: {reason})") from None
