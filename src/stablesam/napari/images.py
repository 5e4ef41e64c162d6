"""What SAM sees of a napari image layer: the plane on screen as (H, W, 3) uint8 RGB.

The rules are `stablesam.load_image`'s, so the plugin and `stablesam segment` give the same mask
for the same pixels:

- uint8 grey (H, W) is repeated to RGB; uint8 RGB (H, W, 3) is used as is; RGBA (H, W, 4) is
  composited on white, as a page shows a transparent image.
- Any other single-channel data (uint16 microscopy, int32, float, bool) is scaled linearly from
  the plane's own finite minimum..maximum to 0..255 (a 12-bit camera in a 16-bit file uses its
  full contrast); a constant plane becomes black.
- RGB(A) with 16 bits per channel keeps the high byte (what Pillow does with 48-bit RGB files);
  float RGB(A) is napari's 0..1 convention, scaled by 255 and clipped.
- A stack (more than two non-RGB axes) gives the plane of the current slice: the indices of the
  leading axes at the viewer's current position (`slice_index`).

Anything else (complex values, no pixels, an image under 2 x 2 px or over `MAX_PIXELS`, a
multiscale pyramid, a slice that is not the (y, x) plane) is an `InputError` with a one-line
message, which the widget shows as a napari notification.
"""

from typing import Any, Sequence, Tuple

import numpy as np
from PIL import Image

from ..data.images import MAX_PIXELS, MIN_SIDE, InputError, check_pixels, scale_to_uint8, to_rgb8


def spatial_shape(data_shape: Sequence[int], rgb: bool) -> Tuple[int, ...]:
    """The shape of a layer's pixel grid: its data shape without the colour axis."""
    return tuple(int(v) for v in (data_shape[:-1] if rgb else data_shape))


def plane_to_rgb(plane: np.ndarray, rgb: bool) -> np.ndarray:
    """One 2-D plane of a layer ((H, W) or, with `rgb`, (H, W, 3|4)) -> (H, W, 3) uint8 RGB."""
    plane = np.asarray(plane)
    if np.iscomplexobj(plane) or not (np.issubdtype(plane.dtype, np.number) or plane.dtype == bool):
        raise InputError(f"the image's pixels are {plane.dtype}; SAM takes real numbers (grey or RGB)")
    if plane.ndim != (3 if rgb else 2) or (rgb and plane.shape[-1] not in (3, 4)):
        raise InputError(f"a plane of shape {plane.shape} is neither grey (H, W) nor RGB(A) (H, W, 3|4)")
    height, width = plane.shape[:2]
    check_pixels(width, height, MAX_PIXELS, MIN_SIDE)
    if plane.dtype == bool:
        plane = plane.astype(np.uint8) * 255
    if not rgb:
        grey = plane if plane.dtype == np.uint8 else scale_to_uint8(plane)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if plane.dtype != np.uint8:
        if np.issubdtype(plane.dtype, np.floating):
            plane = np.rint(np.nan_to_num(plane, nan=0.0).clip(0, 1) * 255).astype(np.uint8)
        elif plane.dtype in (np.uint16, np.int16):
            plane = (plane.astype(np.int64).clip(0, 65535) >> 8).astype(np.uint8)
        else:
            plane = plane.clip(0, 255).astype(np.uint8)
    if plane.shape[-1] == 4:
        return to_rgb8(Image.fromarray(np.ascontiguousarray(plane), "RGBA"))
    return np.ascontiguousarray(plane)


def slice_index(layer: Any, viewer: Any) -> Tuple[int, ...]:
    """Indices of the layer's leading (non-displayed) axes at the viewer's current position;
    () for a 2-D image. A 3-D view, or a view whose displayed axes are not the layer's last two
    (y, x), is an InputError."""
    shape = spatial_shape(layer.data.shape if not getattr(layer, "multiscale", False) else layer.data[0].shape,
                          layer.rgb)
    if len(shape) == 2:
        return ()
    if viewer.dims.ndisplay != 2:
        raise InputError("Stable-SAM segments a 2-D plane: switch the viewer to 2-D (the slice is then segmented)")
    displayed = tuple(viewer.dims.displayed)
    if displayed != (viewer.dims.ndim - 2, viewer.dims.ndim - 1):
        raise InputError("Stable-SAM segments (y, x) planes: show the image's last two axes (undo the transpose)")
    position = np.asarray(layer.world_to_data(viewer.dims.point), float)
    index = []
    for value, size in zip(position[: len(shape) - 2], shape[:-2]):
        i = int(np.floor(value + 0.5))
        if not 0 <= i < size:
            raise InputError(f"the current slice {i} is outside the image's {size} planes")
        index.append(i)
    return tuple(index)


def layer_plane(layer: Any, index: Tuple[int, ...]) -> np.ndarray:
    """The (H, W) or (H, W, 3|4) plane of an image layer at `index` (from `slice_index`)."""
    if getattr(layer, "multiscale", False):
        raise InputError("multiscale (pyramid) images are not supported: add the full-resolution level as an image")
    return np.asarray(layer.data[index] if index else layer.data)
