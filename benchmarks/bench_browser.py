"""Frame rate of the webcam page's inference paths in headless Chromium, in one run.

    .venv/bin/python benchmarks/bench_browser.py [--seconds 15] [--photo EG1800.jpg]
        (`make bench-browser` installs onnxruntime-web from npm into node_modules/ first)

Chromium's fake camera plays a still y4m video made from a real photo; each path runs the page
for a warm-up, then frames are counted over --seconds of wall time:
1. server side, WebSocket: `humanseg serve`'s page (`/v1/stream`), the page's default;
2. server side, one HTTP POST per frame: the same page with `?transport=http`;
3. in the browser: `benchmarks/browser_inference.html`, the packaged model exported to ONNX and
   run by onnxruntime-web (WebAssembly, 1 thread), resize, normalise and composite in the page.
All paths composite onto pure green, so the person region can be read back from the canvas and
compared with `humanseg predict`'s mask of the photo (IoU, a sanity check). Browser, server and
page share the machine; the three paths are measured back to back in this run.
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np

from humanseg.deploy.browser import (
    canvas_pixels,
    chromium,
    chromium_available,
    mask_iou,
    person_region,
    wait_for,
    write_y4m,
)
from humanseg.deploy.serve import running_server
from humanseg.weights import default_paths

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTO = ROOT.parent / "shared" / "data" / "eg1800" / "images" / "eg_00001.jpg"
ORT_DIST = ROOT / "node_modules" / "onnxruntime-web" / "dist"
GREEN = np.array([0, 255, 0], np.float32)
OUTPUT = "document.getElementById('output')"
DEFAULT_CONFIG = default_paths()[0]


class QuietHandler(SimpleHTTPRequestHandler):
    """Static files without a log line per request."""

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base's name)
        """Drop the access log."""


def serve_static(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    """Serve `folder` on a free 127.0.0.1 port from a background thread."""
    handler = functools.partial(QuietHandler, directory=str(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def measure(driver, url: str, start_camera: bool, seconds: float) -> float:
    """Open `url`, start the camera if the page has a button for it, warm up, then return the
    frames drawn per second over `seconds`."""
    driver.get(url)
    if start_camera:
        driver.execute_script("""
            const colour = document.getElementById('colour');
            colour.value = '#00ff00';
            colour.dispatchEvent(new Event('input'));
            document.querySelector('input[name=background][value=colour]').click();
            document.getElementById('camera').click();""")
    wait_for(driver, f"Number({OUTPUT}.dataset.frames) >= 10", timeout=180)
    first = int(driver.execute_script(f"return {OUTPUT}.dataset.frames"))
    started = time.perf_counter()
    time.sleep(seconds)
    frames = int(driver.execute_script(f"return {OUTPUT}.dataset.frames")) - first
    return frames / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--photo", type=Path, default=DEFAULT_PHOTO)
    args = parser.parse_args()
    if not chromium_available():
        raise SystemExit("Chromium / chromedriver missing: make browser")
    if not ORT_DIST.is_dir():
        raise SystemExit(f"{ORT_DIST} missing: make bench-browser installs onnxruntime-web")

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        image = cv2.imread(str(args.photo))
        image = image[: image.shape[0] // 2 * 2, : image.shape[1] // 2 * 2]
        cv2.imwrite(str(folder / "frame.png"), image)
        write_y4m(folder / "camera.y4m", image)
        (folder / "site").mkdir()
        for command in (["export", "--output", str(folder / "site" / "model.onnx")],
                        ["predict", str(folder / "frame.png"), "--save_dir", str(folder)]):
            subprocess.run([sys.executable, "-m", "humanseg.cli", *command], check=True,
                           capture_output=True)
        label = cv2.imread(str(folder / "label" / "frame.png"), cv2.IMREAD_UNCHANGED) > 0
        original = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        (folder / "site" / "index.html").symlink_to(ROOT / "benchmarks" / "browser_inference.html")
        (folder / "site" / "ort").symlink_to(ORT_DIST)
        static, static_url = serve_static(folder / "site")
        onnx_server = ["--backend", "onnxruntime", "--config", str(DEFAULT_CONFIG),
                       "--model_path", str(folder / "site" / "model.onnx")]
        rows = []
        with running_server() as (torch_base, _torch), \
                running_server(onnx_server) as (onnx_base, _onnx), \
                chromium(folder / "profile", folder / "camera.y4m") as driver:
            for name, url, start_camera in [
                ("server (torch), WebSocket", f"{torch_base}/", True),
                ("server (torch), HTTP POST per frame", f"{torch_base}/?transport=http", True),
                ("server (onnxruntime), WebSocket", f"{onnx_base}/", True),
                ("server (onnxruntime), HTTP POST per frame", f"{onnx_base}/?transport=http",
                 True),
                ("browser, onnxruntime-web (wasm, 1 thread)", f"{static_url}/", False),
            ]:
                fps = measure(driver, url, start_camera, args.seconds)
                person, decidable = person_region(canvas_pixels(driver), original, GREEN)
                overlap = mask_iou(person & decidable, label & decidable)
                rows.append((name, fps, overlap))
                print(f"{name}: {fps:.1f} FPS, person IoU vs predict {overlap:.4f}", flush=True)
        static.shutdown()
    height, width = image.shape[:2]
    print(f"\nfake camera {width}x{height}, {args.seconds:.0f} s per path")
    print("| path | FPS | person IoU vs predict |\n|---|---|---|")
    for name, fps, overlap in rows:
        print(f"| {name} | {fps:.1f} | {overlap:.4f} |")


if __name__ == "__main__":
    main()
