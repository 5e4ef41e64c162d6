"""Cost of the embedding cache's CRC-32 check next to reading the entry and decoding a mask
from it (one box, SAM's mask decoder with the plugins on), for the ViT-B-sized 64x64x256
embedding and the 32x32x256 one; medians of alternating rounds.

    python benchmarks/cache_checksum.py [--rounds 21] [--threads 1]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from segment_anything.modeling import MaskDecoder, PromptEncoder, TwoWayTransformer

from stablesam.models.cache import tensor_checksum
from stablesam.fileio import atomic_torch_save


def seconds(fn, repeats: int = 5) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def decoder(grid: int):
    """SAM's standard prompt encoder and 256-d two-way mask decoder for a grid x grid embedding."""
    prompt = PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid), input_image_size=(16 * grid, 16 * grid),
                           mask_in_chans=16)
    mask = MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=256,
                                                                            mlp_dim=2048, num_heads=8),
                       transformer_dim=256, iou_head_depth=3, iou_head_hidden_dim=256)
    return prompt.eval(), mask.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"threads: {torch.get_num_threads()}, rounds: {args.rounds} (median ms)")
    for grid in (64, 32):
        features = torch.randn(1, 256, grid, grid)
        prompt, mask = decoder(grid)
        box = torch.tensor([[10.0, 20.0, 8.0 * grid, 12.0 * grid]])
        with tempfile.TemporaryDirectory() as folder:
            entry = Path(folder) / "entry.pt"
            atomic_torch_save({"features": features, "crc32": tensor_checksum(features)}, entry)

            def load():
                return torch.load(entry, map_location="cpu", weights_only=True)

            @torch.no_grad()
            def decode():
                sparse, dense = prompt(points=None, boxes=box, masks=None)
                return mask(features, prompt.get_dense_pe(), sparse, dense, multimask_output=False)

            times = {"crc32": [], "torch.load": [], "decoder": []}
            for _ in range(args.rounds):
                times["crc32"].append(seconds(lambda: tensor_checksum(features)))
                times["torch.load"].append(seconds(load))
                times["decoder"].append(seconds(decode, repeats=2))
        ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
        size = features.numel() * 4 / 2**20
        print(f"{grid}x{grid}x256 embedding ({size:.0f} MiB): CRC-32 {ms['crc32']:.2f} ms, "
              f"torch.load of the entry {ms['torch.load']:.2f} ms, one-box mask decode {ms['decoder']:.1f} ms; "
              f"checksum / (load + decode) = {ms['crc32'] / (ms['torch.load'] + ms['decoder']):.1%}")


if __name__ == "__main__":
    main()
