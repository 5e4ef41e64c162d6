"""The demo's web app: one static page plus a small JSON API (Starlette, served by uvicorn).

API (errors are {"error": "one line"} with a 4xx status; the server keeps serving):
  GET  /                        the page (all assets from the package: works offline)
  GET  /api/config              model, limits, example names
  POST /api/images              raw image bytes as the body -> {image_id, width, height, ...}
  GET  /api/examples/NAME       a shipped example image;  POST: load it as if uploaded
  GET  /api/images/ID.jpg       the decoded image the model sees (EXIF orientation applied)
  POST /api/predict             {image_id, box, points, multimask} -> both models' masks, IoU, α, Δp
  POST /api/wobble              {image_id, box, points, k, scale, seed} -> heat maps, stability
  POST /api/worst-box           {image_id, box, scale, seed, budget} -> each model's worst box near the
                                drawn one, its mask and IoU with the other model's mask on the drawn box
"""

import functools
import json
import logging
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, Tuple
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..models.embedded import EXAMPLES_DIR
from ..modeling import StableSam
from ..data.images import MAX_PIXELS, InputError, LimitError
from ..limits import SEED
from .engine import MAX_POINTS, MAX_WOBBLE, DemoEngine, Prompt, number, parse_prompt
from .session import ImageStore, StoredImage, UploadLimits, sizes
from .worst_box import DEMO_BUDGET, MAX_BUDGET, worst_boxes

if TYPE_CHECKING:
    import uvicorn

STATIC_DIR = Path(__file__).parent / "static"
MAX_BYTES = UploadLimits.max_bytes
MAX_IMAGES = UploadLimits.max_images
MAX_JSON_BYTES = 64_000
WOBBLE_K, WOBBLE_SCALE = 10, 0.3
log = logging.getLogger("stablesam.demo")


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def examples() -> Dict[str, Path]:
    return {p.name: p for p in sorted(EXAMPLES_DIR.glob("*.jpg"))}


def api(handler: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """JSON in/out; bad input -> {"error": ...} with 400/404/413, anything else -> 500."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            result = await handler(request)
            return result if isinstance(result, Response) else JSONResponse(result)
        except HttpError as e:
            return JSONResponse({"error": str(e)}, status_code=e.status)
        except LimitError as e:
            return JSONResponse({"error": str(e)}, status_code=413)
        except InputError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        except Exception as e:  # a bug must not take the server down for everyone
            log.exception("demo request failed")
            return JSONResponse({"error": f"internal error ({type(e).__name__}: {e})"}, status_code=500)

    return wrapped


async def read_body(request: Request, limit: int, what: str, hint: str = "") -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        size, limit_text = sizes(int(declared), limit)
        raise LimitError(f"the {what} is {size}; the limit is {limit_text}{hint}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise LimitError(f"the {what} is over the limit of {sizes(size, limit)[1]}{hint}")
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    model: StableSam,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    max_images: int = MAX_IMAGES,
    model_name: str = "",
) -> Starlette:
    """The ASGI app for one Stable-SAM model (a StableSam with a plugin; plain SAM is the same
    model with `plugins_enabled = False`). The engine is at `app.state.engine`."""
    if max_bytes < 1 or max_pixels < 1:
        raise ValueError("max_bytes and max_pixels must be positive")
    engine = DemoEngine(model, ImageStore(max_images))

    def image_info(item: StoredImage, encoder_ms: float) -> Dict[str, Any]:
        return {"image_id": item.id, "name": item.name, "width": item.width, "height": item.height,
                "url": f"/api/images/{item.id}.jpg", "encoder_ms": round(encoder_ms, 1), "stored": encoder_ms == 0}

    def stored(image_id: Any) -> StoredImage:
        item = engine.store.get(image_id) if isinstance(image_id, str) else None
        if item is None:
            raise HttpError(404, f"unknown image id {str(image_id)[:40]!r}: the server keeps the last "
                                 f"{engine.store.max_items} images; upload the image again")
        return item

    async def json_body(request: Request) -> Dict[str, Any]:
        body = await read_body(request, MAX_JSON_BYTES, "request")
        try:
            obj = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            raise InputError("the request body is not JSON") from None
        if not isinstance(obj, dict):
            raise InputError("the request body must be a JSON object")
        return obj

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @api
    async def config(request: Request) -> Dict[str, Any]:
        return {"model": model_name, "device": str(model.device), "grid": list(engine.grid),
                "img_size": model.backend.image_size(model.sam), "max_bytes": max_bytes, "max_pixels": max_pixels,
                "max_images": max_images, "max_points": MAX_POINTS, "max_wobble": MAX_WOBBLE,
                "wobble": {"k": WOBBLE_K, "scale": WOBBLE_SCALE, "seed": 0}, "examples": list(examples())}

    @api
    async def upload(request: Request) -> Dict[str, Any]:
        data = await read_body(request, max_bytes, "file", " (stablesam demo --max-bytes)")
        name = unquote(request.headers.get("x-filename", "upload"))[:200] or "upload"
        item, ms = await run_in_threadpool(engine.add_image, data, name, max_bytes, max_pixels)
        return image_info(item, ms)

    @api
    async def example(request: Request) -> Any:
        path = examples().get(request.path_params["name"])
        if path is None:
            raise HttpError(404, f"no example {request.path_params['name']!r}; examples: {', '.join(examples())}")
        if request.method == "GET":
            return FileResponse(path, media_type="image/jpeg")
        item, ms = await run_in_threadpool(engine.add_image, path.read_bytes(), path.name, max_bytes, max_pixels)
        return image_info(item, ms)

    @api
    async def image(request: Request) -> Response:
        item = stored(request.path_params["image_id"])
        return Response(item.jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def prompt_request(request: Request) -> Tuple[Dict[str, Any], StoredImage, Prompt]:
        """The JSON body of a predict/wobble request, its stored image and its checked prompt."""
        body = await json_body(request)
        item = stored(body.get("image_id"))
        return body, item, parse_prompt(body, item.width, item.height)

    @api
    async def predict(request: Request) -> Dict[str, Any]:
        start = time.perf_counter()
        body, item, prompt = await prompt_request(request)
        multimask = body.get("multimask", False)
        if not isinstance(multimask, bool):
            raise InputError(f"multimask must be true or false, got {str(multimask)[:40]!r}")
        out = await run_in_threadpool(engine.predict, item, prompt, multimask)
        out["ms"] = round((time.perf_counter() - start) * 1000, 1)
        return out

    @api
    async def wobble(request: Request) -> Dict[str, Any]:
        start = time.perf_counter()
        body, item, prompt = await prompt_request(request)
        k = body.get("k", WOBBLE_K)
        if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= MAX_WOBBLE:
            raise InputError(f"k (noisy prompts) must be an integer in 2..{MAX_WOBBLE}")
        scale = number(body.get("scale", WOBBLE_SCALE), "noise scale")
        if not 0 <= scale <= 1:
            raise InputError("noise scale must be in 0..1")
        seed = SEED.check(body.get("seed", 0), "seed")
        out = await run_in_threadpool(engine.wobble, item, prompt, k, scale, seed)
        out["ms"] = round((time.perf_counter() - start) * 1000, 1)
        return out

    @api
    async def worst_box(request: Request) -> Dict[str, Any]:
        start = time.perf_counter()
        body, item, prompt = await prompt_request(request)
        if prompt.box is None or len(prompt.points):
            raise InputError("the worst-box search takes a drawn box alone (no clicks)")
        scale = number(body.get("scale", WOBBLE_SCALE), "noise scale")
        if not 0 <= scale <= 1:
            raise InputError("noise scale must be in 0..1")
        seed, budget = SEED.check(body.get("seed", 0), "seed"), body.get("budget", DEMO_BUDGET)
        if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= MAX_BUDGET:
            raise InputError(f"budget (decoder passes per model) must be an integer in 1..{MAX_BUDGET}")
        out = await run_in_threadpool(worst_boxes, engine, item, prompt.box, scale, budget, seed)
        out["ms"] = round((time.perf_counter() - start) * 1000, 1)
        return out

    app = Starlette(routes=[
        Route("/", index),
        Route("/api/config", config),
        Route("/api/images", upload, methods=["POST"]),
        Route("/api/images/{image_id}.jpg", image),
        Route("/api/examples/{name}", example, methods=["GET", "POST"]),
        Route("/api/predict", predict, methods=["POST"]),
        Route("/api/wobble", wobble, methods=["POST"]),
        Route("/api/worst-box", worst_box, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ])
    app.state.engine = engine
    return app


def bind(host: str = "127.0.0.1", port: int = 7860) -> socket.socket:
    """A listening TCP socket (port 0: a free one); OSError if the address is taken or invalid."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"


def server(app: Starlette, log_level: str = "info") -> "uvicorn.Server":
    """A uvicorn server for the app; run it with `.run(sockets=[bind(...)])`, stop it with
    `.should_exit = True` (tests run it in a thread)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=False))
