"""`annotate`'s run: read the boxes, resume the journal, run the images not yet done on an engine
with a progress bar, then write OUT.json (COCO instances, input order) in one atomic rename."""

import json
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, Dict, Iterator, List, Optional

from .. import __version__
from ..data.images import InputError
from ..fileio import atomic_write, check_new_file, check_output_folder, check_writable
from .inputs import Job, Problems, read_job
from .journal import Journal, fingerprint
from .worker import check_task, image_size


@dataclass
class AnnotateOptions:
    """What `stablesam annotate` takes (its options, one for one)."""

    images: Path
    boxes: Path
    out: Path
    model: str = "tiny-stable-sam"
    min_score: Optional[float] = None
    image_info: Optional[Path] = None
    workers: int = 1
    engine: str = "local"  # local | ray
    ray_address: Optional[str] = None
    masks_dir: Optional[Path] = None
    strict: bool = False
    device: Optional[str] = None
    force: bool = False  # replace an existing OUT.json, write into a non-empty --masks-dir
    progress: bool = True


@dataclass
class Summary:
    images: int  # images in OUT.json
    objects: int  # annotations in OUT.json
    skipped: Dict[str, int]  # bad inputs by reason
    seconds: float  # this run's time on images
    run_images: int  # images this run did (the rest came from the journal)
    run_objects: int


def check_options(opts: AnnotateOptions) -> None:
    """Refuse bad options and outputs before any work."""
    if opts.out.suffix.lower() != ".json":
        raise InputError(f"--out {opts.out}: give a .json file name (COCO instances)")
    if opts.out.is_dir():
        raise InputError(f"--out {opts.out} is a folder; give a file name")
    for other in (opts.boxes, opts.image_info):
        if other is not None and opts.out.resolve() == Path(other).resolve():
            raise InputError(f"--out {opts.out} is an input; it would be overwritten")
    check_writable(opts.out, "--out")
    if opts.workers < 1:
        raise InputError(f"--workers {opts.workers}: must be at least 1")
    if opts.min_score is not None and not (opts.min_score == opts.min_score):
        raise InputError("--min-score must be a number")
    if opts.engine not in ("local", "ray"):
        raise InputError(f"--engine {opts.engine}: local or ray")
    if opts.ray_address and opts.engine != "ray":
        raise InputError("--ray-address needs --engine ray")


def check_model(text: str) -> None:
    """A model SPEC that cannot be built is an InputError before any work (files must exist)."""
    from ..models.spec import SpecError, parse_model_spec

    try:
        spec = parse_model_spec(text)
    except SpecError as e:
        raise InputError(str(e).splitlines()[0]) from None
    if spec.base == "grabcut":
        raise InputError("grabcut is a benchmark peer (stablesam eval); annotate takes a SAM model SPEC")


def job_fingerprint(opts: AnnotateOptions) -> Dict[str, Any]:
    """What decides OUT.json: a rerun resumes only a journal with the same fingerprint."""
    parts = dict(images=str(opts.images.resolve()), model=opts.model, min_score=opts.min_score,
                 masks_dir=None if opts.masks_dir is None else str(opts.masks_dir.resolve()), version=__version__)
    return fingerprint(parts, [p for p in (opts.boxes, opts.image_info) if p is not None])


def precheck(tasks: List[Dict[str, Any]], problems: Problems) -> None:
    """--strict: every image header and box checked before the model runs (a bad one raises)."""
    for task in tasks:
        try:
            size = image_size(task["path"])
        except InputError as e:
            reason = "unreadable image" if Path(task["path"]).exists() else "missing image"
            problems.add(f"image {task['file_name']}", reason, str(e))
            continue
        for problem in check_task(task, size)[1]:
            problems.add(*problem)


def mask_path(masks_dir: Path, file_name: str) -> Path:
    """--masks-dir's PNG for an image: its file_name's relative path, suffix .png."""
    parts = [p for p in PurePosixPath(file_name.replace("\\", "/")).parts if p not in ("/", "..", ".")]
    return masks_dir.joinpath(*parts).with_suffix(".png")


def results(opts: AnnotateOptions, tasks: List[Dict[str, Any]]) -> Iterator:
    from .engines import local_results, ray_results

    with_png = opts.masks_dir is not None
    if opts.engine == "ray":
        return ray_results(tasks, opts.model, opts.device, with_png, opts.workers, opts.ray_address)
    return local_results(tasks, opts.model, opts.device, with_png, opts.workers)


def run_annotate(opts: AnnotateOptions) -> Summary:
    """The whole command: InputError for bad input (with --strict, for any bad box or image:
    then nothing is written)."""
    from tqdm import tqdm

    check_options(opts)
    check_model(opts.model)
    if opts.engine == "ray":
        from .engines import import_ray

        import_ray()
    problems = Problems(opts.strict)
    job = read_job(opts.boxes, opts.images, opts.image_info, opts.min_score, problems)
    journal = Journal(opts.out)
    resuming = journal.folder.exists()  # its own earlier run: OUT.json and --masks-dir files are its own
    if not resuming:
        check_new_file(opts.out, "--out", opts.force)
    if opts.masks_dir is not None:
        check_output_folder(opts.masks_dir, "--masks-dir", opts.force or resuming,
                            " (or rerun an unfinished run's command)")
    todo = [t.to_dict() for t in job.tasks]
    if opts.strict:
        precheck(todo, problems)
    parse_counts = dict(problems.counts)  # found in the boxes file itself (every run finds them again)
    journal.open(job_fingerprint(opts))
    todo = [t for t in todo if t["image_id"] not in journal]
    start, done_objects = time.monotonic(), journal.objects
    bar = tqdm(total=len(job.tasks), initial=len(job.tasks) - len(todo), unit="img", desc="annotate",
               disable=not opts.progress or None, smoothing=0.1)
    stream = results(opts, todo) if todo else iter(())
    written: List[Path] = []  # PNGs this run created (removed again when --strict stops a new run)
    try:
        for result, png in stream:
            for problem in result["problems"]:
                problems.add(*problem)  # --strict: raises
            if png is not None:
                path = mask_path(opts.masks_dir, result["file_name"])
                if not path.exists():  # only what this run creates is removed again (--force may replace)
                    written.append(path)
                atomic_write(path, lambda f, b=png: f.write(b))
            journal.append(result)
            bar.update(1)
            bar.set_postfix_str(f"{(journal.objects - done_objects) / max(time.monotonic() - start, 1e-9):.1f} obj/s")
    except InputError:
        close(stream)
        if journal.created:
            journal.remove()
            for path in written:
                path.unlink(missing_ok=True)
        raise
    finally:
        bar.close()
        close(stream)
        journal.close()
    seconds = time.monotonic() - start
    skipped = dict(parse_counts)
    for reason, n in journal.problems.items():
        skipped[reason] = skipped.get(reason, 0) + n
    images = write_output(opts, job, journal, skipped)
    summary = Summary(images, journal.objects, skipped, seconds, len(todo), journal.objects - done_objects)
    journal.remove()
    return summary


def close(stream: Iterator) -> None:
    """Stop an engine's generator (its pool or Ray shuts down)."""
    if hasattr(stream, "close"):
        stream.close()


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def write_output(opts: AnnotateOptions, job: Job, journal: Journal, skipped: Dict[str, int]) -> int:
    """OUT.json from the journal, streamed in input order (one image's results in memory at a
    time) into a temporary file that is renamed into place; returns the number of images."""
    meta = {"model": opts.model, "boxes": job.kind, "min_score": opts.min_score, "version": __version__,
            "skipped": dict(sorted(skipped.items()))}
    count = [0]

    def write(f: IO[bytes]) -> None:
        def put(text: str) -> None:
            f.write(text.encode())

        put("{")
        for key, value in job.header.items():
            if key != "categories":
                put(f"{dump(key)}:{dump(value)},")
        put('"images":[')
        first = True
        if job.images is not None:
            for image in job.images:
                put(("" if first else ",") + dump(image))
                first = False
            count[0] = len(job.images)
        else:
            for task in job.tasks:
                result = journal.read(task.image_id)
                if result is not None and result["width"] is not None:
                    put(("" if first else ",") + dump({"id": task.image_id, "file_name": task.file_name,
                                                       "width": result["width"], "height": result["height"]}))
                    first = False
                    count[0] += 1
        put('],"annotations":[')
        first = True
        for task in job.tasks:
            result = journal.read(task.image_id)
            for ann in result["annotations"] if result is not None else ():
                put(("" if first else ",") + dump(ann))
                first = False
        put(f'],"categories":{dump(job.categories)},"stablesam":{dump(meta)}}}\n')

    atomic_write(opts.out, write)
    return count[0]
