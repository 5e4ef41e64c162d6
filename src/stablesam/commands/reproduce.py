"""`stablesam reproduce`: the paper's experiment (train the plugin on HQSeg-44K, evaluate SAM, DT
and Stable-SAM on its four test sets, report beside the paper's table), resumable."""

import argparse
import math
from pathlib import Path

from .common import UsageError, input_errors_as_usage


def register(sub: argparse._SubParsersAction) -> None:
    rp = sub.add_parser("reproduce", help="the paper's experiment on your SAM checkpoint: train, evaluate, report",
                        description="Check HQSeg-44K under --hqseg, estimate disk and time, embed every image, "
                                    "train the plugin (paper's recipe; --with-dt: the DT baseline too), evaluate "
                                    "on DIS5K-VD, ThinObject5K-TE, COIFT and HR-SOD with the paper's prompts, "
                                    "and write OUT/report.md and OUT/plugin.pt. Rerun the same command to resume.",
                        epilog="Details: docs/reproduce.md")
    rp.add_argument("--checkpoint", required=True, metavar="PTH", help="SAM's official checkpoint (e.g. sam_vit_l_0b3195.pth)")
    rp.add_argument("--model-type", required=True, metavar="TYPE", help="its SPEC head: vit_l (the paper), vit_b, vit_h, ...")
    rp.add_argument("--hqseg", required=True, metavar="ROOT", help="HQSeg-44K's data/ folder (as downloaded from "
                    "huggingface.co/sam-hq-team/sam-hq-training)")
    rp.add_argument("--out", required=True, metavar="DIR", help="report, plugin, training runs, scores, the stage record")
    rp.add_argument("--with-dt", action="store_true", help="also train and evaluate the DT baseline (the whole decoder)")
    rp.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32",
                    help="autocast of the encoder, training and evaluation (default fp32; bf16 on recent GPUs)")
    rp.add_argument("--epochs", type=float, default=1.0, help="training epochs (default 1, the paper's)")
    rp.add_argument("--batch-size", type=int, default=8, help="objects per training step (default 8)")
    rp.add_argument("--lr", type=float, default=1e-3, help="the plugin's Adam learning rate (default 1e-3, HQ-SAM's recipe)")
    rp.add_argument("--samples", type=int, default=20, metavar="K", help="prompts per object and type (default 20, the paper's)")
    rp.add_argument("--limit", type=int, default=None, metavar="N", help="evaluate the first N objects of each test set")
    rp.add_argument("--seed", type=int, default=0)
    rp.add_argument("--cache", default=None, metavar="DIR", help="embedding cache (default OUT/cache)")
    rp.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    rp.add_argument("--yes", action="store_true", help="go on when the estimate exceeds --max-disk-gb or --max-hours")
    rp.add_argument("--max-disk-gb", type=float, default=50.0, help="ask for --yes past this cache size (default 50)")
    rp.add_argument("--max-hours", type=float, default=12.0, help="ask for --yes past this run time (default 12)")
    rp.add_argument("--probe-images", type=int, default=10, metavar="N", help="images timed for the estimate (default 10)")
    rp.set_defaults(func=input_errors_as_usage(run_reproduce))


def run_reproduce(args: argparse.Namespace) -> int:
    from ..data.datasets import DataError
    from ..reproduce.layout import LayoutError
    from ..reproduce.pipeline import ReproduceConfig, Reproduction, TrainingStopped
    from ..reproduce.record import ReproduceError

    numbers = (args.epochs, args.lr, args.max_disk_gb, args.max_hours)
    if not all(math.isfinite(v) and v > 0 for v in numbers):
        raise UsageError("--epochs, --lr, --max-disk-gb and --max-hours must be positive numbers")
    for flag, value in (("--batch-size", args.batch_size), ("--samples", args.samples),
                        ("--probe-images", args.probe_images), ("--limit", args.limit or 1)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    if not Path(args.checkpoint).is_file():
        raise UsageError(f"--checkpoint {args.checkpoint}: no such file")
    config = ReproduceConfig(
        checkpoint=Path(args.checkpoint), model_type=args.model_type, hqseg=Path(args.hqseg), out=Path(args.out),
        cache=Path(args.cache) if args.cache else None, precision=args.precision, device=args.device,
        with_dt=args.with_dt, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, samples=args.samples,
        limit=args.limit, seed=args.seed, yes=args.yes, max_disk_gb=args.max_disk_gb, max_hours=args.max_hours,
        probe_images=args.probe_images,
    )
    try:
        Reproduction(config).run()
    except (ReproduceError, LayoutError, DataError) as e:
        raise UsageError(str(e).splitlines()[0]) from None
    except TrainingStopped as e:  # `stablesam train` printed its one line
        return e.code
    return 0
