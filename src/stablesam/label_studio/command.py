"""`stablesam label-studio`: its options and the server it starts."""

import argparse
import logging

from ..commands.common import input_errors_as_usage
from ..commands.demo import add_limit_options
from ..data.images import InputError

DEFAULT_PORT = 9090  # Label Studio's ML backends' usual port


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..models.spec import DEFAULT_SPEC

    p.add_argument("--model", default=DEFAULT_SPEC, metavar="SPEC", help=f"default {DEFAULT_SPEC}")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--allow-dir", action="append", default=[], metavar="DIR",
                   help="tasks may name local image files under DIR (repeatable; default: none, URLs only)")
    p.add_argument("--negative-label", default="Background", metavar="LABEL",
                   help="a KeyPointLabels click with this label is a background click (default Background)")
    add_limit_options(p, "largest image file to fetch, in bytes (default {default} MB)",
                      ("max_pixels", "max_bytes", "max_images"))
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--force-plugin", "--force", dest="force", action="store_true",
                      help="load a plugin file trained for another base (--force: the same)")


def run_label_studio(args: argparse.Namespace) -> int:
    """Build the model and serve until Ctrl+C; bad options are InputError (one line)."""
    from pathlib import Path

    from ..modeling.family import MissingExtra
    from ..demo import bind, server, url
    from ..models.spec import SpecError, build_sam_for
    from .app import create_app
    from .config import require_sdk
    from .engine import LabelStudioEngine
    from .fetch import ImageFetcher
    from .version import model_version

    if min(args.max_pixels, args.max_bytes, args.max_images) < 1:
        raise InputError("--max-pixels, --max-bytes and --max-images must be positive")
    for d in args.allow_dir:
        if not Path(d).is_dir():
            raise InputError(f"--allow-dir {d}: not a folder")
    try:
        require_sdk()
        fetcher = ImageFetcher.from_env(args.allow_dir, args.max_bytes)
    except (MissingExtra, ValueError) as e:
        raise InputError(str(e)) from None
    try:
        spec, model = build_sam_for("label-studio", args.model, args.device, args.force)
    except SpecError as e:
        raise InputError(str(e).splitlines()[0]) from None
    engine = LabelStudioEngine(model, model_version(spec), fetcher, args.max_pixels, args.max_images,
                               args.negative_label)
    app = create_app(engine)
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        raise InputError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("stablesam label-studio: %(message)s"))
    logger = logging.getLogger("stablesam.label_studio")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    where = f"Label Studio files from {fetcher.base}" if fetcher.base else "no LABEL_STUDIO_URL (URLs and --allow-dir only)"
    print(f"stablesam label-studio: {engine.model_version} on {model.device}, {where}; "
          f"connect {url(sock)} in Label Studio (Ctrl+C stops)", flush=True)
    with sock:
        server(app, log_level="warning").run(sockets=[sock])
    fetcher.close()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..models.spec import SAM_ACCEPTED

    ls = sub.add_parser("label-studio", help="Label Studio ML backend: masks from boxes and clicks, interactive",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SAM_ACCEPTED)
    add_arguments(ls)
    ls.set_defaults(func=input_errors_as_usage(run_label_studio))
