#!/usr/bin/env python
"""Write a stablesam SAM file (the embedded model's format) from a SAM file plus tuned weights.

    python scripts/export_sam_file.py --base src/stablesam/weights/tiny_sam.pt \\
        --decoder runs/interactive/decoder.pt --out runs/interactive/tiny_sam.pt

The result has the base's architecture, the base's weights with the decoder file's mask decoder
(and prompt encoder, when the file holds one) in place, float16 like the embedded base, and the
base's meta with a `finetune` entry recording the decoder file's own meta.
"""

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing

from stablesam.models.files import load_decoder, load_sam_file, save_sam_file
from stablesam.backends.official import read_weights


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, required=True, help="stablesam SAM file the weights were tuned from")
    p.add_argument("--decoder", type=Path, required=True, help="decoder.pt written by stablesam train")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    args = p.parse_args(argv)
    base = read_weights(args.base, "cpu")
    sam = load_sam_file(args.base)
    load_decoder(sam, args.decoder)
    tuned = read_weights(args.decoder, "cpu")
    meta = {**base.get("meta", {}), "finetune": {"from": args.base.name, **tuned.get("meta", {})}}
    save_sam_file(sam, base["arch"], args.out, meta=meta, dtype=args.dtype)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
