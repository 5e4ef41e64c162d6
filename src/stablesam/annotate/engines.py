"""Where `annotate`'s images run: this process, N local processes (one model each, images handed
out one at a time), or a Ray cluster (Ray Data `map_batches` with a pool of actors, one model per
actor, a GPU per actor when the cluster has GPUs). Each engine yields (result, png) per image in
the order they finish; the journal puts them in input order."""

import json
import multiprocessing
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..data.images import InputError
from .worker import Annotator

Result = Tuple[Dict[str, Any], Optional[bytes]]
_ANNOTATOR: Optional[Annotator] = None  # the model of a local worker process


def local_results(tasks: List[Dict[str, Any]], model: str, device: Optional[str], with_png: bool,
                  workers: int = 1) -> Iterator[Result]:
    """This process (workers=1) or `workers` spawned processes, each with its own model."""
    if workers == 1:
        annotator = Annotator(model, device, with_png)
        for task in tasks:
            yield annotator.annotate(task)
        return
    threads = None if "OMP_NUM_THREADS" in os.environ else max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's threads
    with ctx.Pool(workers, initializer=_start_worker, initargs=(model, device, with_png, threads)) as pool:
        yield from pool.imap_unordered(_annotate, tasks, chunksize=1)


def _start_worker(model: str, device: Optional[str], with_png: bool, threads: Optional[int]) -> None:
    global _ANNOTATOR
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    _ANNOTATOR = Annotator(model, device, with_png)


def _annotate(task: Dict[str, Any]) -> Result:
    return _ANNOTATOR.annotate(task)


class RayAnnotator:
    """A Ray Data actor: one model; a batch of JSON tasks -> their JSON results and PNGs."""

    def __init__(self, model: str, device: Optional[str], with_png: bool) -> None:
        self.annotator = Annotator(model, device, with_png)

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, list]:
        results, pngs = [], []
        for text in batch["task"]:
            result, png = self.annotator.annotate(json.loads(text))
            results.append(json.dumps(result))
            pngs.append(png or b"")
        return {"result": results, "png": pngs, "pid": [os.getpid()] * len(results)}


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise InputError('--engine ray needs the [ray] extra: pip install "stable-segment-anything[ray]"') from None
    return ray


def ray_results(tasks: List[Dict[str, Any]], model: str, device: Optional[str], with_png: bool,
                workers: int = 1, address: Optional[str] = None) -> Iterator[Result]:
    """The same work on a Ray cluster: `address` (default: a new local one with `workers` CPUs).
    Image paths (and --masks-dir, written here) must be the same on every node."""
    ray = import_ray()
    started = not ray.is_initialized()
    pids = set()  # the actors' processes: a local cluster is gone only when they are
    if started:
        try:
            ray.init(address=address or "local", num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"--ray-address {address}" if address else "a local Ray cluster"
            raise InputError(f"{where}: cannot connect ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # annotate's own bar counts images and objects
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        blocks = max(1, min(len(tasks), 1000))
        ds = ray.data.from_items([{"task": json.dumps(t)} for t in tasks], override_num_blocks=blocks)
        ds = ds.map_batches(RayAnnotator, fn_constructor_kwargs=dict(model=model, device=device or (
            "cuda" if gpus else "cpu"), with_png=with_png), batch_size=1, concurrency=workers,
            num_cpus=1, num_gpus=1 if gpus else 0, batch_format="numpy")
        for row in ds.iter_rows():
            pids.add(int(row["pid"]))
            yield json.loads(row["result"]), (bytes(row["png"]) or None)
    finally:
        if started:
            ray.shutdown()
            if not address:
                wait_for_exit(pids)


def wait_for_exit(pids: set, timeout: float = 30.0) -> None:
    """Wait until the processes `pids` (a local cluster's actors, after ray.shutdown) are gone."""
    import time

    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        for pid in list(pids):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pids.discard(pid)
            except PermissionError:
                pass
        if pids:
            time.sleep(0.1)
