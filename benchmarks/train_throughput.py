"""Plugin training speed for a ViT-B-sized SAM, side by side in one run: optimizer steps/s on
cached image embeddings (what `stablesam train` does) vs the same steps re-encoding every
image, plus peak memory (RSS) of each phase.

    python benchmarks/train_throughput.py [--batch-size 2] [--steps 3]
"""

import argparse
import resource
import time

import numpy as np
import torch
from segment_anything import sam_model_registry

from stablesam import StableSam
from stablesam.models.cache import encode_image
from stablesam.training.record import TrainConfig
from stablesam.training.objects import TrainObject
from stablesam.training.loop import TrainStep, set_trainable, step_items
from stablesam.modeling.geometry import low_res_target


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = StableSam(sam_model_registry["vit_b"]()).eval()
    rng = np.random.default_rng(0)
    images, objects = [], []
    for i in range(args.batch_size * args.steps):
        image = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        mask = np.zeros((480, 640), bool)
        mask[80 + i * 5 : 300, 120 : 420 - i * 7] = True
        emb = encode_image(model.sam, image)
        images.append(image)
        objects.append(TrainObject(f"o{i}", emb.features, low_res_target(mask, 1024, (256, 256)),
                                   np.packbits(mask.ravel()), mask.shape))
    config = TrainConfig(model="vit_b", data=["synthetic"], total_steps=args.steps, batch_size=args.batch_size)
    optimizer = torch.optim.Adam(set_trainable(model, "plugins"), lr=1e-3)
    runner = TrainStep(model, 1.0)
    base_rss = peak_rss_mb()

    def one_step(step: int, reencode: bool) -> None:
        items = step_items(objects, step, config, 0, 1)
        if reencode:
            for obj, _ in items:
                obj.embedding = encode_image(model.sam, images[int(obj.name[1:])]).features
        loss = runner(items)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    one_step(0, False)  # warm-up
    t = time.perf_counter()
    for s in range(args.steps):
        one_step(s, False)
    cached = (time.perf_counter() - t) / args.steps
    cached_rss = peak_rss_mb()
    t = time.perf_counter()
    for s in range(args.steps):
        one_step(s, True)
    encoded = (time.perf_counter() - t) / args.steps
    print(f"ViT-B SAM (random init), plugins training, batch {args.batch_size}, {args.steps} steps each, "
          f"{torch.get_num_threads()} threads")
    print(f"  cached embeddings : {1 / cached:7.3f} steps/s ({cached:6.2f} s/step)")
    print(f"  re-encoding images: {1 / encoded:7.3f} steps/s ({encoded:6.2f} s/step)  -> cache speed-up {encoded / cached:5.1f}x")
    print(f"  peak RSS: {base_rss:,.0f} MB after setup, {cached_rss:,.0f} MB after cached steps, "
          f"{peak_rss_mb():,.0f} MB after re-encoding steps")


if __name__ == "__main__":
    main()
