"""COCO instance annotations as a dataset of objects (one per annotation), via pycocotools."""

import contextlib
import io
from pathlib import Path
from typing import Optional

from .datasets import DataError, ObjectRef, PathLike, Sample, _Dataset, read_image


class CocoDataset(_Dataset):
    """One object per COCO annotation (polygon or RLE), named "<image stem>#<annotation id>".

    Crowd annotations are skipped unless include_crowd. min_area: keep annotations whose
    `area` field (or, if absent, decoded pixel area) is >= min_area.
    """

    def __init__(
        self,
        annotation_json: PathLike,
        image_dir: PathLike,
        min_area: float = 0.0,
        strict: bool = False,
        include_crowd: bool = False,
    ) -> None:
        from pycocotools.coco import COCO

        self.annotation_json, self.image_dir = Path(annotation_json), Path(image_dir)
        self.strict = strict
        self.name = self.annotation_json.stem
        if not self.image_dir.is_dir():
            raise DataError(f"COCO image folder {self.image_dir} does not exist")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # COCO() prints progress
                self.coco = COCO(str(self.annotation_json))
        except Exception as e:
            raise DataError(f"cannot read COCO annotations {self.annotation_json}: {e}") from e
        self.objects = []
        for ann in self.coco.dataset.get("annotations", []):
            ref = self._scan(ann, min_area, include_crowd)
            if ref is not None:
                self.objects.append(ref)
        if not self.objects:
            raise DataError(f"no usable annotations in {self.annotation_json}")

    def _scan(self, ann: dict, min_area: float, include_crowd: bool) -> Optional[ObjectRef]:
        if ann.get("iscrowd", 0) and not include_crowd:
            return None
        try:
            img = self.coco.imgs.get(ann.get("image_id"))
            if img is None:
                raise DataError(f"annotation {ann.get('id')} refers to unknown image id {ann.get('image_id')}")
            path = self.image_dir / img["file_name"]
            name = f"{Path(img['file_name']).stem}#{ann['id']}"
            if "segmentation" not in ann:
                raise DataError(f"annotation {name} in {self.annotation_json} has no segmentation")
            area = ann.get("area")
            if area is None:
                from pycocotools import mask as mask_utils

                area = float(mask_utils.area(self.coco.annToRLE(ann)))
            if area < min_area:
                return None
            if not path.is_file():
                raise DataError(f"image {path} of annotation {name} not found")
            return ObjectRef(name, path, None, int(ann["id"]))
        except DataError as e:
            self._bad(str(e))
        except Exception as e:  # malformed entry (missing key, bad polygon, ...)
            self._bad(f"bad annotation {ann.get('id')} in {self.annotation_json}: {e!r}")
        return None

    def _read(self, ref: ObjectRef) -> Sample:
        ann = self.coco.anns[ref.instance]
        img = self.coco.imgs[ann["image_id"]]
        image = read_image(ref.image_path)
        if image.shape[:2] != (img["height"], img["width"]):
            raise DataError(
                f"image {ref.image_path} has size {image.shape[1]}x{image.shape[0]} but "
                f"{self.annotation_json} says {img['width']}x{img['height']} (W x H)"
            )
        try:
            mask = self.coco.annToMask(ann).astype(bool)
        except Exception as e:
            raise DataError(f"cannot decode annotation {ref.name} in {self.annotation_json}: {e!r}") from e
        if not mask.any():
            raise DataError(f"annotation {ref.name} in {self.annotation_json} decodes to an empty mask")
        return Sample(self.name, ref.name, ref.image_path, image, mask, None)
