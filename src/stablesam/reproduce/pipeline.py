"""`stablesam reproduce`: the paper's experiment as resumable stages in one folder.

check (HQSeg-44K's sets under ROOT) -> estimate (a probe: disk and time; `--yes` past the
limits) -> embed (every image through the frozen encoder into the cache) -> train the plugin
(and the DT baseline with `with_dt`) with `stablesam train` -> evaluate SAM, DT and Stable-SAM
on each test set -> report. `OUT/reproduce.json` records the settings and each finished stage;
a rerun of the same command skips what is done (the cache keeps embeddings, training resumes
from its checkpoint, each test set's scores are kept), and other settings are refused.
"""

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from ..fileio import write_text
from .layout import TEST_SETS, TRAIN_SETS, HqsegSet, check_layout, count_images, image_files
from .paper import PROMPTS
from .recipe import specs, train_argv
from .record import ReproduceError, State, free_gb

@dataclass
class ReproduceConfig:
    checkpoint: Path
    model_type: str
    hqseg: Path
    out: Path
    cache: Optional[Path] = None  # None: OUT/cache
    precision: str = "fp32"
    device: Optional[str] = None
    with_dt: bool = False
    epochs: float = 1.0
    batch_size: int = 8
    lr: float = 1e-3
    samples: int = 20  # prompts per object and prompt type
    limit: Optional[int] = None  # evaluation: the first N objects of each test set
    seed: int = 0
    yes: bool = False
    max_disk_gb: float = 50.0
    max_hours: float = 12.0
    probe_images: int = 10

    @property
    def cache_root(self) -> Path:
        return self.cache if self.cache is not None else self.out / "cache"

    @property
    def base_spec(self) -> str:
        return f"{self.model_type}:{self.checkpoint}"

    def settings(self) -> Dict:
        """What a resumed run must share with the run that started OUT."""
        keys = ("model_type", "precision", "epochs", "batch_size", "lr", "samples", "limit", "seed")
        return {"checkpoint": str(Path(self.checkpoint).resolve()), "hqseg": str(Path(self.hqseg).resolve()),
                **{k: getattr(self, k) for k in keys}}


def open_sets(root: Path, sets: List[HqsegSet]) -> list:
    from ..commands.common import open_datasets

    args = argparse.Namespace(data=specs(root, sets), data_root=None, split=None, strict=False, mask_mode="auto",
                              threshold=127, ignore_value=None, image_dir=None, min_area=0.0)
    return open_datasets(args)


def probe_paths(root: Path, n: int) -> List[Path]:
    """Up to n images for the probe, taken in turn from each set (test sets first)."""
    lists = [image_files(root / s.images, s.images == s.masks) for s in TEST_SETS + TRAIN_SETS]
    out: List[Path] = []
    for i in range(max(map(len, lists), default=0)):
        out.extend(files[i] for files in lists if i < len(files))
    return out[:n]


def run_command(argv: List[str]) -> int:
    """A stablesam command in this process (its errors are printed as the CLI prints them)."""
    from ..cli import main

    return main(argv)


class Reproduction:
    """The stages of one run; `say` prints progress lines."""

    def __init__(self, config: ReproduceConfig, say: Callable[[str], None] = print, progress: bool = True):
        self.config, self.say, self.progress = config, say, progress
        self.out = Path(config.out)
        self.state = State(self.out / "reproduce.json", config.settings())
        self._cache = None

    @property
    def cache(self):
        if self._cache is None:
            from ..models.cache import CacheError, EmbeddingCache

            try:
                self._cache = EmbeddingCache.checked(self.config.cache_root, precision=self.config.precision)
            except CacheError as e:
                raise ReproduceError(f"--cache {self.config.cache_root}: {e}") from None
        return self._cache

    def base_model(self):
        from ..models.spec import SpecError, build_model, parse_model_spec

        try:
            return build_model(parse_model_spec(self.config.base_spec), self.config.device)
        except SpecError as e:
            raise ReproduceError(str(e).splitlines()[0]) from None

    def run(self) -> Path:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise ReproduceError("reproduce runs as one process: run its training stages with torchrun (the "
                                 "commands are in docs/reproduce.md), then this command again")
        c = self.config
        check_layout(Path(c.hqseg))
        self.say(f"[1/6] HQSeg-44K under {c.hqseg}: {len(TRAIN_SETS)} training sets, {len(TEST_SETS)} test sets found")
        if self.out.is_dir() and not self.state.path.is_file() and any(self.out.iterdir()):
            raise ReproduceError(f"--out {self.out} is not empty and holds no reproduce run: give a new or empty "
                                 "folder (rerunning a run's own command in its folder resumes it)")
        self.out.mkdir(parents=True, exist_ok=True)
        self.state.finish("check", {"train_sets": [s.name for s in TRAIN_SETS], "test_sets": [s.name for s in TEST_SETS]})
        model = None
        if not self.state.done("estimate") or not self.state.done("embed"):
            model = self.base_model()
        self.estimate(model)
        self.embed(model)
        del model
        self.train("plugins", "train-plugin", self.out / "train_plugin", "[4/6] plugin")
        if c.with_dt:
            self.train("decoder", "train-dt", self.out / "train_dt", "[4/6] DT baseline")
        self.evaluate()
        from .report import write_report

        path = write_report(self)
        self.say(f"[6/6] wrote {path} and {self.out / 'plugin.pt'}")
        return path

    def estimate(self, model) -> None:
        from ..precision import is_out_of_memory, oom_message
        from .estimate import estimate, probe

        c = self.config
        saved = self.state.done("estimate")
        if saved is None:
            train_images, test_images = count_images(c.hqseg, TRAIN_SETS), count_images(c.hqseg, TEST_SETS)
            try:
                p = probe(model, probe_paths(c.hqseg, c.probe_images), self.cache, c.samples)
            except RuntimeError as e:
                if is_out_of_memory(e):
                    raise ReproduceError(oom_message("the probe's decoder pass", c.samples, "--samples")) from None
                raise
            models = 3 if c.with_dt else 2
            est = estimate(p, train_images, test_images, c.epochs, 2 if c.with_dt else 1, models, len(PROMPTS),
                           c.samples if c.limit is None else c.samples * min(1.0, c.limit * len(TEST_SETS) / test_images))
            saved = est.to_dict()
            for line in est.lines():
                self.say(("[2/6] " if line.startswith("estimate") else "") + line)
            free = free_gb(c.cache_root)
            if free is not None and saved["disk_gb"] > free:
                raise ReproduceError(f"the embedding cache needs about {saved['disk_gb']:.1f} GB and {c.cache_root} "
                                     f"has {free:.1f} GB free: free space or pass --cache DIR on a larger disk")
            over = [f"{saved['disk_gb']:.1f} GB of disk (limit --max-disk-gb {c.max_disk_gb:g})"
                    if saved["disk_gb"] > c.max_disk_gb else "",
                    f"{saved['hours']:.1f} h (limit --max-hours {c.max_hours:g})" if saved["hours"] > c.max_hours else ""]
            over = [o for o in over if o]
            if over and not c.yes:
                raise ReproduceError(f"this run needs about {' and '.join(over)}: pass --yes to go on")
            self.state.finish("estimate", saved)
        else:
            self.say(f"[2/6] estimate (done): {saved['disk_gb']:.1f} GB of cache, {saved['hours']:.2f} h")

    def embed(self, model) -> None:
        from tqdm import tqdm

        from ..data.datasets import DataError, read_image
        from ..precision import is_out_of_memory, oom_message

        if self.state.done("embed"):
            self.say("[3/6] embeddings (done)")
            return
        c = self.config
        paths = [p for s in TRAIN_SETS + TEST_SETS for p in image_files(c.hqseg / s.images, s.images == s.masks)]
        cache = self.cache
        for path in tqdm(paths, desc="embed", unit="img", disable=not self.progress):
            try:
                cache.get(model.sam, read_image(path))
            except DataError:
                continue  # the datasets report it when they load it
            except RuntimeError as e:
                if is_out_of_memory(e):
                    raise ReproduceError(oom_message("the image encoder", 1, "batch")) from None
                raise
        self.state.finish("embed", {"images": len(paths), "encoder_runs": cache.encoder_calls})
        self.say(f"[3/6] embeddings: {len(paths)} images in {c.cache_root} ({cache.encoder_calls} encoder runs now)")

    def train(self, tune: str, stage: str, folder: Path, title: str) -> None:
        weights = folder / ("plugin.pt" if tune == "plugins" else "decoder.pt")
        if self.state.done(stage) and weights.is_file():
            self.say(f"{title} training (done): {weights}")
            return
        argv = train_argv(self.config, tune, folder)
        if (folder / "checkpoint.pt").is_file():
            argv.append("--resume")
        elif folder.is_dir() and any(folder.iterdir()):  # a start of this stage killed before its first checkpoint
            argv.append("--force")
        self.say(f"{title} training: stablesam {' '.join(argv)}")
        rc = run_command(argv)
        if rc != 0:
            raise TrainingStopped(rc)
        self.state.finish(stage, {"weights": str(weights)})

    def segmenters(self) -> list:
        from ..models.segmenters import SamSegmenter
        from ..models.spec import SpecError, build_model, parse_model_spec

        c, cache = self.config, self.cache
        try:
            stable = build_model(parse_model_spec(f"{c.base_spec}+plugin={self.out / 'train_plugin' / 'plugin.pt'}"),
                                 c.device)
            segs = [SamSegmenter("SAM", stable, cache, c.precision), SamSegmenter("Stable-SAM", stable, cache, c.precision)]
            segs[0].plugins = False
            if c.with_dt:
                dt = build_model(parse_model_spec(f"{c.base_spec}+decoder={self.out / 'train_dt' / 'decoder.pt'}"),
                                 c.device)
                segs.insert(1, SamSegmenter("DT", dt, cache, c.precision))
        except SpecError as e:
            raise ReproduceError(str(e).splitlines()[0]) from None
        return segs

    def eval_path(self, s: HqsegSet) -> Path:
        return self.out / "eval" / f"{s.name}.json"

    def evaluate(self) -> None:
        from ..evaluation.prompt_eval import EvalConfig, evaluate
        from ..precision import is_out_of_memory, oom_message
        from ..prompts.generation import parse_prompts

        c = self.config
        models = ["SAM", "DT", "Stable-SAM"] if c.with_dt else ["SAM", "Stable-SAM"]
        segs = None
        for s in TEST_SETS:
            stage = f"eval:{s.name}"
            saved = self.state.done(stage)
            if saved and saved.get("models") == models and self.eval_path(s).is_file():
                self.say(f"[5/6] {s.name} (done)")
                continue
            segs = segs or self.segmenters()
            config = EvalConfig(parse_prompts(",".join(PROMPTS)), c.samples, c.seed, c.limit)
            try:
                result = evaluate(open_sets(c.hqseg, [s]), segs, config, progress=self.progress)
            except RuntimeError as e:
                if is_out_of_memory(e):
                    raise ReproduceError(oom_message(f"evaluation ({s.name})", c.samples, "--samples")) from None
                raise
            write_text(self.eval_path(s), json.dumps({"dataset": s.name, "rows": result.rows}, indent=2))
            self.state.finish(stage, {"models": models})
            self.say(f"[5/6] {s.name}: {len({o['object'] for o in result.objects})} objects evaluated")

    def rows(self) -> List[Dict]:
        rows: List[Dict] = []
        for s in TEST_SETS:
            rows.extend(json.loads(self.eval_path(s).read_text())["rows"])
        return rows


class TrainingStopped(Exception):
    """A training stage's `stablesam train` failed; it printed why. `code` is its exit code."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code
