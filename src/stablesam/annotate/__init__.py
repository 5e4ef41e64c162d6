"""Boxes to masks for a whole dataset (`stablesam annotate`): read boxes (`inputs`), segment each
image's boxes with one model per worker (`worker`), on this process, N processes or Ray
(`engines`), journal finished images for resuming (`journal`) and write COCO instances
(`runner`)."""

from .runner import AnnotateOptions, Summary, run_annotate

__all__ = ["AnnotateOptions", "Summary", "run_annotate"]
