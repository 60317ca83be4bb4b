"""`humanseg serve`: person segmentation over HTTP (FastAPI on uvicorn) and the webcam page.

Endpoints: `POST /v1/segment` (a multipart `image` field, or the raw image as the body),
`GET /v1/models`, `GET /healthz`, the WebSocket `/v1/stream` the page sends camera frames over,
and `GET /` (the page). Bodies larger than `--max_bytes` and images with more than `--max_pixels`
pixels are refused before decoding; every refusal is a 4xx JSON `{"error": "..."}` naming what is
wrong, and the server keeps serving.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations (Request,
# WebSocket) as objects, and those classes are imported inside create_app, not at module level.
import argparse
import base64
import binascii
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from humanseg.deploy.api import PACKAGED_MODEL, load_predictor, resolve_backend
from humanseg.deploy.service import (
    FILE_FIELDS,
    OPTION_FIELDS,
    Limits,
    RequestError,
    SegmentOptions,
    ServedModel,
    browser_preprocessing,
    decode_image,
    json_answer,
    parse_options,
    segment,
)
from humanseg.errors import HumanSegError
from humanseg.weights import resolve_paths

if TYPE_CHECKING:  # FastAPI and Starlette are imported when a server is built, not by the CLI
    from fastapi import FastAPI
    from starlette.requests import Request

WEB_DIR = Path(__file__).resolve().parent / "web"
SETTINGS_ENV = "HUMANSEG_SERVE_SETTINGS"
# Multipart framing around the image(s) and option fields, allowed on top of --max_bytes.
MULTIPART_OVERHEAD = 64 * 1024
# Where `make web` puts onnxruntime-web's browser files (npm, not committed), from the repo root.
DEFAULT_ONNXRUNTIME_WEB = "node_modules/onnxruntime-web/dist"
ORT_SCRIPT = "ort.wasm.min.js"
EXPORT_TIMEOUT_S = 600
COMPILE_PHOTO_SIDE = 64  # the blank photo that makes `--compile` compile at start-up


class BrowserModel:
    """The served model as an ONNX file for the page's in-browser inference: the ONNX file the
    onnxruntime backend runs, else exported once (`humanseg export`, at the size the page
    preprocesses to) on first request into a folder that lives as long as the server."""

    def __init__(self, model: ServedModel, input_size: tuple[int, int]) -> None:
        """Nothing is exported until `path()` is first called."""
        self.model = model
        self.input_size = input_size
        self.lock = threading.Lock()
        self.folder: tempfile.TemporaryDirectory | None = None

    def path(self) -> Path:
        """The ONNX file (exporting it on the first call; later calls wait for that one)."""
        if self.model.backend == "onnxruntime":
            return self.model.predictor.forward.model_path
        with self.lock:
            if self.folder is None:
                folder = tempfile.TemporaryDirectory(prefix="humanseg-serve-")
                output = Path(folder.name) / f"{self.model.name}.onnx"
                height, width = self.input_size
                command = [sys.executable, "-m", "humanseg.cli", "export", "--config",
                           str(self.model.config_path), "--model_path",
                           str(self.model.model_path), "--input_size", str(height), str(width),
                           "--output", str(output)]
                try:
                    result = subprocess.run(command, capture_output=True, text=True,
                                            timeout=EXPORT_TIMEOUT_S)
                    failure = result.returncode != 0 and (
                        result.stderr.strip().splitlines() or ["no message"])[-1]
                except subprocess.TimeoutExpired:
                    failure = f"not done after {EXPORT_TIMEOUT_S} s"
                if failure:
                    folder.cleanup()
                    raise RequestError(503, f"exporting {self.model.name} for the page failed: "
                                            f"{failure}")
                self.folder = folder
            return Path(self.folder.name) / f"{self.model.name}.onnx"


@dataclass(frozen=True)
class ServeSettings:
    """Everything a server process needs to build its app (JSON-able, for worker processes)."""

    model: str | None = None
    config: str | None = None
    model_path: str | None = None
    backend: str = "auto"
    threads: int = 1
    max_bytes: int = Limits.max_bytes
    max_pixels: int = Limits.max_pixels
    onnxruntime_web: str | None = DEFAULT_ONNXRUNTIME_WEB
    compile: bool = False  # torch.compile the torch backend's model (see load_predictor)


def load_model(settings: ServeSettings) -> ServedModel:
    """The one served model: the packaged one by name, or `--config` + `--model_path` under the
    model file's stem."""
    if settings.model is not None and (settings.config or settings.model_path):
        raise HumanSegError("give --model NAME or --config with --model_path, not both")
    if settings.model not in (None, PACKAGED_MODEL):
        raise HumanSegError(f"--model {settings.model!r}: unknown; available: {PACKAGED_MODEL} "
                            "(or --config C --model_path P)")
    config_path, model_path = resolve_paths(settings.config, settings.model_path)
    name = PACKAGED_MODEL if settings.config is None else model_path.stem
    backend = resolve_backend(settings.backend, config_path, model_path,
                              compile=settings.compile)
    if backend == "torch":
        import torch

        torch.set_num_threads(settings.threads)
    predictor = load_predictor(model_path, config_path, backend,
                               compile=settings.compile).predictor
    if settings.compile:  # compile now, at start-up, rather than during the first request
        predictor.infer(np.zeros((COMPILE_PHOTO_SIDE, COMPILE_PHOTO_SIDE, 3), np.uint8))
    return ServedModel(name, backend, config_path, model_path, predictor)


def create_app(model: ServedModel, limits: Limits, onnxruntime_web: Path | None = None,
               ) -> "FastAPI":
    """The FastAPI application serving `model` within `limits`; with onnxruntime-web's files in
    `onnxruntime_web`, the page can also run the model itself."""
    from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    app = FastAPI(title="humanseg", docs_url=None, redoc_url=None)
    models = {model.name: model}
    browser, unavailable = browser_preprocessing(model.config_path)
    if onnxruntime_web is None or not (onnxruntime_web / ORT_SCRIPT).is_file():
        browser, unavailable = None, ("onnxruntime-web not found on the server "
                                      "(--onnxruntime_web; make web installs it from npm)")
    browser_model = None
    if browser is not None:
        app.mount("/static/ort", StaticFiles(directory=onnxruntime_web), name="onnxruntime-web")
        browser_model = BrowserModel(model, tuple(browser["input_size"]))
        browser = {**browser, "onnx": f"/v1/models/{model.name}/model.onnx",
                   "runtime": f"/static/ort/{ORT_SCRIPT}"}

    def pick_model(name: str | None) -> ServedModel:
        """The requested model (default: the served one), or a 404 listing those served."""
        if name is None or name in models:
            return models[name or model.name]
        raise RequestError(404, f"model={name!r}: unknown; served: {', '.join(models)}")

    @app.exception_handler(RequestError)
    async def refused(_request: Request, error: RequestError) -> JSONResponse:
        """Every refusal as a JSON body with its 4xx status."""
        return JSONResponse({"error": str(error)}, status_code=error.status)

    @app.exception_handler(HumanSegError)
    async def failed(_request: Request, error: HumanSegError) -> JSONResponse:
        """A model-side failure on an accepted image, as a 422 with its one-line message."""
        return JSONResponse({"error": str(error)}, status_code=422)

    @app.get("/healthz")
    async def healthz() -> dict[str, object]:
        """Liveness: the server answers and has its model loaded."""
        return {"status": "ok", "models": list(models)}

    @app.get("/v1/models")
    async def list_models() -> dict[str, object]:
        """The served models and their limits."""
        return {"models": [served.describe() for served in models.values()],
                "default": model.name, "limits": asdict(limits),
                "browser": browser, "browser_unavailable": unavailable or None}

    @app.get("/v1/models/{name}/model.onnx")
    async def browser_onnx(name: str) -> FileResponse:
        """The model as ONNX for in-browser inference (404 where the page cannot run it)."""
        pick_model(name)
        if browser_model is None:
            raise RequestError(404, f"in-browser inference unavailable: {unavailable}")
        path = await run_in_threadpool(browser_model.path)
        return FileResponse(path, media_type="application/octet-stream")

    @app.get("/")
    async def page() -> FileResponse:
        """The webcam / photo page."""
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/static/app.js")
    async def script() -> FileResponse:
        """The page's script."""
        return FileResponse(WEB_DIR / "app.js", media_type="text/javascript")

    @app.post("/v1/segment")
    async def segment_endpoint(request: Request) -> Response:
        """Segment one image: multipart fields or the raw body, options in fields or query."""
        body = await read_body(request, limits.max_bytes + MULTIPART_OVERHEAD)
        options = dict(request.query_params)
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            uploads = await read_multipart(request, body, options)
        else:
            uploads = {"image": body}
        return await run_in_threadpool(answer, uploads, options)

    def answer(uploads: dict[str, bytes], options: dict[str, str]) -> Response:
        """Decode, segment and encode (on a worker thread: the event loop keeps serving)."""
        if "image" not in uploads:
            raise RequestError(422, "missing file field 'image'")
        image = decode_image(uploads["image"], "image", limits)
        backdrop = uploads.get("background_image")
        backdrop_image = None if backdrop is None else decode_image(
            backdrop, "background_image", limits)
        choice = parse_options(options, backdrop_image)
        served = pick_model(choice.model)
        result = segment(served.predictor, image, choice)
        if choice.format == "json":
            return JSONResponse(json_answer(result, served.name, choice, image.shape))
        headers = {"X-Person-Fraction": f"{result.person_fraction:.6f}", "X-Model": served.name}
        return Response(result.content, media_type=result.media_type, headers=headers)

    def stream_frame(data: bytes, choice: SegmentOptions) -> bytes:
        """One camera frame composited as `choice` says (on a worker thread)."""
        frame = decode_image(data, "frame", limits)
        return segment(pick_model(choice.model).predictor, frame, choice).content

    @app.websocket("/v1/stream")
    async def stream(socket: WebSocket) -> None:
        """Camera frames in (binary, JPEG or PNG), composited frames out (JPEG). A text message
        `{"background": "blur" | "#RRGGBB" | "image", "image_base64": ...}` changes the settings;
        every message gets one answer, errors as `{"error": ..., "for": "frame" | "settings"}`."""
        await socket.accept()
        choice = SegmentOptions(output="composite", format="jpeg")
        try:
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    if message.get("text") is not None:
                        choice = await run_in_threadpool(stream_settings, message["text"], limits)
                        pick_model(choice.model)
                        await socket.send_json({"settings": "ok"})
                        continue
                    data = message.get("bytes") or b""
                    await socket.send_bytes(await run_in_threadpool(stream_frame, data, choice))
                except HumanSegError as error:
                    kind = "settings" if message.get("text") is not None else "frame"
                    await socket.send_json({"error": str(error), "for": kind})
        except WebSocketDisconnect:
            return

    return app


def stream_settings(text: str, limits: Limits) -> SegmentOptions:
    """The WebSocket settings message: JSON with `background`, optional `image_base64` (the
    background picture), `output`, `format` and `model` (composite JPEG by default)."""
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as error:
        raise RequestError(400, f"settings message is not JSON ({error})") from None
    if not isinstance(settings, dict):
        raise RequestError(422, "settings message must be a JSON object")
    encoded = settings.pop("image_base64", None)
    backdrop = None
    if encoded is not None:
        try:
            raw = base64.b64decode(str(encoded), validate=True)
        except binascii.Error:
            raise RequestError(422, "image_base64: not valid base64") from None
        backdrop = decode_image(raw, "image_base64", limits)
    options = {"output": "composite", "format": "jpeg",
               **{key: str(value) for key, value in settings.items()}}
    return parse_options(options, backdrop)


async def read_body(request: "Request", limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it exceeds `limit` bytes (the declared
    Content-Length first, so an oversized upload is refused before it is read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, f"request body is {declared} bytes, limit {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_multipart(request: "Request", body: bytes, options: dict[str, str],
                         ) -> dict[str, bytes]:
    """Parse a multipart body already read (within the limit): file fields are returned, text
    fields go into `options` (a field given twice, or a text field as a file, is refused)."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    async def replay() -> dict[str, object]:
        """The ASGI receive of a request whose body has already been read."""
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=len(FILE_FIELDS))
    except Exception as error:  # starlette raises its own and python-multipart's parse errors
        raise RequestError(400, f"malformed multipart body ({error})") from None
    uploads: dict[str, bytes] = {}
    for key, value in form.multi_items():
        if key not in FILE_FIELDS + OPTION_FIELDS:
            raise RequestError(422, f"unknown field {key!r}: expected "
                                    f"{', '.join(FILE_FIELDS + OPTION_FIELDS)}")
        if key in uploads or (key in options and key not in FILE_FIELDS):
            raise RequestError(422, f"field {key!r} given more than once")
        if isinstance(value, UploadFile):
            if key not in FILE_FIELDS:
                raise RequestError(422, f"field {key!r} must be a text field, not a file")
            uploads[key] = await value.read()
        elif key in FILE_FIELDS:
            raise RequestError(422, f"field {key!r} must be a file upload, not text")
        else:
            options[key] = value
    return uploads


def app_from_environment() -> "FastAPI":
    """The app of one uvicorn worker process, from the settings the parent put in the
    environment (`uvicorn.run(..., factory=True, workers=N)`)."""
    settings = ServeSettings(**json.loads(os.environ[SETTINGS_ENV]))
    return build_app(settings)


def build_app(settings: ServeSettings) -> "FastAPI":
    """Load the model (torch on `settings.threads` threads) and wrap it in the app."""
    web = None if settings.onnxruntime_web is None else Path(settings.onnxruntime_web)
    return create_app(load_model(settings), Limits(settings.max_bytes, settings.max_pixels), web)


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def free_loopback_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_server(options: Sequence[str] = (), timeout: float = 120.0,
                   ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start `humanseg serve` on a free loopback port in a subprocess (for tests and the load
    benchmark), wait until /healthz answers, yield (base URL, process), stop it afterwards."""
    port = free_loopback_port()
    command = [sys.executable, "-m", "humanseg.cli", "serve", "--port", str(port), *options]
    base = f"http://127.0.0.1:{port}"
    # The log goes to a file, not a pipe: a pipe nobody reads would block the server when full.
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            wait_until_healthy(base, process, log, timeout)
            yield base, process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_healthy(base: str, process: subprocess.Popen, log: IO[str],
                       timeout: float) -> None:
    """Poll `base`/healthz until it answers; the server's log in the error if it dies first."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise HumanSegError(f"humanseg serve exited with {process.returncode}: "
                                f"{log.read().strip()}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise HumanSegError(f"humanseg serve not up after {timeout:.0f} s") from None
            time.sleep(0.2)
