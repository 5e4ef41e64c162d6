"""The tiny-SAM trainer (scripts/train_tiny_sam.py), one job per module:

- `split`: the committed train/validation split of ../shared/data;
- `augment`: training images in RAM, augmentation, SAM-style prompts, the batch of a step;
- `loss`: the forward pass and SAM's loss on one batch;
- `schedule`: run configuration, learning-rate schedule, EMA weights;
- `validate`: the quick validation score used during training;
- `loop`: the resumable training loop (checkpoints, export).
"""
