"""`stablesam train`: the plugins (Stable-SAM) or the whole decoder (DT baseline) on cached
embeddings, resumable, on one process or many (torchrun + DistributedDataParallel)."""

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from segment_anything.utils.transforms import ResizeLongestSide
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..models.cache import EmbeddingCache
from ..data.datasets import DataError, read_image
from ..models.files import (
    CheckpointError, atomic_torch_save, base_fingerprint, read_weights, save_decoder, save_plugin,
)
from .losses import bce_dice_loss
from ..modeling import PluginConfig, StableSam
from ..prompts.adversarial import MIN_BOX_SIDE, search_box
from ..prompts.generation import Prompts, box_from_noise, mask_to_box, object_rng
from ..evaluation.reports import remove_stale_temps, save_figure, write_text
from .interactive import image_cells, interactive_loss
from .rts import GT_BOX_ONLY, RtsMixture, sample_rts_prompt
from .routing_terms import RoutingTerms, is_near_gt, plugins_off

CHECKPOINT_FORMAT = "stablesam-train-checkpoint"
RESUME_KEYS = ("tune", "batch_size", "lr", "seed", "rts", "mixture", "plugin", "data", "model", "total_steps",
               "terms")


class TrainingError(RuntimeError):
    """Training cannot start or cannot go on; the message says why."""


class ResumeMismatch(TrainingError):
    """--resume found a checkpoint it cannot continue: unreadable, foreign, or another run's."""


@dataclass
class TrainConfig:
    model: str
    data: List[str]
    tune: str = "plugins"  # plugins | decoder | prompt+decoder
    total_steps: int = 0
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    rts: bool = True
    mixture: Dict = field(default_factory=lambda: RtsMixture().to_dict())
    plugin: Dict = field(default_factory=dict)
    terms: Dict = field(default_factory=lambda: RoutingTerms().to_dict())  # loss terms on the routing
    dice_weight: float = 1.0
    checkpoint_every: int = 50
    # step -> file stem: the weights are also written as OUT/STEM.pt when that step is reached.
    # The learning rate is constant and each step a pure function of (seed, step), so a snapshot
    # at step s equals the final weights of the same run with total_steps = s.
    snapshots: Dict[int, str] = field(default_factory=dict)


@dataclass
class TrainObject:
    """One training object, ready for decoder passes."""

    name: str
    embedding: torch.Tensor  # (1, C, h, w)
    target: torch.Tensor  # (1, 1, 4h, 4w) whole-object mask in the low-res logit frame, soft
    mask_bits: np.ndarray  # np.packbits of the (H, W) mask
    shape: tuple  # (H, W)
    valid: Optional[torch.Tensor] = None  # (1, 1, 4h, 4w) weight: 0 on ignore pixels, None if none
    extras: Dict = field(default_factory=dict)  # what else the family's decoder reads (Embedding.extras)

    def mask(self) -> np.ndarray:
        h, w = self.shape
        return np.unpackbits(self.mask_bits, count=h * w).reshape(h, w).astype(bool)


def low_res_target(mask: np.ndarray, img_size: int, low: tuple) -> torch.Tensor:
    """(H, W) mask -> (1, 1, *low) soft mask in SAM's padded input frame, area-downsampled."""
    h, w = mask.shape
    nh, nw = ResizeLongestSide.get_preprocess_shape(h, w, img_size)
    t = torch.from_numpy(mask.astype(np.float32))[None, None]
    t = F.interpolate(t, (nh, nw), mode="bilinear", align_corners=False)
    t = F.pad(t, (0, img_size - nw, 0, img_size - nh))
    return F.interpolate(t, low, mode="area")


def prepare_objects(datasets: Sequence, model: StableSam, cache: EmbeddingCache, progress: bool) -> List[TrainObject]:
    """Embeddings (through the cache: the encoder runs at most once per image) and targets."""
    sam, backend = model.sam, model.backend
    objects = []
    for ds in datasets:
        for i in tqdm(range(len(ds)), desc=f"prepare {ds.name}", unit="obj", disable=not progress):
            sample = ds.load(i)
            if sample is None:
                continue
            emb = cache.get(sam, sample.image).to(torch.device("cpu"))
            valid = None if sample.ignore is None else 1 - backend.low_res_target(sample.ignore, sam)
            objects.append(TrainObject(
                f"{ds.name}/{sample.name}", emb.features.detach(), backend.low_res_target(sample.mask, sam),
                np.packbits(sample.mask.ravel()), sample.mask.shape, valid, emb.extras,
            ))
    return objects


def warm_cache(datasets: Sequence, model: StableSam, cache: EmbeddingCache, rank: int, world: int,
               progress: bool) -> None:
    """Embed this process's share of the images (every world-th distinct image, in order) into
    the on-disk cache, so that under torchrun the encoder work is split between the processes.
    Unreadable images are left to `prepare_objects`, which reports them."""
    images = list(dict.fromkeys(ref.image_path for ds in datasets for ref in ds.objects))
    for path in tqdm(images[rank::world], desc=f"embed ({world} processes)", unit="img", disable=not progress):
        try:
            image = read_image(path)
        except DataError:
            continue
        cache.get(model.sam, image)


class TrainStep(nn.Module):
    """Loss of one step's objects; what DistributedDataParallel wraps. Registers only the
    modules a step uses (not the image encoder), so DDP syncs just those."""

    def __init__(self, model: StableSam, dice_weight: float, terms: Optional[RoutingTerms] = None):
        super().__init__()
        self.terms = terms or RoutingTerms()
        self.plugins = nn.ModuleDict(model.plugin_modules())  # every site's DSP + DRP
        self.prompt_encoder = model.backend.prompt_encoder(model.sam)
        self.mask_decoder = model.backend.decoder(model.sam)
        object.__setattr__(self, "model", model)  # not a submodule
        self.dice_weight = dice_weight
        self.transform = model.backend.prompt_transform(model.sam)

    def forward(self, items: List) -> torch.Tensor:
        device = self.model.device
        losses = []
        for obj, prompts, session in items:
            if session is not None and session["kind"] == "interactive":
                losses.append(self.interactive(obj, prompts, session))
                continue
            if session is not None and session["kind"] == "adv-box":
                prompts = Prompts(boxes=self.mine_adv_box(obj, prompts.boxes[0], session)[None])
            points = boxes = None
            if prompts.point_coords is not None:
                c = self.transform.apply_coords(prompts.point_coords, obj.shape)
                points = (torch.as_tensor(c, dtype=torch.float, device=device),
                          torch.as_tensor(prompts.point_labels, dtype=torch.int, device=device))
            if prompts.boxes is not None:
                b = self.transform.apply_boxes(prompts.boxes, obj.shape)
                boxes = torch.as_tensor(b, dtype=torch.float, device=device)
            extras = {k: [t.to(device) for t in v] for k, v in obj.extras.items()}
            logits, _ = self.model.decode(obj.embedding.to(device), points, boxes, multimask_output=False,
                                          extras=extras)
            valid = None if obj.valid is None else obj.valid.to(device)
            loss = bce_dice_loss(logits, obj.target.to(device), valid, self.dice_weight)
            if self.terms.active:  # consistency, α prior, offset regularisation (`routing_terms`)
                near = self.terms.needs_near_gt and is_near_gt(prompts, mask_to_box(obj.mask()), self.terms.near_gt)

                def base_logits():
                    with plugins_off(self.model), torch.no_grad():
                        return self.model.decode(obj.embedding.to(device), points, boxes, multimask_output=False,
                                                 extras=extras)[0]

                loss = loss + self.terms.loss(self.model, logits, near, base_logits, valid)
            losses.append(loss)
        return torch.stack(losses).mean()

    def mine_adv_box(self, obj: TrainObject, box: np.ndarray, session: Dict) -> np.ndarray:
        """The box (4,) within noisy-box@scale's reach of `box` that the model, as it is now,
        segments worst (low-res mask IoU), found with session["budget"] decoder passes without
        gradient; a random box of that reach when the object is too small to search."""
        device = self.model.device
        emb = obj.embedding.to(device)
        extras = {k: [t.to(device) for t in v] for k, v in obj.extras.items()}
        target = obj.target.to(device) > 0.5
        valid = torch.ones_like(target) if obj.valid is None else obj.valid.to(device) > 0.5
        rng, scale = session["rng"], session["scale"]
        if min(box[2] - box[0], box[3] - box[1]) < MIN_BOX_SIDE:
            return box_from_noise(box, rng.uniform(-1, 1, size=(1, 4)), scale, obj.shape)[0]

        def objective(boxes: np.ndarray):
            b = torch.as_tensor(self.transform.apply_boxes(boxes, obj.shape), dtype=torch.float, device=device)
            with torch.no_grad():
                pred = self.model.decode(emb, None, b, multimask_output=False, extras=extras)[0] > 0
            inter = (pred & target & valid).flatten(1).sum(1)
            union = ((pred | target) & valid).flatten(1).sum(1).clamp(min=1)
            return (inter / union).cpu().numpy(), [None] * len(boxes)

        return search_box(objective, box, scale, obj.shape, session["budget"], rng).best

    def interactive(self, obj: TrainObject, first, session: Dict) -> torch.Tensor:
        """Loss of one simulated interactive session (`stablesam.training.interactive`) opened by `first`."""
        device = self.model.device
        emb = obj.embedding.to(device)
        extras = {k: [t.to(device) for t in v] for k, v in obj.extras.items()}
        target = obj.target.to(device)
        valid = None if obj.valid is None else obj.valid.to(device)
        img_size = self.model.backend.image_size(self.model.sam)

        def decode(points, boxes, mask_input, multimask):
            return self.model.decode(emb, points, boxes, mask_input=mask_input, multimask_output=multimask,
                                     extras=extras)

        loss, _ = interactive_loss(decode, first, lambda c: self.transform.apply_coords(c, obj.shape), target, valid,
                                   image_cells(obj.shape, img_size, tuple(target.shape[-2:])), img_size,
                                   session["rng"], session["clicks"], session["deepest"])
        return loss


def step_items(objects: List[TrainObject], step: int, config: TrainConfig, rank: int, world: int) -> List:
    """The (object, prompt) pairs of one step for one rank: a pure function of (seed, step), so
    a resumed or sharded run sees exactly what an uninterrupted single process sees."""
    n, b = len(objects), config.batch_size
    per_epoch = math.ceil(n / b)
    epoch, k = divmod(step, per_epoch)
    order = object_rng(config.seed, "epoch", epoch).permutation(n)
    picks = [order[(k * b + j) % n] for j in range(b)]  # the last batch wraps around
    mixture = RtsMixture(**config.mixture) if config.rts else GT_BOX_ONLY
    items = []
    for j in range(rank, b, world):
        obj = objects[picks[j]]
        kind, prompts = sample_rts_prompt(obj.mask(), mixture, object_rng(config.seed, "prompt", step, j))
        session = None
        if kind == "interactive":
            session = {"kind": kind, "rng": object_rng(config.seed, "interactive", step, j),
                       "clicks": mixture.interactive_clicks, "deepest": mixture.deepest_clicks}
        elif kind == "adv-box":
            rng = object_rng(config.seed, "adv-box", step, j)
            session = {"kind": kind, "rng": rng, "scale": mixture.max_noise * (1.0 - rng.random()),
                       "budget": mixture.adv_budget}
        items.append((obj, prompts, session))
    return items


def tuned_modules(model: StableSam, tune: str) -> Dict[str, nn.Module]:
    """What `--tune decoder` (the mask decoder) or `--tune prompt+decoder` (also the prompt
    encoder: SAM's interactive training, which needs its mask_input path) trains."""
    modules = {"mask_decoder": model.backend.decoder(model.sam)}
    if tune == "prompt+decoder":
        modules["prompt_encoder"] = model.backend.prompt_encoder(model.sam)
    return modules


def trainable_state(model: StableSam, tune: str) -> Dict[str, torch.Tensor]:
    if tune == "plugins":
        return model.plugin_state_dict()
    if tune == "decoder":
        return {k: v.detach().clone() for k, v in model.backend.decoder(model.sam).state_dict().items()}
    return {f"{name}.{k}": v.detach().clone() for name, m in tuned_modules(model, tune).items()
            for k, v in m.state_dict().items()}


def load_trainable_state(model: StableSam, tune: str, state: Dict[str, torch.Tensor]) -> None:
    if tune == "plugins":
        model.load_plugin_state_dict(state)
    elif tune == "decoder":
        model.backend.decoder(model.sam).load_state_dict(state)
    else:
        for name, m in tuned_modules(model, tune).items():
            m.load_state_dict({k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")})


def set_trainable(model: StableSam, tune: str) -> List[nn.Parameter]:
    model.sam.requires_grad_(False)
    if tune == "plugins":
        model.plugins_enabled = True
        params = list(model.plugin_parameters())
        for p in params:
            p.requires_grad_(True)
    else:  # DT baseline: the whole mask decoder (and the prompt encoder), plugins off
        model.plugins_enabled = False
        for p in model.plugin_parameters():
            p.requires_grad_(False)
        params = [p for m in tuned_modules(model, tune).values() for p in m.parameters()]
        for p in params:
            p.requires_grad_(True)
    return params


def with_defaults(config: Dict) -> Dict:
    """A TrainConfig dict with the plugin and mixture options added since it was written filled
    in with what leaving them out meant then (`saved_values`), so checkpoints of earlier
    releases still resume."""
    out = dict(config)
    if out.get("plugin"):
        out["plugin"] = PluginConfig.saved_values(out["plugin"])
    if isinstance(out.get("mixture"), dict):
        out["mixture"] = RtsMixture.saved_values(out["mixture"])
    out["terms"] = RoutingTerms.saved_values(out.get("terms"))
    return out


def read_checkpoint(path: Path, config: TrainConfig, ignore: Sequence[str] = ()) -> Dict:
    """The training checkpoint at `path` if `config` (but the `ignore` keys) can continue it;
    ResumeMismatch saying why not otherwise. Cheap: `stablesam train --resume` calls it before
    embedding any image, then `train` again with the final config."""
    try:
        ckpt = read_weights(path, "cpu")
    except CheckpointError as e:
        raise ResumeMismatch(f"cannot resume: {e}") from None
    saved = ckpt.get("config")
    if ckpt.get("format") != CHECKPOINT_FORMAT or not isinstance(saved, dict) or \
            not isinstance(ckpt.get("step"), int) or not isinstance(ckpt.get("log"), list) or \
            not isinstance(ckpt.get("trainable"), dict) or not isinstance(ckpt.get("optimizer"), dict):
        raise ResumeMismatch(f"cannot resume: {path} is not a stablesam training checkpoint; "
                             "use another --out or drop --resume")
    current = with_defaults(asdict(config))
    changed = [k for k in RESUME_KEYS if k not in ignore and with_defaults(saved).get(k) != current.get(k)]
    if changed:
        raise ResumeMismatch(f"{path} belongs to another run (differs in: {', '.join(changed)}); "
                             "use another --out or drop --resume")
    return ckpt


def write_log_csv(out: Path, rows: List[Dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["step", "loss", "lr", "seconds"])
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "log.csv", buf.getvalue())


def plot_loss(out: Path, rows: List[Dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["step"] for r in rows])
    loss = np.array([r["loss"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, loss, alpha=0.35, label="loss")
    if len(loss) >= 10:
        w = max(5, len(loss) // 20)
        ax.plot(steps[w - 1:], np.convolve(loss, np.ones(w) / w, mode="valid"), label=f"mean of {w}")
    ax.set_xlabel("step"); ax.set_ylabel("BCE + Dice"); ax.grid(alpha=0.3); ax.legend()
    save_figure(fig, out / "loss.png")


def train(model: StableSam, objects: List[TrainObject], config: TrainConfig, out: Path,
          resume: bool = False, progress: bool = True, base_name: str = "sam") -> Dict:
    """Run (or resume) training; rank 0 writes the weights, config, log and checkpoints."""
    distributed = dist.is_available() and dist.is_initialized()
    rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    if config.batch_size % world:
        raise TrainingError(f"--batch-size {config.batch_size} must be a multiple of the {world} processes")
    if not objects:
        raise TrainingError("no usable training objects")
    fingerprint = base_fingerprint(model.sam)
    params = set_trainable(model, config.tune)
    step_module = TrainStep(model, config.dice_weight, RoutingTerms(**config.terms))
    # The decoder's IoU head gets no gradient from the mask loss (nor mask_input's path without
    # interactive sessions), hence find_unused_parameters.
    runner = DistributedDataParallel(step_module, find_unused_parameters=config.tune != "plugins") \
        if distributed else step_module
    optimizer = torch.optim.Adam(params, lr=config.lr)
    ckpt_path = out / "checkpoint.pt"
    start, log, last_saved = 0, [], None
    if resume and ckpt_path.is_file():
        ckpt = read_checkpoint(ckpt_path, config)
        try:
            load_trainable_state(model, config.tune, ckpt["trainable"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise ResumeMismatch(f"cannot resume: {ckpt_path} does not fit this model "
                                 f"({str(e).splitlines()[0][:120]})") from None
        start, log, last_saved = ckpt["step"], list(ckpt["log"]), ckpt["step"]
    elif resume and rank == 0 and progress:
        print(f"no checkpoint in {out}: starting from step 0")

    def save_checkpoint(step: int) -> None:
        nonlocal last_saved
        last_saved = step
        if rank == 0:
            atomic_torch_save({"format": CHECKPOINT_FORMAT, "step": step, "config": asdict(config),
                               "trainable": trainable_state(model, config.tune),
                               "optimizer": optimizer.state_dict(), "log": log}, ckpt_path)
            write_log_csv(out, log)

    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out, ["checkpoint.pt", "plugin.pt", "decoder.pt", "config.json", "log.csv", "loss.png"]
                           + [f"{stem}.pt" for stem in config.snapshots.values()])
        write_text(out / "config.json", json.dumps({**asdict(config), "world_size": world,
                                                    "objects": len(objects), "base": base_name}, indent=2))
    bar = tqdm(range(start, config.total_steps), initial=start, total=config.total_steps,
               desc=f"train {config.tune}", unit="step", disable=not progress or rank > 0)
    t0 = time.time() - (log[-1]["seconds"] if log else 0.0)  # a resumed run's clock goes on
    for step in bar:
        loss = runner(step_items(objects, step, config, rank, world))
        value = loss.detach().clone()
        if distributed:
            dist.all_reduce(value)
            value /= world
        if not torch.isfinite(value):
            kept = f"the last good checkpoint (step {last_saved}) is intact at {ckpt_path}" if last_saved \
                else "no checkpoint had been written yet"
            raise TrainingError(f"loss is {value.item()} at step {step + 1}: training stopped; {kept}. "
                                "Try a lower --lr.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        log.append({"step": step + 1, "loss": float(value), "lr": config.lr, "seconds": round(time.time() - t0, 3)})
        bar.set_postfix(loss=f"{float(value):.4f}")
        if rank == 0 and step + 1 in config.snapshots:
            write_weights(model, config, out, base_name, fingerprint, step + 1, world, config.snapshots[step + 1])
        if (step + 1) % config.checkpoint_every == 0 and step + 1 < config.total_steps:
            save_checkpoint(step + 1)
    files = {}
    if rank == 0:
        files["weights"] = write_weights(model, config, out, base_name, fingerprint, config.total_steps, world)
        save_checkpoint(config.total_steps)
        if log:
            plot_loss(out, log)
    return {"files": files, "log": log, "rank": rank}


def write_weights(model: StableSam, config: TrainConfig, out: Path, base_name: str, fingerprint: str,
                  steps: int, world: int, stem: Optional[str] = None) -> Path:
    """The trained weights after `steps` steps: OUT/plugin.pt or OUT/decoder.pt, or OUT/STEM.pt."""
    meta = {"steps": steps, "tune": config.tune, "data": config.data, "seed": config.seed,
            "batch_size": config.batch_size, "lr": config.lr, "rts": config.rts, "world_size": world}
    if config.tune == "plugins":
        path = out / f"{stem or 'plugin'}.pt"
        save_plugin(model, path, base_name=base_name, meta=meta)
    else:
        path = out / f"{stem or 'decoder'}.pt"
        save_decoder(model.sam, path, base_name, fingerprint, meta=meta,
                     prompt_encoder=config.tune == "prompt+decoder")
    return path
