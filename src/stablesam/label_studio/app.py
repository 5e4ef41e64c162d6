"""The ML-backend protocol Label Studio speaks (Starlette, served by uvicorn like the demo).

  GET  /, /health   {"status": "UP", "model_class": ..., "model_version": ...}
  POST /setup       {project, schema, ...} -> {"model_version": ...} (the config is checked)
  POST /predict     {tasks, label_config, project, params: {context}} -> {"results": [...]}
  POST /webhook     {action, ...} -> accepted; Stable-SAM does not train from Label Studio
  GET  /versions    {"versions": [model_version]}
  GET  /metrics     {}

Bad input (a body that is not JSON, an unknown region type, a rotated box, an image that
cannot be fetched or read) is answered {"error": "one line"} with 400, 403 (a local path outside
--allow-dir) or 413 (over a size limit), and logged; the server keeps serving.
"""

import asyncio
import functools
import json
import logging
import threading
import time
from typing import Any, Awaitable, Callable, Dict

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..demo.app import HttpError, api, read_body
from ..data.images import InputError
from .config import parse_config, warm_up
from .engine import LabelStudioEngine
from .fetch import AccessError

MAX_REQUEST_BYTES = 32_000_000  # tasks carry their annotations (brush RLEs can be large)
DISCONNECT_POLL_S = 0.5  # how often a running /predict looks whether its client is still there
log = logging.getLogger("stablesam.label_studio")


def endpoint(handler: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    """The demo's JSON error handling (4xx one-line reasons, 500 for bugs), with each refusal
    logged: Label Studio shows only the status, the backend's log says why."""

    async def refused_403(request: Request) -> Any:
        try:
            return await handler(request)
        except AccessError as e:
            raise HttpError(403, str(e)) from None

    inner = api(refused_403)

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        response = await inner(request)
        if response.status_code >= 400:
            log.warning("%s %s -> %d %s", request.method, request.url.path, response.status_code,
                        bytes(response.body).decode("utf-8", "replace")[:300])
        return response

    return wrapped


async def json_object(request: Request) -> Dict[str, Any]:
    body = await read_body(request, MAX_REQUEST_BYTES, "request")
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        raise InputError("the request body is not JSON") from None
    if not isinstance(obj, dict):
        raise InputError("the request body must be a JSON object")
    return obj


async def until_disconnected(request: Request, work: Callable[..., Any], *args: Any) -> Any:
    """`work(*args, cancel)` in the thread pool; when the client goes away first, `cancel` is set
    (an image download stops at its next chunk) and the request ends without an answer."""
    cancel = threading.Event()
    task = asyncio.ensure_future(run_in_threadpool(work, *args, cancel))
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            cancel.set()
            log.warning("%s %s: the client went away; its work was abandoned", request.method, request.url.path)
            try:
                await task
            except Exception:
                pass
            raise HttpError(499, "the client went away")


def create_app(engine: LabelStudioEngine) -> Starlette:
    """The ASGI app of one engine (at `app.state.engine`)."""
    warm_up()

    async def health(request: Request) -> Dict[str, Any]:
        return {"status": "UP", "model_class": "StableSam", "model_version": engine.model_version}

    async def setup(request: Request) -> Dict[str, Any]:
        body = await json_object(request)
        await run_in_threadpool(parse_config, body.get("schema"))
        return {"model_version": engine.model_version}

    async def predict(request: Request) -> Dict[str, Any]:
        start = time.perf_counter()
        body = await json_object(request)
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise InputError("params must be an object")
        config = await run_in_threadpool(parse_config, body.get("label_config"))
        results = await until_disconnected(request, engine.predict, body.get("tasks"), config, params.get("context"))
        log.info("predict: %d task(s), %d region(s), %.0f ms", len(results),
                 sum(len(r["result"]) for r in results), (time.perf_counter() - start) * 1000)
        return {"results": results, "model_version": engine.model_version}

    async def webhook(request: Request) -> Dict[str, Any]:
        body = await json_object(request)
        action = body.get("action")
        if not isinstance(action, str):
            raise InputError("a webhook body needs an 'action'")
        return {"status": "accepted", "action": action[:100], "training": False,
                "reason": "Stable-SAM does not train from Label Studio; train plugins with stablesam train"}

    async def versions(request: Request) -> Dict[str, Any]:
        return {"versions": [engine.model_version]}

    async def metrics(request: Request) -> Dict[str, Any]:
        return {}

    app = Starlette(routes=[
        Route("/", endpoint(health)),
        Route("/health", endpoint(health)),
        Route("/setup", endpoint(setup), methods=["POST"]),
        Route("/predict", endpoint(predict), methods=["POST"]),
        Route("/webhook", endpoint(webhook), methods=["POST"]),
        Route("/versions", endpoint(versions)),
        Route("/metrics", endpoint(metrics)),
    ])
    app.state.engine = engine
    return app
