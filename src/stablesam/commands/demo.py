"""`stablesam demo`: the interactive page comparing SAM and Stable-SAM, served on one port."""

import argparse
from typing import Tuple

from ..demo.session import UploadLimits
from .common import UsageError, config_option, shown


def cmd_demo(args: argparse.Namespace) -> int:
    from ..models.spec import SpecError, build_sam_for

    limits = {"max_bytes": args.max_bytes, "max_pixels": args.max_pixels, "max_images": args.max_images}
    if any(v < 1 for v in limits.values()):
        raise UsageError("--max-bytes, --max-pixels and --max-images must be positive")
    try:
        spec, model = build_sam_for("demo", args.model, args.device, args.force)
    except SpecError as e:
        raise UsageError(str(e).splitlines()[0]) from None
    if not model.plugins_enabled:
        raise UsageError(f"{spec.text!r} has no plugin: the demo compares SAM with Stable-SAM; "
                         "give tiny-stable-sam or SPEC+plugin=PATH")
    from ..demo import bind, create_app, server, url

    app = create_app(model, model_name=spec.text, **limits)
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    print(f"stablesam demo: {spec.text} on {model.device}, open {url(sock)} (Ctrl+C stops)", flush=True)
    with sock:
        server(app, log_level="warning").run(sockets=[sock])
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..models.spec import DEFAULT_SPEC, SAM_ACCEPTED

    dm = sub.add_parser("demo", help="interactive page: draw a box or click, see SAM and Stable-SAM side by side",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=SAM_ACCEPTED)
    dm.add_argument("--model", default=DEFAULT_SPEC, metavar="SPEC",
                    help=f"a SAM with a plugin (default {DEFAULT_SPEC}); plain SAM is the same model with the plugins off")
    dm.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    dm.add_argument("--port", type=int, default=7860, help="default 7860")
    add_limit_options(dm, "largest upload in bytes (default {default} MB)")
    dm.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    dm.add_argument("--force-plugin", "--force", dest="force", action="store_true",
                       help="load a plugin file trained for another base (--force: the same)")
    dm.set_defaults(func=cmd_demo)


def add_limit_options(p: argparse.ArgumentParser, bytes_help: str,
                      order: Tuple[str, ...] = ("max_bytes", "max_pixels", "max_images")) -> None:
    """--max-bytes, --max-pixels, --max-images with UploadLimits' defaults (demo, label-studio)."""
    helps = {"max_bytes": bytes_help, "max_pixels": "largest image in pixels, width x height (default {default} MP)",
             "max_images": "image embeddings kept in memory, least recently used dropped first (default {default})"}
    for name in order:
        show = shown if name == "max_images" else (lambda v: f"{v / 1e6:.0f}")
        config_option(p, "--" + name.replace("_", "-"), UploadLimits, name, helps[name], show=show, type=int,
                      metavar="N")
