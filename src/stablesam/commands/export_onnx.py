"""`stablesam export-onnx`: the checks before any work, the export, and `--verify`'s report."""

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data.images import InputError
from ..export.onnx_export import DEFAULT_OPSET, INPUT_NAMES, OPSET_RANGE, OUTPUT_NAMES, TOLERANCE, export_onnx, require
from ..fileio import OutputError, check_new_file, check_writable
from .common import config_option, input_errors_as_usage
from ..modeling import StableSam


def run_export_onnx(args) -> int:
    """`stablesam export-onnx` with its parsed arguments; bad input raises InputError (exit 2),
    a file that fails `--verify` returns 1."""
    from ..models.spec import SpecError, build_sam_for

    out = Path(args.out)
    if out.suffix.lower() != ".onnx":
        raise InputError(f"--out {out}: the file name must end in .onnx")
    from ..limits import name_problem

    if name_problem(out):  # before any look at the path: os.stat refuses such names too
        raise InputError(f"--out {str(out)[:80]}: {name_problem(out)}")
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name")
    check_writable(out, "--out")
    check_new_file(out, "--out", args.force)
    lo, hi = OPSET_RANGE
    if not lo <= args.opset <= hi:
        raise InputError(f"--opset {args.opset}: the exporter writes opsets {lo}..{hi}")
    if args.verify_prompts < 1:
        raise InputError(f"--verify-prompts must be >= 1, got {args.verify_prompts}")
    require("onnx")
    if args.verify or args.quantize:
        require("onnxruntime")
    try:
        spec, model = build_sam_for("export-onnx (segment_anything's SamOnnxModel contract)", args.model, "cpu",
                                    args.force_plugin, ("sam1",))
        model.eval()
    except SpecError as e:
        raise InputError(str(e)) from None
    if args.plugins == "on" and not model.plugins_enabled:
        raise InputError(f"{spec.text!r} has no plugin: --plugins on needs tiny-stable-sam or SPEC+plugin=PATH")
    if args.plugins is not None:
        model.plugins_enabled = args.plugins == "on"
    replaced = out.is_file()
    try:
        export_onnx(model, out, args.opset, quantize=args.quantize, multimask=args.multimask)
    except OSError as e:
        raise OutputError(f"cannot write {e.filename or out}: {e.strerror or e}") from None
    state = "on" if model.plugins_enabled else "off"
    print(f"{'replaced' if replaced else 'wrote'} {out} ({out.stat().st_size / 1e6:.1f} MB; {spec.text}, "
          f"plugins {state}, opset {args.opset}{', weights quantized to uint8' if args.quantize else ''})")
    print(f"inputs: {', '.join(INPUT_NAMES)}; outputs: {', '.join(OUTPUT_NAMES)} "
          f"({'4 masks' if args.multimask else '1 mask'} per prompt)")
    return verify_and_report(model, out, args) if args.verify else 0


def verify_and_report(model: StableSam, path: Path, args) -> int:
    """`--verify`: print max |Δ| and the time per prompt; 1 when a float export is off by > TOLERANCE."""
    from ..models.cache import encode_image
    from ..models.embedded import EXAMPLE_IMAGE
    from ..data.images import load_image
    from ..export.onnx_verify import PROMPT_KINDS, verify

    image = load_image(EXAMPLE_IMAGE)
    h, w = image.shape[:2]
    with torch.no_grad():
        embedding = encode_image(model.sam, image).features
    result = verify(model, path, args.verify_prompts, multimask=args.multimask, embedding=embedding,
                    sizes=((h, w), (w, h)))
    diffs = result["max_abs_diff"]
    print(f"verify: {result['prompts']} random prompts ({', '.join(PROMPT_KINDS)}; 1-5 clicks) on the "
          f"embedding of {EXAMPLE_IMAGE.name}, image sizes {w}x{h} and {h}x{w}")
    worst = max(diffs.values())
    verdict = "quantized: no tolerance" if args.quantize else ("ok" if worst < TOLERANCE else "MISMATCH")
    print("max |Δ| vs PyTorch: " + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
          + f" ({verdict}{'' if args.quantize else f', tolerance {TOLERANCE:g}'}); binary masks agree "
          f"with mean IoU {result['mask_iou']:.4f}")
    ms = result["ms_per_prompt"]
    print(f"time per prompt ({torch.get_num_threads()} thread(s), CPU): onnxruntime {ms['onnxruntime']:.1f} ms, "
          f"PyTorch {ms['pytorch']:.1f} ms")
    return 1 if verdict == "MISMATCH" else 0


@dataclass
class ExportConfig:
    """`stablesam export-onnx`'s settings with defaults."""

    opset: int = DEFAULT_OPSET
    verify_prompts: int = 20  # random prompts of --verify


def register(sub: argparse._SubParsersAction) -> None:
    from ..models.spec import DEFAULT_SPEC, SAM_ACCEPTED

    ox = sub.add_parser("export-onnx", help="ONNX file of the prompt path (SAM's SamOnnxModel contract + alpha)",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SAM_ACCEPTED)
    ox.add_argument("--model", default=DEFAULT_SPEC, metavar="SPEC", help=f"default {DEFAULT_SPEC}")
    ox.add_argument("--out", required=True, metavar="DECODER.onnx", help="the ONNX file to write")
    config_option(ox, "--opset", ExportConfig, "opset", f"ONNX opset, {OPSET_RANGE[0]}..{OPSET_RANGE[1]} (default {{default}})",
                  type=int, metavar="N")
    ox.add_argument("--quantize", action="store_true", help="onnxruntime dynamic quantization (uint8 weights)")
    ox.add_argument("--plugins", choices=["on", "off"], default=None,
                    help="Stable-SAM (on) or plain SAM (off) from the same weights (default: on when the SPEC has a plugin)")
    ox.add_argument("--multimask", action="store_true",
                    help="output all 4 masks per prompt (default: 1, SAM's single-mask rule)")
    ox.add_argument("--verify", action="store_true",
                    help="run the file in onnxruntime on random prompts: max |Δ| vs PyTorch and time per prompt")
    config_option(ox, "--verify-prompts", ExportConfig, "verify_prompts", "prompts for --verify (default {default})",
                  type=int, metavar="K")
    ox.add_argument("--force", action="store_true", help="replace --out if it exists (atomically)")
    ox.add_argument("--force-plugin", action="store_true", help="load plugin/decoder files trained for another base")
    ox.set_defaults(func=input_errors_as_usage(run_export_onnx))
