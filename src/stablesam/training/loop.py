"""The training loop of `stablesam train`: the plugins (Stable-SAM) or the whole decoder (DT
baseline) on cached embeddings, resumable, on one process or many (torchrun +
DistributedDataParallel); each step's prompts are a pure function of (seed, step)."""

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..modeling.geometry import prompts_to_frame
from ..fileio import atomic_torch_save, remove_stale_temps, write_text
from ..modeling import StableSam
from ..models.files import base_fingerprint
from ..precision import autocast, is_out_of_memory, oom_message
from ..prompts.adversarial import MIN_BOX_SIDE, search_box
from ..prompts.generation import Prompts, box_from_noise, mask_to_box, object_rng
from .interactive import image_cells, interactive_loss
from .losses import bce_dice_loss
from .objects import TrainObject
from .record import (
    CHECKPOINT_FORMAT, ResumeMismatch, TrainConfig, TrainingError, plot_loss, read_checkpoint, write_log_csv,
    write_weights,
)
from .routing_terms import OFF, RoutingTerms, is_far, is_near_gt, plugins_off
from .rts import GT_BOX_ONLY, RtsMixture, sample_rts_prompt


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
            coords, labels, boxes = prompts_to_frame(self.transform, obj.shape, device, prompts.boxes,
                                                     prompts.point_coords, prompts.point_labels)
            points = None if coords is None else (coords, labels)
            emb, extras = self.embedding(obj)
            logits, _ = self.model.decode(emb, points, boxes, multimask_output=False, extras=extras)
            valid = None if obj.valid is None else obj.valid.to(device)
            loss = bce_dice_loss(logits, obj.target.to(device), valid, self.dice_weight)
            if self.terms.active:  # consistency, α prior, offset regularisation (`routing_terms`)
                gt_box = mask_to_box(obj.mask())
                near = self.terms.needs_near_gt and is_near_gt(prompts, gt_box, self.terms.near_gt)
                far = self.terms.needs_far and is_far(prompts, gt_box, self.terms.far)

                def base_logits():
                    with plugins_off(self.model), torch.no_grad():
                        return self.model.decode(emb, points, boxes, multimask_output=False, extras=extras)[0]

                loss = loss + self.terms.loss(self.model, logits, near, base_logits, valid, far)
            losses.append(loss)
        return torch.stack(losses).mean()

    def embedding(self, obj: TrainObject):
        """The object's cached embedding (1, C, h, w) and the family's extras, on the model's device
        in float32."""
        device = self.model.device
        def f32(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, torch.float32) if t.is_floating_point() else t.to(device)

        embedding, extras = obj.features()
        return f32(embedding), {k: [f32(t) for t in v] for k, v in extras.items()}

    def mine_adv_box(self, obj: TrainObject, box: np.ndarray, session: Dict) -> np.ndarray:
        """The box (4,) within noisy-box@scale's reach of `box` that the model, as it is now,
        segments worst (low-res mask IoU), found with session["budget"] decoder passes without
        gradient; a random box of that reach when the object is too small to search."""
        device = self.model.device
        emb, extras = self.embedding(obj)
        target = obj.target.to(device) > 0.5
        valid = torch.ones_like(target) if obj.valid is None else obj.valid.to(device) > 0.5
        rng, scale = session["rng"], session["scale"]
        if min(box[2] - box[0], box[3] - box[1]) < MIN_BOX_SIDE:
            return box_from_noise(box, rng.uniform(-1, 1, size=(1, 4)), scale, obj.shape)[0]

        def objective(boxes: np.ndarray):
            b = prompts_to_frame(self.transform, obj.shape, device, boxes)[2]
            with torch.no_grad():
                pred = self.model.decode(emb, None, b, multimask_output=False, extras=extras)[0] > 0
            inter = (pred & target & valid).flatten(1).sum(1)
            union = ((pred | target) & valid).flatten(1).sum(1).clamp(min=1)
            return (inter / union).cpu().numpy(), [None] * len(boxes)

        return search_box(objective, box, scale, obj.shape, session["budget"], rng).best

    def interactive(self, obj: TrainObject, first, session: Dict) -> torch.Tensor:
        """Loss of one simulated interactive session (`stablesam.training.interactive`) opened by `first`."""
        device = self.model.device
        emb, extras = self.embedding(obj)
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
        if obj.views:  # the original or one of its augmented views, each as likely
            view = int(object_rng(config.seed, "view", step, j).integers(len(obj.views) + 1))
            obj = obj if view == 0 else obj.views[view - 1]
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


def param_groups(model: StableSam, params: List[nn.Parameter], config: TrainConfig) -> List:
    """Adam's parameters: one group at lr, or with --fit-gate-lr the fit gates in a group of their own."""
    if config.fit_gate_lr is None or config.tune != "plugins":
        return params
    gate = {id(p) for name, p in model.named_parameters() if ".fit_gate." in name}
    return [{"params": [p for p in params if id(p) not in gate]},
            {"params": [p for p in params if id(p) in gate], "lr": config.fit_gate_lr}]


def out_of_memory_as_error(error: RuntimeError, step: int, config: TrainConfig) -> RuntimeError:
    """A CUDA out-of-memory error as a TrainingError of one line with the batch size to try;
    any other error as it is."""
    if not is_out_of_memory(error):
        return error
    return TrainingError(oom_message(f"training step {step + 1}", config.batch_size))


def grad_scaler(device: torch.device, precision: str):
    """fp16's gradient scaler (None for fp32 and bf16, which need none)."""
    if precision != "fp16":
        return None
    try:
        return torch.amp.GradScaler(torch.device(device).type)
    except (AttributeError, TypeError, RuntimeError):  # torch < 2.3: CUDA only
        return torch.cuda.amp.GradScaler(enabled=torch.device(device).type == "cuda")


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
    # The routing terms act on the plugins: decoder tuning trains without them.
    terms = RoutingTerms(**config.terms) if config.tune == "plugins" else OFF
    step_module = TrainStep(model, config.dice_weight, terms)
    # The decoder's IoU head gets no gradient from the mask loss (nor mask_input's path without
    # interactive sessions), hence find_unused_parameters.
    runner = DistributedDataParallel(step_module, find_unused_parameters=config.tune != "plugins") \
        if distributed else step_module
    optimizer = torch.optim.Adam(param_groups(model, params, config), lr=config.lr)
    scaler = grad_scaler(model.device, config.precision)
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
        try:  # the forward under autocast (--precision), the backward outside it
            with autocast(model.device, config.precision):
                loss = runner(step_items(objects, step, config, rank, world))
        except RuntimeError as e:
            raise out_of_memory_as_error(e, step, config) from None
        value = loss.detach().float().clone()
        if distributed:
            dist.all_reduce(value)
            value /= world
        if not torch.isfinite(value):
            kept = f"the last good checkpoint (step {last_saved}) is intact at {ckpt_path}" if last_saved \
                else "no checkpoint had been written yet"
            raise TrainingError(f"loss is {value.item()} at step {step + 1}: training stopped; {kept}. "
                                "Try a lower --lr.")
        optimizer.zero_grad(set_to_none=True)
        try:
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:  # fp16: loss scaling keeps small gradients from flushing to zero
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
        except RuntimeError as e:
            raise out_of_memory_as_error(e, step, config) from None
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
