"""MediaPipe's selfie segmenter on a list of photos: per-frame latency and the predicted masks.

Runs inside its own virtual environment (`make bench-deploy` builds `.venv-mediapipe` with
mediapipe==0.10.21, whose numpy<2 pin clashes with the main environment), so it imports nothing
from humanseg. `bench_deploy.py` calls it as a subprocess:

    .venv-mediapipe/bin/python benchmarks/bench_mediapipe.py --images LIST.txt --out_dir DIR

LIST.txt holds one image path per line. It writes DIR/<stem>.png (uint8 person mask, 0/1, at the
photo's size, thresholded at 0.5) and prints one JSON line: the latency (wall and process CPU) of
`process()` on a frame at the model's own input size (`--model general`: 256x256, `landscape`:
256x144 WxH; batch 1, after warm-up), the mean
end-to-end time per photo (conversion, resize and threshold included), and the version.
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

# model_selection: 0 is the general 256x256 model, 1 the 144x256 (HxW) landscape one.
MODELS = {"general": (0, (256, 256)), "landscape": (1, (144, 256))}
WARMUP = 10
REPEATS = 100


def main() -> None:
    """Time the segmenter on a model-sized frame, then segment every listed photo."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", required=True, help="text file, one image path per line")
    parser.add_argument("--out_dir", required=True, help="folder for the predicted masks")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--model", choices=sorted(MODELS), default="general")
    args = parser.parse_args()
    selection, (height, width) = MODELS[args.model]
    paths = [Path(line) for line in Path(args.images).read_text().split("\n") if line.strip()]
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    solution = mp.solutions.selfie_segmentation
    with solution.SelfieSegmentation(model_selection=selection) as segmenter:
        first = cv2.cvtColor(cv2.imread(str(paths[0])), cv2.COLOR_BGR2RGB)
        frame = np.ascontiguousarray(cv2.resize(first, (width, height)))
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
        "backend": f"mediapipe {mp.__version__} selfie_segmentation "
                   f"({args.model}, {width}x{height})",
        "latency_ms_median": 1000 * statistics.median(latencies),
        "latency_ms_mean": 1000 * statistics.fmean(latencies),
        "cpu_ms_median": 1000 * statistics.median(cpu_times),
        "photo_ms_mean": 1000 * statistics.fmean(photo_seconds),
        "images": len(paths),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
