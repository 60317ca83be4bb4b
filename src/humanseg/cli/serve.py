"""`humanseg serve`: person segmentation over HTTP (FastAPI on uvicorn) and the webcam page
(`humanseg.deploy.serve`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict

from humanseg.cli.options import add_backend, add_compile
from humanseg.deploy.api import PACKAGED_MODEL
from humanseg.deploy.serve import (
    DEFAULT_ONNXRUNTIME_WEB,
    MULTIPART_OVERHEAD,
    SETTINGS_ENV,
    ServeSettings,
    build_app,
    is_loopback,
    positive,
)
from humanseg.deploy.service import Limits


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg serve`."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default loopback; anything else exposes the "
                             "service to the network)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port to listen on")
    parser.add_argument("--model", help=f"a named model: {PACKAGED_MODEL} (the packaged one, "
                                        "used when nothing is given)")
    parser.add_argument("--config", help="config of another model (with --model_path)")
    parser.add_argument("--model_path", help="model.pt, or an exported model.onnx")
    add_backend(parser, "inference engine; auto: onnxruntime for a .onnx file and for the "
                        "packaged model, else torch (onnxruntime exports another .pt model once, "
                        "cached)")
    add_compile(parser)
    parser.add_argument("--workers", type=positive, default=1, help="server processes")
    parser.add_argument("--threads", type=positive, default=1,
                        help="torch CPU threads per process (onnxruntime uses 2)")
    parser.add_argument("--max_bytes", type=positive, default=Limits.max_bytes,
                        help="largest image in bytes (a request body may add 64 KiB of "
                             "multipart framing)")
    parser.add_argument("--max_pixels", type=positive, default=Limits.max_pixels,
                        help="largest image in pixels (read from its header before decoding)")
    parser.add_argument("--onnxruntime_web", default=DEFAULT_ONNXRUNTIME_WEB,
                        help="onnxruntime-web's dist folder, for in-browser inference on the "
                             "page (installed by make web)")


def run(args: argparse.Namespace) -> int:
    """Load the model (errors surface here, as one line) and serve until interrupted."""
    import uvicorn

    settings = ServeSettings(args.model, args.config, args.model_path, args.backend,
                             args.threads, args.max_bytes, args.max_pixels, args.onnxruntime_web,
                             args.compile)
    app = build_app(settings)
    if not is_loopback(args.host):
        print(f"[SERVE] warning: binding {args.host}: reachable from other machines",
              file=sys.stderr)
    print(f"[SERVE] http://{args.host}:{args.port}/ ({args.workers} worker(s))", flush=True)
    ws_limit = args.max_bytes * 2 + MULTIPART_OVERHEAD  # a base64 background in a settings message
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, ws_max_size=ws_limit, log_level="warning")
    else:
        os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))
        uvicorn.run("humanseg.deploy.serve:app_from_environment", factory=True, host=args.host,
                    port=args.port, workers=args.workers, ws_max_size=ws_limit,
                    log_level="warning")
    return 0
