"""Frame geometry of the SAM families: how original-image prompts and masks map into the frame
the model sees. SAM 1 (and HQ-SAM, transformers' SamModel) resizes the long side to S and pads
to S x S (`PaddedFrame`); SAM 2 (and transformers' Sam2Model) resizes to S x S (`SquareFrame`)."""

from typing import Optional, Tuple

import numpy as np
import torch
from segment_anything.utils.transforms import ResizeLongestSide
from torch.nn import functional as F

Transform = object  # apply_coords(c, (H, W)), apply_boxes(b, (H, W)): ResizeLongestSide's interface


def low_res_target(mask: np.ndarray, img_size: int, low: Tuple[int, int]) -> torch.Tensor:
    """(H, W) mask -> (1, 1, *low) soft mask in SAM's padded input frame, area-downsampled."""
    h, w = mask.shape
    nh, nw = ResizeLongestSide.get_preprocess_shape(h, w, img_size)
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    t = F.interpolate(t, (nh, nw), mode="bilinear", align_corners=False)
    t = F.pad(t, (0, img_size - nw, 0, img_size - nh))
    return F.interpolate(t, low, mode="area")


class SquareResize:
    """SAM2Transforms' prompt mapping as SAM 1's ResizeLongestSide interface: original-image XY
    -> the (S, S) square the image is resized to."""

    def __init__(self, size: int):
        self.size = size

    def apply_coords(self, coords: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:
        h, w = original_size
        return np.asarray(coords, float) * np.array([self.size / w, self.size / h])

    def apply_boxes(self, boxes: np.ndarray, original_size: Tuple[int, int]) -> np.ndarray:
        return self.apply_coords(np.asarray(boxes, float).reshape(-1, 2, 2), original_size).reshape(-1, 4)


def square_low_res_target(mask: np.ndarray, img_size: int, low: Tuple[int, int]) -> torch.Tensor:
    """(H, W) mask -> (1, 1, *low) soft mask in SAM 2's square input frame, area-downsampled."""
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    t = F.interpolate(t, (img_size, img_size), mode="bilinear", align_corners=False)
    return F.interpolate(t, low, mode="area")


class PaddedFrame:
    """SAM 1's frame: the long side resized to `size`, then padded to (size, size)."""

    def __init__(self, size: int):
        self.size = size

    def transform(self) -> ResizeLongestSide:
        return ResizeLongestSide(self.size)

    def low_res_target(self, mask: np.ndarray, low: Tuple[int, int]) -> torch.Tensor:
        return low_res_target(mask, self.size, low)


class SquareFrame(PaddedFrame):
    """SAM 2's frame: the image resized to (size, size), no padding."""

    def transform(self) -> SquareResize:
        return SquareResize(self.size)

    def low_res_target(self, mask: np.ndarray, low: Tuple[int, int]) -> torch.Tensor:
        return square_low_res_target(mask, self.size, low)


def prompts_to_frame(
    transform: Transform, original_size: Tuple[int, int], device: torch.device,
    boxes: Optional[np.ndarray] = None, point_coords: Optional[np.ndarray] = None,
    point_labels: Optional[np.ndarray] = None,
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Original-image prompts -> input-frame tensors on `device`: points (B, k, 2) float, labels
    (B, k) int, boxes (B, 4) float (None where the prompt has none)."""
    points_t = labels_t = boxes_t = None
    if point_coords is not None:
        coords = transform.apply_coords(np.asarray(point_coords, float), original_size)
        points_t = torch.as_tensor(coords, dtype=torch.float, device=device)
        labels_t = torch.as_tensor(np.asarray(point_labels), dtype=torch.int, device=device)
    if boxes is not None:
        b = transform.apply_boxes(np.asarray(boxes, float), original_size)
        boxes_t = torch.as_tensor(b, dtype=torch.float, device=device)
    return points_t, labels_t, boxes_t
