"""Frame rate of the webcam page's inference paths in headless Chromium, in one run.

    .venv/bin/python benchmarks/bench_browser.py [--seconds 8] [--rounds 3] [--photo EG.jpg]
        (`make bench-browser` installs onnxruntime-web from npm into node_modules/ first)

Chromium's fake camera plays a still y4m video made from a real photo into `humanseg serve`'s
page; each path runs for a warm-up, then frames are counted over --seconds of wall time, in
--rounds alternating rounds (medians reported), beside the CPU time the browser and the server
spent per frame (which a loaded machine stretches far less than wall time):
1-2. server side with the torch backend (1 thread): frames over the WebSocket `/v1/stream`, and
   one HTTP POST per frame (`?inference=server`, `&transport=http`);
3-4. the same with the onnxruntime backend (the packaged model exported to ONNX here);
5. in the page: the same ONNX file run by onnxruntime-web (WebAssembly, 1 thread), resize,
   normalise and composite in the page (the page's default when the server offers it).
All paths composite onto pure green, so the person region can be read back from the canvas and
compared with `humanseg predict`'s mask of the photo (IoU, a sanity check). Browser and servers
share the machine; the paths are measured back to back in this one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
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


def cpu_seconds(roots: list[int]) -> float:
    """User + system CPU seconds used so far by the processes `roots` and all their descendants
    (from /proc; processes that ended are not counted)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid, used in times.items():
        ancestor = pid
        while ancestor > 1 and ancestor not in roots:
            ancestor = parents.get(ancestor, 0)
        if ancestor in roots:
            total += used
    return total


def measure(driver, url: str, seconds: float, processes: list[int]) -> tuple[float, float]:
    """Open the page at `url`, start the camera onto green, warm up, then return the frames
    drawn per second over `seconds` and the CPU milliseconds per frame that `processes` (the
    browser's and the server's trees) spent meanwhile."""
    driver.get(url)
    driver.execute_script("""
        const colour = document.getElementById('colour');
        colour.value = '#00ff00';
        colour.dispatchEvent(new Event('input'));
        document.querySelector('input[name=background][value=colour]').click();
        document.getElementById('camera').click();""")
    wait_for(driver, f"Number({OUTPUT}.dataset.frames) >= 10", timeout=180)
    first = int(driver.execute_script(f"return {OUTPUT}.dataset.frames"))
    started, cpu_started = time.perf_counter(), cpu_seconds(processes)
    time.sleep(seconds)
    frames = int(driver.execute_script(f"return {OUTPUT}.dataset.frames")) - first
    cpu = cpu_seconds(processes) - cpu_started
    return frames / (time.perf_counter() - started), 1000 * cpu / max(frames, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="per path and round")
    parser.add_argument("--rounds", type=int, default=3)
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
        for command in (["export", "--output", str(folder / "model.onnx")],
                        ["predict", str(folder / "frame.png"), "--save_dir", str(folder)]):
            subprocess.run([sys.executable, "-m", "humanseg.cli", *command], check=True,
                           capture_output=True)
        label = cv2.imread(str(folder / "label" / "frame.png"), cv2.IMREAD_UNCHANGED) > 0
        original = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        onnx_server = ["--backend", "onnxruntime", "--config", str(DEFAULT_CONFIG),
                       "--model_path", str(folder / "model.onnx"), "--onnxruntime_web",
                       str(ORT_DIST)]
        rows: dict[str, list[tuple[float, float, float]]] = {}
        with running_server(["--onnxruntime_web", str(ORT_DIST)]) as (torch_base, torch_server), \
                running_server(onnx_server) as (onnx_base, onnx_server_process), \
                chromium(folder / "profile", folder / "camera.y4m") as driver:
            browser = driver.service.process.pid
            paths = [
                ("server (torch), WebSocket", f"{torch_base}/?inference=server", torch_server),
                ("server (torch), HTTP POST per frame",
                 f"{torch_base}/?inference=server&transport=http", torch_server),
                ("server (onnxruntime), WebSocket", f"{onnx_base}/?inference=server",
                 onnx_server_process),
                ("server (onnxruntime), HTTP POST per frame",
                 f"{onnx_base}/?inference=server&transport=http", onnx_server_process),
                ("in the page, onnxruntime-web (wasm, 1 thread)", f"{onnx_base}/",
                 onnx_server_process),
            ]
            for round_index in range(args.rounds):
                for name, url, server in paths:
                    fps, cpu_ms = measure(driver, url, args.seconds, [browser, server.pid])
                    person, decidable = person_region(canvas_pixels(driver), original, GREEN)
                    overlap = mask_iou(person & decidable, label & decidable)
                    rows.setdefault(name, []).append((fps, cpu_ms, overlap))
                    print(f"round {round_index + 1} {name}: {fps:.1f} FPS, {cpu_ms:.0f} CPU "
                          f"ms/frame, person IoU vs predict {overlap:.4f}", flush=True)
    height, width = image.shape[:2]
    print(f"\nfake camera {width}x{height}, {args.rounds} alternating rounds of "
          f"{args.seconds:.0f} s per path, medians")
    print("| path | FPS | CPU ms per frame (browser + server) | person IoU vs predict |")
    print("|---|---|---|---|")
    for name, results in rows.items():
        fps, cpu_ms, overlap = (statistics.median(column) for column in zip(*results,
                                                                            strict=True))
        print(f"| {name} | {fps:.1f} | {cpu_ms:.0f} | {overlap:.4f} |")

if __name__ == "__main__":
    main()
