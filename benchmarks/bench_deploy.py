"""Deployment benchmark: latency, accuracy against MediaPipe, video flicker and speed, in one run.

    .venv/bin/python benchmarks/bench_deploy.py [--config C --model_path P]
        [--mediapipe_python .venv-mediapipe/bin/python]      (`make bench-deploy` does both)

1. Per-frame latency at the model's input size, batch 1, 2 threads: PyTorch eager vs onnxruntime
   (the model exported to ONNX here, in a temporary folder), measured in alternating rounds so
   both see the same machine load; and MediaPipe's selfie segmenter in its own environment
   (`bench_mediapipe.py`, a subprocess) in the same run.
2. mIoU on the same held-out photos for both models: the fixed validation split
   (`humanseg.data.split`) of ../shared/data/portraits and ../shared/data/ccp, each prediction
   resized to the photo and thresholded at 0.5.
3. Video: the flicker measure (mean absolute frame-to-frame change of the person mask, soft and
   thresholded) on still scenes made from validation portraits (fresh sensor noise and JPEG
   compression per frame), with and without temporal smoothing; on sliding scenes (the portrait
   moving 3 px per frame) the share of pixels wrong against the shifted label, for no smoothing,
   the flow-guided smoothing and a plain EMA (which trails behind motion); and end-to-end frames
   per second of the video pipeline at 640x480.
4. Camera frames: a 640x480 frame in, a uint8 person mask at 640x480 out (resize, normalise,
   model, softmax, upsampling and threshold timed), onnxruntime on 1 thread in fp32 and int8
   (static quantisation calibrated on 64 training-split photos), and fp32 exported without the
   model's `export_form` (the plain BN-folded graph: before and after), against MediaPipe's
   landscape model (144x256, XNNPACK on 1 thread), in alternating rounds; the int8 model's mIoU
   on the validation split is reported beside the fp32 one.
Ratios are measured within this one run; absolute numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import torch

from humanseg.data.inference import build_inference_transforms, config_input_size
from humanseg.data.split import is_validation
from humanseg.deploy.compose import Background
from humanseg.deploy.export import calibration_batches, export_int8, export_onnx
from humanseg.deploy.onnx_runtime import OnnxRuntimeForward
from humanseg.deploy.smoothing import FlowSmoother, flicker
from humanseg.deploy.video import write_video
from humanseg.engine.predict import Predictor
from humanseg.engine.runtime import load_inference_model
from humanseg.io import read_image, read_mask
from humanseg.metrics import SegMetrics
from humanseg.weights import resolve_paths

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SOURCES = ("portraits", "ccp")
THREADS = 2
ROUNDS = 10
EMA_NEW_WEIGHT = 0.4  # the same share of the new mask as FlowSmoother's default
VIDEO_SIZE = (480, 640)
CAMERA_ROUNDS = 5  # ours and MediaPipe alternate, each round this many frames
CAMERA_FRAMES = 60
CALIBRATION_PHOTOS = 64


def training_photos(source: str) -> list[Path]:
    """The photos of one data source outside the validation split (int8 calibration)."""
    images = sorted((DATA / source / "images").glob("*.jpg"))
    return [image for image in images if not is_validation(image.stem)]


def validation_pairs(source: str, limit: int | None) -> list[tuple[Path, Path]]:
    """(image, label) paths of the held-out photos of one data source, sorted by stem."""
    images = sorted((DATA / source / "images").glob("*.jpg"))
    pairs = [
        (image, DATA / source / "masks" / f"{image.stem}.png")
        for image in images
        if is_validation(image.stem)
    ]
    return pairs[:limit] if limit else pairs


def time_rounds(
    runners: dict[str, Callable[[], object]], repeats: int
) -> dict[str, tuple[float, float]]:
    """Median (wall ms, process-CPU ms) per call of each runner, in alternating rounds."""
    for run in runners.values():
        for _ in range(10):
            run()
    wall: dict[str, list[float]] = {name: [] for name in runners}
    cpu: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(ROUNDS):
        for name, run in runners.items():
            for _ in range(max(1, repeats // ROUNDS)):
                start, start_cpu = time.perf_counter(), time.process_time()
                run()
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return {
        name: (1000 * statistics.median(wall[name]), 1000 * statistics.median(cpu[name]))
        for name in runners
    }


def camera_frame_study(
    predictors: dict[str, Predictor], photo: Path, mediapipe_python: Path, work: Path
) -> dict[str, dict[str, float]]:
    """Per 640x480 camera frame -> uint8 person mask at 640x480 (resize, normalise, model,
    softmax, upsampling and threshold included): median wall and CPU ms of each of ours and of
    MediaPipe's landscape model, in alternating rounds of the same run."""
    height, width = VIDEO_SIZE
    frame = cv2.resize(read_image(photo), (width, height), interpolation=cv2.INTER_AREA)
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    listing = work / "camera_photo.txt"
    listing.write_text(f"{photo}\n")
    mediapipe = [str(mediapipe_python), str(REPO / "benchmarks" / "bench_mediapipe.py"),
                 "--images", str(listing), "--out_dir", str(work / "camera"),
                 "--model", "landscape", "--camera_frames", str(CAMERA_FRAMES)]
    for _ in range(CAMERA_ROUNDS):
        for name, predictor in predictors.items():
            for index in range(10 + CAMERA_FRAMES):
                start, start_cpu = time.perf_counter(), time.process_time()
                mask = (predictor.infer(frame).alpha() > 0.5).astype(np.uint8)
                if index >= 10:
                    wall.setdefault(name, []).append(time.perf_counter() - start)
                    cpu.setdefault(name, []).append(time.process_time() - start_cpu)
            assert mask.shape == (height, width)
        if mediapipe_python.is_file():
            result = subprocess.run(mediapipe, capture_output=True, text=True, check=True)
            report = json.loads(result.stdout.strip().splitlines()[-1])
            wall.setdefault("mediapipe_landscape", []).extend(report["wall_s"])
            cpu.setdefault("mediapipe_landscape", []).extend(report["cpu_s"])
    return {
        name: {"wall_ms": 1000 * statistics.median(wall[name]),
               "cpu_ms": 1000 * statistics.median(cpu[name])}
        for name in wall
    }


def miou_of(predictions: dict[str, np.ndarray], pairs: list[tuple[Path, Path]]) -> float:
    """mIoU of binary person masks (keyed by stem) against the labels of `pairs`."""
    metrics = SegMetrics(num_classes=2)
    for _, label_path in pairs:
        label = read_mask(label_path)
        metrics.update(predictions[label_path.stem][None], label[None])
    return float(metrics.compute()["miou"])


def run_mediapipe(
    python: Path, pairs: list[tuple[Path, Path]], work: Path, model: str = "general"
) -> dict | None:
    """Run bench_mediapipe.py (`model`: general or landscape) in its own environment; its report
    plus the masks it wrote."""
    if not python.is_file():
        print(f"MediaPipe skipped: {python} not found (make bench-deploy builds it)")
        return None
    listing = work / "mediapipe_images.txt"
    listing.write_text("\n".join(str(image) for image, _ in pairs) + "\n")
    out_dir = work / f"mediapipe_{model}_masks"
    command = [
        str(python),
        str(REPO / "benchmarks" / "bench_mediapipe.py"),
        "--images",
        str(listing),
        "--out_dir",
        str(out_dir),
        "--model",
        model,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        print(f"MediaPipe failed:\n{result.stderr[-2000:]}")
        return None
    report = json.loads(result.stdout.strip().splitlines()[-1])
    report["masks"] = {
        p.stem: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in out_dir.glob("*.png")
    }
    return report


def still_scene(photo: np.ndarray, count: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """A still camera on `photo`: fresh sensor noise (sigma 4) and JPEG (quality 75) per frame."""
    for _ in range(count):
        noisy = np.clip(photo + rng.normal(0, 4, photo.shape), 0, 255).astype(np.uint8)
        _, encoded = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 75])
        yield cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)


def sliding_scene(
    photo: np.ndarray, label: np.ndarray, count: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(frame, shifted label): the photo sliding 3 px right and 1 px down per frame."""
    height, width = label.shape
    for step in range(count):
        shift = np.float32([[1, 0, 3 * step], [0, 1, step]])
        frame = cv2.warpAffine(photo, shift, (width, height), borderMode=cv2.BORDER_REFLECT)
        truth = cv2.warpAffine(
            label, shift, (width, height), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT
        )
        yield frame, truth


def flicker_study(predictor: Predictor, pairs: list[tuple[Path, Path]], frames: int) -> dict:
    """Flicker on still scenes; on sliding ones, the share of pixels wrong against the label."""
    rng = np.random.default_rng(0)
    soft: dict[str, list[float]] = {"none": [], "flow": []}
    binary: dict[str, list[float]] = {"none": [], "flow": []}
    for image_path, _ in pairs:
        smoother = FlowSmoother()
        raw, smoothed = [], []
        for frame in still_scene(read_image(image_path), frames, rng):
            alpha = predictor.infer(frame).alpha()
            raw.append(alpha)
            smoothed.append(smoother(frame, alpha))
        for name, masks in (("none", raw), ("flow", smoothed)):
            soft[name].append(flicker(masks))
            binary[name].append(flicker([mask > 0.5 for mask in masks]))
    error: dict[str, list[float]] = {"none": [], "flow": [], "ema": []}
    for image_path, label_path in pairs:
        photo, label = read_image(image_path), read_mask(label_path)
        smoother, ema = FlowSmoother(), None
        for frame, truth in sliding_scene(photo, label, frames):
            alpha = predictor.infer(frame).alpha()
            ema = alpha if ema is None else EMA_NEW_WEIGHT * alpha + (1 - EMA_NEW_WEIGHT) * ema
            outputs = {"none": alpha, "flow": smoother(frame, alpha), "ema": ema}
            for name, output in outputs.items():
                error[name].append(float(((output > 0.5) != (truth > 0)).mean()))
    return {
        "still_soft_flicker": {k: statistics.fmean(v) for k, v in soft.items()},
        "still_binary_flicker": {k: statistics.fmean(v) for k, v in binary.items()},
        "sliding_error_vs_label": {k: statistics.fmean(v) for k, v in error.items()},
        "scenes": len(pairs),
        "frames": frames,
    }


def video_fps(predictor: Predictor, photo: np.ndarray, frames: int, work: Path) -> dict:
    """End-to-end FPS of the video pipeline (segment, smooth, blur-compose, encode) at 640x480."""
    height, width = VIDEO_SIZE
    frame = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(1)
    fps = {}
    for smooth in (False, True):
        stats = write_video(
            still_scene(frame, frames, rng),
            lambda f: predictor.infer(f).alpha(),
            Background(blur=True),
            work / f"video_{smooth}.mp4",
            fps=25,
            smooth=smooth,
            total=frames,
        )
        fps["flow" if smooth else "none"] = stats.fps
    return fps


def main() -> None:
    """Run every part and print one JSON report and a Markdown summary."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="default: the packaged model's")
    parser.add_argument("--model_path", help="default: the packaged model")
    parser.add_argument("--mediapipe_python", default=str(REPO / ".venv-mediapipe/bin/python"))
    parser.add_argument("--repeats", type=int, default=200, help="timed calls per backend")
    parser.add_argument("--limit", type=int, help="at most this many photos per source")
    parser.add_argument("--frames", type=int, default=30, help="frames per video scene")
    parser.add_argument("--flicker_scenes", type=int, default=6)
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA}: the real data is needed for the accuracy part")
    torch.set_num_threads(THREADS)
    config_path, model_path = resolve_paths(args.config, args.model_path)
    cfg, model = load_inference_model(config_path, model_path, torch.device("cpu"))
    input_size = config_input_size(cfg)
    if input_size is None:
        sys.exit(f"{config_path}: no Resize target_size to benchmark at")
    transforms = build_inference_transforms(cfg["val_dataset"]["transforms"])
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        onnx_path, int8_path = work / "model.onnx", work / "model_int8.onnx"
        export_onnx(model, onnx_path, input_size)
        # Before the model's `export_form` (layers widened for onnxruntime's blocked kernels):
        # the plain BN-folded graph, which a wrapper that hides `export_form` exports.
        plain_path = work / "model_plain_export.onnx"
        export_onnx(torch.nn.Sequential(model), plain_path, input_size)
        calibration_paths = [p for source in SOURCES for p in training_photos(source)]
        calibration = calibration_batches(
            calibration_paths, transforms.preprocess, input_size, CALIBRATION_PHOTOS
        )
        export_int8(model, int8_path, input_size, calibration)
        onnx_forward = OnnxRuntimeForward(onnx_path, num_threads=THREADS)
        int8_single = OnnxRuntimeForward(int8_path, num_threads=1)
        height, width = input_size
        frame = torch.randn(1, 3, height, width)
        frame_np = frame.numpy()

        def torch_call() -> object:
            with torch.inference_mode():
                return model(frame)

        # MediaPipe's desktop build runs its XNNPACK delegate on 1 thread: time that setting too.
        onnx_single = OnnxRuntimeForward(onnx_path, num_threads=1)
        plain_single = OnnxRuntimeForward(plain_path, num_threads=1)
        runners = {
            "torch": torch_call,
            "onnxruntime": lambda: onnx_forward(frame_np),
            "onnxruntime_1_thread": lambda: onnx_single(frame_np),
            "onnxruntime_1_thread_plain_export": lambda: plain_single(frame_np),
            "onnxruntime_int8_1_thread": lambda: int8_single(frame_np),
        }
        latency = time_rounds(runners, args.repeats)

        predictor = Predictor(onnx_forward, transforms, int(model.num_classes))
        int8_predictor = Predictor(int8_single, transforms, int(model.num_classes))
        pairs = {source: validation_pairs(source, args.limit) for source in SOURCES}
        every_pair = [pair for source in SOURCES for pair in pairs[source]]
        fp32_single_predictor = Predictor(onnx_single, transforms, int(model.num_classes))
        camera = camera_frame_study(
            {"onnxruntime_fp32_1_thread": fp32_single_predictor,
             "onnxruntime_fp32_1_thread_plain_export":
                 Predictor(plain_single, transforms, int(model.num_classes)),
             "onnxruntime_int8_1_thread": int8_predictor},
            every_pair[0][0], Path(args.mediapipe_python), work,
        )
        ours, ours_int8, photo_seconds = {}, {}, []
        for image_path, _ in every_pair:
            image = read_image(image_path)
            start = time.perf_counter()
            ours[image_path.stem] = (predictor.infer(image).alpha() > 0.5).astype(np.uint8)
            photo_seconds.append(time.perf_counter() - start)
            int8_person = int8_predictor.infer(image).alpha()
            ours_int8[image_path.stem] = (int8_person > 0.5).astype(np.uint8)
        mediapipe = run_mediapipe(Path(args.mediapipe_python), every_pair, work)
        accuracy = {}
        for name, masks in (("ours", ours), ("ours_int8", ours_int8)):
            accuracy[name] = {s: miou_of(masks, pairs[s]) for s in SOURCES}
            accuracy[name]["all"] = miou_of(masks, every_pair)
        if mediapipe is not None:
            masks = mediapipe["masks"]
            accuracy["mediapipe"] = {s: miou_of(masks, pairs[s]) for s in SOURCES}
            accuracy["mediapipe"]["all"] = miou_of(masks, every_pair)
            del mediapipe["masks"]
        flicker_pairs = pairs["portraits"][: args.flicker_scenes]
        study = flicker_study(predictor, flicker_pairs, args.frames)
        fps = video_fps(predictor, read_image(flicker_pairs[0][0]), args.frames * 2, work)
    report = {
        "load_average_1min_at_end": os.getloadavg()[0],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(default: active)"),
        "model": str(model_path),
        "input_size_hw": list(input_size),
        "threads": THREADS,
        "latency_ms_median_wall_cpu": latency,
        "camera_frame_640x480_to_mask_ms": camera,
        "photo_ms_mean_onnxruntime": 1000 * statistics.fmean(photo_seconds),
        "mediapipe": mediapipe,
        "miou": accuracy,
        "photos": {s: len(pairs[s]) for s in SOURCES},
        "flicker": study,
        "video_fps": fps,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
