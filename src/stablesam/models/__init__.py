"""Models: SPECs and the segmenters they build, stablesam's own weight files (plugin, decoder,
SAM file), the embedded model, and the image-embedding cache."""
