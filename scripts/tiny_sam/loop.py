"""The resumable training loop: checkpoints, EMA, validation, export."""

import argparse
import concurrent.futures
import copy
import csv
import hashlib
import io
import json
import signal
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

import torch
from tqdm import tqdm

from stablesam.fileio import atomic_torch_save
from stablesam.models.files import load_sam_file, save_sam_file
from stablesam.backends.official import read_weights
from stablesam.modeling.small_sam import TINY_SAM_ARCH, build_small_sam
from stablesam.fileio import write_text

from .augment import AugConfig, build_batch, load_train_images
from .loss import batch_loss, param_groups
from .schedule import RESUME_KEYS, Ema, RunConfig, lr_at
from .split import DATASETS, check_split, read_split_list
from .validate import ValSet, evaluate_val

CHECKPOINT_FORMAT = "stablesam-tiny-sam-train"
REPO = Path(__file__).resolve().parents[2]


def write_csv(path: Path, rows: List[Dict]) -> None:
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


def display(path: Path) -> str:
    """A path relative to the repository when inside it (what a file's meta should record)."""
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def bf16_supported() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def ema_model(sam, ema: Optional[Ema]):
    """The model to export/evaluate: a copy holding the EMA weights, or `sam` itself."""
    if ema is None:
        return sam
    shadow = copy.deepcopy(sam)
    ema.copy_to(shadow)
    return shadow


def evaluate_only(args: argparse.Namespace, val_file: Path) -> int:
    n = args.eval_val or 100
    if args.init is not None:
        sam, source = load_sam_file(args.init), str(args.init)
    elif args.out is not None and (args.out / "checkpoint.pt").is_file():
        ckpt = read_weights(args.out / "checkpoint.pt")
        sam = build_small_sam(ckpt["arch"])
        sam.load_state_dict(ckpt["model"])
        source = f"{args.out / 'checkpoint.pt'} (step {ckpt['step']})"
    else:
        raise SystemExit("--eval-only needs --init FILE or --out with a checkpoint.pt")
    result = evaluate_val(sam, ValSet(args.data_root, val_file, n))
    print(json.dumps({"model": source, **result}, indent=2))
    return 0


def train(args: argparse.Namespace) -> int:
    t_start = time.time()
    progress = not args.no_progress
    train_file, val_file = args.split_dir / "train.txt", args.split_dir / "val.txt"
    train_names, val_names = read_split_list(train_file), read_split_list(val_file)
    check_split(train_names, val_names)
    if args.eval_only:
        return evaluate_only(args, val_file)
    if args.out is None:
        raise SystemExit("--out DIR is required for training")

    use_bf16 = not args.no_bf16 and bf16_supported()
    ckpt_path = args.out / "checkpoint.pt"
    ckpt = read_weights(ckpt_path) if args.resume and ckpt_path.is_file() else None
    if ckpt is not None and ckpt.get("format") != CHECKPOINT_FORMAT:
        raise SystemExit(f"{ckpt_path} is not a tiny-SAM training checkpoint")
    init_obj = None
    arch = dict(TINY_SAM_ARCH, **(args.arch or {}))
    if ckpt is not None:
        arch = ckpt["arch"]
    elif args.init is not None:
        init_obj = read_weights(args.init)
        arch = init_obj["arch"]
    cfg = RunConfig(arch=arch, seed=args.seed, total_steps=args.total_steps, batch_size=args.batch_size,
                    prompts_per_image=args.prompts_per_image, lr=args.lr, weight_decay=args.weight_decay,
                    warmup_steps=args.warmup_steps, ema_decay=args.ema,
                    train_list_sha256=hashlib.sha256("\n".join(train_names).encode()).hexdigest()[:16])
    aug = AugConfig(paste_prob=args.paste_prob)

    torch.manual_seed(cfg.seed)
    sam = build_small_sam(cfg.arch)
    start, train_seconds, log, val_log = 0, 0.0, [], []
    rewarm_from = None
    if ckpt is not None:
        saved = ckpt["config"]
        changed = [k for k in RESUME_KEYS if saved.get(k) != asdict(cfg)[k]]
        if changed:
            raise SystemExit(f"{ckpt_path} belongs to another run (differs in: {', '.join(changed)}; "
                             f"saved {({k: saved.get(k) for k in changed})}); use another --out or drop --resume")
        sam.load_state_dict(ckpt["model"])
        start, train_seconds = ckpt["step"], ckpt["train_seconds"]
        log, val_log = list(ckpt["log"]), list(ckpt.get("val", []))
        rewarm_from = ckpt.get("rewarm_from")
        print(f"resuming {ckpt_path} at step {start} ({train_seconds / 60:.1f} min trained)")
    elif init_obj is not None:
        sam = load_sam_file(args.init)
        meta = init_obj.get("meta", {})
        start, train_seconds = int(meta.get("steps", 0)), float(meta.get("minutes", 0.0)) * 60
        rewarm_from = start
        print(f"starting from {args.init} at step {start} (fresh optimizer, {args.rewarmup_steps}-step LR re-warmup)")
    sam.train()
    ema = None
    if cfg.ema_decay > 0:
        ema = Ema(sam, cfg.ema_decay)
        if ckpt is not None and "ema" in ckpt:
            ema.state = {k: v.float() for k, v in ckpt["ema"].items()}
    optimizer = torch.optim.AdamW(param_groups(sam, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    params = [p for g in optimizer.param_groups for p in g["params"]]

    args.out.mkdir(parents=True, exist_ok=True)
    n_enc = sum(p.numel() for p in sam.image_encoder.parameters())
    n_all = sum(p.numel() for p in sam.parameters())
    write_text(args.out / "config.json", json.dumps({**asdict(cfg), "aug": asdict(aug), "bf16": use_bf16,
                                                      "threads": args.threads, "encoder_params": n_enc,
                                                      "total_params": n_all, "train_images": len(train_names)}, indent=2))
    print(f"tiny SAM: encoder {n_enc / 1e6:.3f} M params, total {n_all / 1e6:.3f} M; bf16 autocast: {use_bf16}; "
          f"threads: {args.threads}")

    valset = None

    def run_eval(step: int) -> None:
        nonlocal valset
        if args.eval_val <= 0:
            return
        if valset is None:
            valset = ValSet(args.data_root, val_file, args.eval_val)
        t = time.time()
        result = evaluate_val(sam, valset)
        if ema is not None:
            result.update({f"ema_{k}": v for k, v in evaluate_val(ema_model(sam, ema), valset).items() if k != "objects"})
        sam.train()
        val_log.append({"step": step, "minutes": round(train_seconds / 60, 2), **result})
        write_csv(args.out / "val.csv", val_log)
        tqdm.write(f"val @ step {step}: {json.dumps(result)} ({time.time() - t:.0f} s)")

    def meta(step: int) -> Dict:
        m = {"steps": step, "total_steps": cfg.total_steps, "seed": cfg.seed, "minutes": round(train_seconds / 60, 2),
             "batch_size": cfg.batch_size, "prompts_per_image": cfg.prompts_per_image, "lr": cfg.lr,
             "ema_decay": cfg.ema_decay, "weights": "ema" if ema is not None else "raw",
             "data": {"datasets": list(DATASETS), "split": display(train_file), "train_images": len(train_names),
                      "train_list_sha256": cfg.train_list_sha256},
             "trainer": "scripts/train_tiny_sam.py", "bf16": use_bf16}
        if val_log:
            m["val"] = val_log[-1]
        return m

    def save(step: int) -> None:
        state = {"format": CHECKPOINT_FORMAT, "step": step, "arch": cfg.arch, "config": asdict(cfg),
                 "model": {k: v.detach().clone() for k, v in sam.state_dict().items()},
                 "optimizer": optimizer.state_dict(), "train_seconds": train_seconds,
                 "rewarm_from": rewarm_from, "log": log, "val": val_log}
        if ema is not None:
            state["ema"] = ema.state
        atomic_torch_save(state, ckpt_path)
        write_csv(args.out / "log.csv", log)
        if args.export is not None:
            save_sam_file(ema_model(sam, ema), cfg.arch, args.export, meta=meta(step), dtype=args.export_dtype)

    stop = {"signal": None}

    def request_stop(signum, frame):
        stop["signal"] = signum

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    step = start
    if start < cfg.total_steps:
        images = load_train_images(args.data_root, train_names, cfg.arch["img_size"], aug.min_pixels, progress)
        print(f"{len(images)} training images in RAM ({sum(len(i.objects) for i in images)} objects); "
              f"{time.time() - t_start:.0f} s since start")
        deadline = None if args.minutes is None else t_start + args.minutes * 60
        reserve = 20.0 + (0.5 * args.eval_val if args.eval_val else 0.0)
        pool = concurrent.futures.ThreadPoolExecutor(1)

        def batch_of(i: int):
            return build_batch(images, i, cfg.seed, cfg.batch_size, cfg.prompts_per_image, cfg.arch["img_size"],
                               cfg.loss_res, aug)

        pending = pool.submit(batch_of, start)
        last_ckpt = last_eval = time.time()
        step_time = None
        bar = tqdm(total=cfg.total_steps, initial=start, desc="train tiny SAM", unit="step", disable=not progress)
        loss_ema = None
        while step < cfg.total_steps:
            if stop["signal"] is not None:
                tqdm.write(f"signal {stop['signal']}: stopping after step {step}")
                break
            if args.steps_this_run is not None and step - start >= args.steps_this_run:
                break
            if deadline is not None and time.time() + (step_time or 0) + reserve > deadline:
                tqdm.write(f"time budget of {args.minutes} min reached at step {step}")
                break
            t0 = time.time()
            batch = pending.result()
            if step + 1 < cfg.total_steps:
                pending = pool.submit(batch_of, step + 1)
            lr = lr_at(step, cfg, rewarm_from, args.rewarmup_steps)
            for g in optimizer.param_groups:
                g["lr"] = lr
            loss, parts = batch_loss(sam, batch, cfg.loss_res, cfg.iou_weight, use_bf16)
            if not torch.isfinite(loss):
                raise SystemExit(f"loss is {loss.item()} at step {step + 1}; the last checkpoint in {ckpt_path} "
                                 "is intact. Try a lower --lr.")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            optimizer.step()
            if ema is not None:
                ema.update(sam, step)
            step += 1
            dt = time.time() - t0
            train_seconds += dt
            step_time = dt if step_time is None else 0.9 * step_time + 0.1 * dt
            value = float(loss.detach())
            loss_ema = value if loss_ema is None else 0.98 * loss_ema + 0.02 * value
            log.append({"step": step, "loss": round(value, 5), "mask_loss": round(parts["mask_loss"], 5),
                        "iou_loss": round(parts["iou_loss"], 5), "lr": f"{lr:.3e}", "seconds": round(train_seconds, 2)})
            bar.update()
            bar.set_postfix(loss=f"{loss_ema:.4f}", lr=f"{lr:.1e}", s_step=f"{step_time:.2f}")
            if time.time() - last_ckpt >= args.checkpoint_minutes * 60 and step < cfg.total_steps:
                save(step)
                last_ckpt = time.time()
            if args.eval_val and time.time() - last_eval >= args.eval_minutes * 60 and step < cfg.total_steps:
                run_eval(step)
                last_eval = time.time()
        bar.close()
        pool.shutdown(wait=True, cancel_futures=True)
    run_eval(step)  # no-op without --eval-val
    save(step)
    done = "finished" if step >= cfg.total_steps else "stopped"
    print(f"{done} at step {step}/{cfg.total_steps}; {train_seconds / 60:.1f} min trained in total; "
          f"checkpoint {ckpt_path}" + (f"; weights {args.export}" if args.export else ""))
    if stop["signal"] is not None:
        return 128 + int(stop["signal"])
    return 0
