"""Evaluation throughput for a ViT-B-sized SAM, measured side by side in one run:

1. prompts/s of decoder-only evaluation from cached embeddings vs re-encoding the image
   (per object: K prompts of one prompt type, batched), and vs the naive loop that calls
   `set_image` before every prompt;
2. prompts/s of the batched K-prompt decoder call vs K single calls.

    python benchmarks/eval_throughput.py [--objects 3] [--samples 20]
"""

import argparse
import tempfile
import time

import numpy as np
import torch
from segment_anything import sam_model_registry

from stablesam import StableSam, StableSamPredictor
from stablesam.models.cache import EmbeddingCache
from stablesam.backends.predictor import CPU_MAX_BATCH
from stablesam.prompts.generation import generate, object_rng


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20, help="K prompts per object")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = StableSam(sam_model_registry["vit_b"]()).eval()
    model.plugins_enabled = False
    pred = StableSamPredictor(model)
    rng = np.random.default_rng(0)
    images, masks = [], []
    for _ in range(args.objects):
        images.append(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
        m = np.zeros((480, 640), bool)
        m[100:300, 150:400] = True
        masks.append(m)
    prompts = [generate("noisy-box@0.4", m, args.samples, object_rng(0, i)) for i, m in enumerate(masks)]
    k = args.samples
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(tmp, memory_items=0)
        for img in images:  # fill the disk cache (not timed)
            cache.get(model.sam, img)

        t = time.perf_counter()
        for img, p in zip(images, prompts):
            pred.set_embedding(cache.get(model.sam, img))
            pred.predict_batch(boxes=p.boxes)
        cached = (time.perf_counter() - t) / (len(images) * k)

        t = time.perf_counter()
        for img, p in zip(images, prompts):
            pred.set_image(img)
            pred.predict_batch(boxes=p.boxes)
        encoded = (time.perf_counter() - t) / (len(images) * k)

    t = time.perf_counter()
    pred.set_image(images[0])
    pred.predict(box=prompts[0].boxes[0], multimask_output=False)
    naive = time.perf_counter() - t

    pred.set_image(images[0])
    t = time.perf_counter()
    for box in prompts[0].boxes:
        pred.predict(box=box, multimask_output=False)
    single = (time.perf_counter() - t) / k
    t = time.perf_counter()
    pred.predict_batch(boxes=prompts[0].boxes)
    batched = (time.perf_counter() - t) / k
    t = time.perf_counter()
    pred.predict_batch(boxes=prompts[0].boxes, max_batch=k)
    one_pass = (time.perf_counter() - t) / k

    print(f"ViT-B SAM (random init), 640x480 images, K = {k} noisy boxes per object, "
          f"{args.objects} objects, {torch.get_num_threads()} threads")
    print(f"  cached embeddings, batched decoder : {1 / cached:7.2f} prompts/s")
    print(f"  re-encode per object, batched      : {1 / encoded:7.2f} prompts/s  -> cache speed-up {encoded / cached:5.1f}x")
    print(f"  re-encode per prompt (naive loop)  : {1 / naive:7.2f} prompts/s  -> cache speed-up {naive / cached:5.1f}x")
    print(f"  batched K-prompt call (CPU passes of {CPU_MAX_BATCH}): {1 / batched:7.2f} prompts/s")
    print(f"  batched K-prompt call (one pass)   : {1 / one_pass:7.2f} prompts/s")
    print(f"  K single calls                     : {1 / single:7.2f} prompts/s  -> batching speed-up {single / batched:5.2f}x")


if __name__ == "__main__":
    main()
