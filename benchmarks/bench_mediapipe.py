"""MediaPipe's selfie segmenter on a list of photos: per-frame latency and the predicted masks.

Runs inside its own virtual environment (`make bench-deploy` builds `.venv-mediapipe` with
mediapipe==0.10.21, whose numpy<2 pin clashes with the main environment), so it imports nothing
from humanseg. `bench_deploy.py` calls it as a subprocess:

    .venv-mediapipe/bin/python benchmarks/bench_mediapipe.py --images LIST.txt --out_dir DIR

LIST.txt holds one image path per line. It writes DIR/<stem>.png (uint8 person mask, 0/1, at the
photo's size, thresholded at 0.5) and prints one JSON line: the latency (wall and process CPU) of
`process()` on a frame at the model's own input size (256x256, batch 1, after warm-up), the mean
end-to-end time per photo (conversion, resize and threshold included), and the version.

`--camera_frames N` instead times N calls of the camera-frame path on a 640x480 frame of the
first listed photo: `process()` (its own resize to the model and upsampling of the mask to the
frame) and the threshold to a uint8 mask, with `--model landscape` (144x256) or general.
MediaPipe's desktop build runs its XNNPACK delegate on one thread (the legacy solution API has no
setting for it). `mp.solutions.selfie_segmentation` ships its model inside the wheel, so nothing
is downloaded.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np

MODEL_SELECTION = {"general": 0, "landscape": 1}  # 256x256 and 144x256 inputs
MODEL_SIDE = 256
CAMERA_SIZE = (640, 480)  # W, H
WARMUP = 10
REPEATS = 100


def time_camera_frames(segmenter: object, frame: np.ndarray, count: int) -> dict:
    """Wall and process-CPU seconds per 640x480 frame -> uint8 mask, after warm-up."""
    wall, cpu = [], []
    for index in range(WARMUP + count):
        start, start_cpu = time.perf_counter(), time.process_time()
        mask = (segmenter.process(frame).segmentation_mask > 0.5).astype(np.uint8)
        if index >= WARMUP:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    assert mask.shape == frame.shape[:2]
    return {"wall_s": wall, "cpu_s": cpu, "version": mp.__version__}


def main() -> None:
    """Time the segmenter on a model-sized frame, then segment every listed photo."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True, help="text file, one image path per line")
    parser.add_argument("--out_dir", required=True, help="folder for the predicted masks")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--model", choices=list(MODEL_SELECTION), default="general")
    parser.add_argument("--camera_frames", type=int, help="time the 640x480 frame path only")
    args = parser.parse_args()
    paths = [Path(line) for line in Path(args.images).read_text().split("\n") if line.strip()]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    solution = mp.solutions.selfie_segmentation
    if args.camera_frames:
        first = cv2.cvtColor(cv2.imread(str(paths[0])), cv2.COLOR_BGR2RGB)
        frame = np.ascontiguousarray(cv2.resize(first, CAMERA_SIZE, interpolation=cv2.INTER_AREA))
        with solution.SelfieSegmentation(model_selection=MODEL_SELECTION[args.model]) as segmenter:
            print(json.dumps(time_camera_frames(segmenter, frame, args.camera_frames)))
        return
    with solution.SelfieSegmentation(model_selection=MODEL_SELECTION[args.model]) as segmenter:
        first = cv2.cvtColor(cv2.imread(str(paths[0])), cv2.COLOR_BGR2RGB)
        frame = np.ascontiguousarray(cv2.resize(first, (MODEL_SIDE, MODEL_SIDE)))
        for _ in range(WARMUP):
            segmenter.process(frame)
        latencies, cpu_times = [], []
        for _ in range(args.repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            segmenter.process(frame)
            latencies.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - start_cpu)
        photo_seconds = []
        for path in paths:
            start = time.perf_counter()
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            result = segmenter.process(image)
            mask = (result.segmentation_mask > 0.5).astype(np.uint8)
            photo_seconds.append(time.perf_counter() - start)
            cv2.imwrite(str(out_dir / f"{path.stem}.png"), mask)
    report = {
        "backend": f"mediapipe {mp.__version__} selfie_segmentation ({args.model})",
        "latency_ms_median": 1000 * statistics.median(latencies),
        "latency_ms_mean": 1000 * statistics.fmean(latencies),
        "cpu_ms_median": 1000 * statistics.median(cpu_times),
        "photo_ms_mean": 1000 * statistics.fmean(photo_seconds),
        "images": len(paths),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
