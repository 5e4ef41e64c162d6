"""Data and images: datasets of objects (image + one mask), the layouts and lists they come in,
COCO annotations, and the one image loader."""
