"""One prepared command for the day a GPU is available: random-weight SAM 1 ViT-B, SAM 2.1
(Hiera-T, with the [sam2] extra) and the embedded tiny SAM, each with Stable-SAM's plugins, on
CUDA. For each, in fp32 and bf16 (or --precision): the encoder's and the decoder's time per
image (20 box prompts per image, the evaluation's batch), the plugins' decoder overhead
(plugins on / off, side by side), one training step (8 objects, fp32 master weights), and the
peak GPU memory. Under 3 minutes on any CUDA GPU; on a machine without one it says so in one
line and exits 1.

    python benchmarks/gpu_smoke.py [--precision fp32,bf16] [--repeats 10]
"""

import argparse
import sys
import time
from typing import Callable, Dict, List, Optional

import numpy as np
import torch

PROMPTS = 20  # prompts per image (the evaluation's K)
BATCH = 8  # objects per training step (stablesam train's default)


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of fn() (after one warm-up call), the GPU synchronised around each."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def builders() -> Dict[str, Callable[[], Optional[torch.nn.Module]]]:
    def vit_b():
        from segment_anything import sam_model_registry

        return sam_model_registry["vit_b"]()

    def sam21():
        from stablesam.backends import MissingExtra, get_backend

        try:
            return get_backend("sam2").build("sam2.1_hiera_t")
        except MissingExtra:
            return None

    def embedded():
        from stablesam.models.embedded import embedded_available, load_embedded_sam

        return load_embedded_sam("cpu")[0] if embedded_available() else None

    return {"SAM 1 ViT-B": vit_b, "SAM 2.1 Hiera-T": sam21, "embedded tiny SAM": embedded}


def measure(name: str, sam: torch.nn.Module, precision: str, repeats: int, device: str = "cuda") -> Dict:
    from stablesam import StableSam
    from stablesam.modeling.geometry import prompts_to_frame
    from stablesam.precision import autocast
    from stablesam.training.losses import bce_dice_loss

    device = torch.device(device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = StableSam(sam).to(device)
    with torch.no_grad():  # trained-looking plugins: the same cost as identity ones, but not a no-op
        for p in model.plugin_parameters():
            p.add_(torch.randn_like(p) * 0.02)
    backend = model.backend
    image = np.random.default_rng(0).integers(0, 255, (768, 1024, 3), dtype=np.uint8)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with torch.no_grad(), autocast(device, precision):
        encode_s = timed(lambda: backend.encode(sam, image), repeats)
        emb = backend.encode(sam, image)
    features = emb.features.float()
    extras = {k: [t.float() for t in v] for k, v in emb.extras.items()}
    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 500, (PROMPTS, 2))
    boxes_np = np.concatenate([xy, xy + rng.uniform(50, 400, (PROMPTS, 2))], axis=1)
    boxes = prompts_to_frame(backend.prompt_transform(sam), image.shape[:2], device, boxes_np)[2]

    def decode():
        return model.decode(features, None, boxes, multimask_output=False, extras=extras)

    decode_s = {}
    with torch.no_grad(), autocast(device, precision):
        for on in (False, True, False, True):  # interleaved: side by side, not one after the other
            model.plugins_enabled = on
            decode_s.setdefault(on, []).append(timed(decode, repeats))
    off, on = min(decode_s[False]), min(decode_s[True])
    model.plugins_enabled = True
    params = list(model.plugin_parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=1e-4)
    target = (torch.rand(BATCH, 1, *backend.mask_input_size(sam), device=device) > 0.5).float()

    def step():
        with autocast(device, precision):
            logits, _ = model.decode(features, None, boxes[:BATCH], multimask_output=False, extras=extras)
            loss = bce_dice_loss(logits, target, None, 1.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step_s = timed(step, repeats)
    return {"model": name, "precision": precision, "encode_ms": 1e3 * encode_s, "decode_ms": 1e3 * on,
            "plugin_overhead": on / off, "step_ms": 1e3 * step_s,
            "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")}


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="fp32,bf16", help="comma-separated: fp32, bf16, fp16")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device here; this benchmark measures GPUs only (nothing was run)", file=sys.stderr)
        return 1
    precisions = [p.strip() for p in args.precision.split(",") if p.strip()]
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}; {PROMPTS} prompts per image, "
          f"training step of {BATCH} objects; medians of {args.repeats}")
    print("| model | precision | encoder ms/image | decoder ms/image | plugin overhead (on/off) | train step ms | peak MiB |")
    print("|---|---|---|---|---|---|---|")
    t0 = time.time()
    for name, build in builders().items():
        sam = build()
        if sam is None:
            print(f"| {name} | – | skipped: its extra or weights are not installed | | | | |")
            continue
        for precision in precisions:
            r = measure(name, sam, precision, args.repeats)
            print(f"| {name} | {precision} | {r['encode_ms']:.1f} | {r['decode_ms']:.2f} | {r['plugin_overhead']:.2f}x "
                  f"| {r['step_ms']:.2f} | {r['peak_mib']:.0f} |", flush=True)
        del sam
        torch.cuda.empty_cache()
    print(f"total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
