#!/usr/bin/env python
"""Train the embedded tiny SAM from scratch on real images, the way SAM itself was trained.

Model: `stablesam.modeling.small_sam` (compact conv image encoder + SAM's standard prompt
encoder and 256-d two-way mask decoder); the default architecture is `TINY_SAM_ARCH`, others
come with --arch (e.g. the v2 base: see scripts/build_embedded.sh).

Recipe (SAM paper, section 3 and appendix A, scaled down):
- prompts per object: the ground-truth box with SAM's jitter (N(0, 10 % of the side), at most
  20 px per coordinate), one foreground click (multimask output, loss of the best of the three
  masks: "we only backpropagate the minimum loss over masks"), or 2..5 foreground clicks
  (single output, as SAM does for several prompts);
- loss: BCE + Dice on the mask logits (at 256 x 256, against the area-downsampled mask) plus the
  MSE between the IoU head and the IoU of each predicted mask; ignore pixels (a trimap's border,
  DAVIS's void) count in none of them;
- augmentation: horizontal flip, random zoom-in crop, colour jitter, and copy-paste composites
  (an object cut out by its mask and pasted onto another training image; the pasted object is
  the target, and the objects it covers become occluded targets);
- AdamW, linear warmup + cosine decay over --total-steps; optional EMA weights (--ema), which
  are then what is exported.

The code lives in scripts/tiny_sam/ (split, augment, loss, schedule, validate, loop). Every
step's data and prompts are a pure function of (--seed, step), so a run resumed from its
checkpoint (--resume) sees exactly what an uninterrupted run sees. `--init FILE` continues from
an exported SAM file (its meta records the step) with a fresh optimizer and a short re-warmup.

    python scripts/train_tiny_sam.py --write-split          # (re)write splits/train.txt, val.txt
    python scripts/train_tiny_sam.py --out runs/tiny_sam --minutes 118 --total-steps 3600 \\
        --resume --export runs/tiny_sam/tiny_sam.pt --eval-val 100
    python scripts/train_tiny_sam.py --eval-only --init runs/tiny_sam/tiny_sam.pt --eval-val 200

On a shared 2-core machine keep --threads 1: with another busy process, 2 OpenMP threads spend
most of their time waiting for each other (measured 10-20x slower steps).
"""

import argparse
import json
import sys
from pathlib import Path

import cv2
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing
sys.path.insert(0, str(REPO / "scripts"))

from tiny_sam.augment import AugConfig  # noqa: E402
from tiny_sam.loop import train  # noqa: E402
from tiny_sam.split import write_split  # noqa: E402

DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
DEFAULT_SPLIT_DIR = REPO / "splits"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT, help="folder holding the datasets of the split")
    p.add_argument("--split-dir", type=Path, default=DEFAULT_SPLIT_DIR, help="where train.txt and val.txt live")
    p.add_argument("--write-split", action="store_true", help="(re)write the split files from --data-root and exit")
    p.add_argument("--out", type=Path, help="run folder: checkpoint.pt, log.csv, val.csv, config.json")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget of this invocation (stops cleanly, checkpoints)")
    p.add_argument("--total-steps", type=int, default=3600, help="schedule length (warmup + cosine decay)")
    p.add_argument("--steps-this-run", type=int, default=None, help="stop this invocation after this many steps")
    p.add_argument("--batch-size", type=int, default=8, help="images per step")
    p.add_argument("--prompts-per-image", type=int, default=2, help="prompts (decoder passes) per image per step")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-steps", type=int, default=200)
    p.add_argument("--ema", type=float, default=0.0, metavar="DECAY", help="keep EMA weights with this decay "
                   "(e.g. 0.999) and export them; 0 = off")
    p.add_argument("--paste-prob", type=float, default=AugConfig.paste_prob, help="probability of a copy-paste composite")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if present (exact)")
    p.add_argument("--init", type=Path, help="start from an exported SAM file (fresh optimizer, step from its meta) "
                   "when there is no checkpoint to resume")
    p.add_argument("--rewarmup-steps", type=int, default=100, help="LR re-warmup after --init")
    p.add_argument("--threads", type=int, default=1, help="torch threads (keep 1 on a shared 2-core machine)")
    p.add_argument("--no-bf16", action="store_true", help="train in float32 (default: bfloat16 autocast where the CPU has it)")
    p.add_argument("--export", type=Path, help="write the weights here as a stablesam SAM file (at checkpoints and at the end)")
    p.add_argument("--export-dtype", choices=("float32", "float16"), default="float32",
                   help="storage type of the exported weights (float16: half the file size)")
    p.add_argument("--checkpoint-minutes", type=float, default=5.0)
    p.add_argument("--eval-val", type=int, default=0, metavar="N", help="mIoU on N validation objects at the end "
                   "(and every --eval-minutes)")
    p.add_argument("--eval-minutes", type=float, default=30.0)
    p.add_argument("--eval-only", action="store_true", help="only evaluate --init (or OUT/checkpoint.pt) on --eval-val objects")
    p.add_argument("--arch", type=json.loads, default=None, help="JSON overrides of TINY_SAM_ARCH")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(1)
    if args.write_split:
        train_list, val_list = write_split(args.data_root, args.split_dir)
        print(f"wrote {args.split_dir}/train.txt ({len(train_list)}) and val.txt ({len(val_list)})")
        return 0
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
