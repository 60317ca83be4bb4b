"""`humanseg video`: replace or blur the background of a video file or a webcam, frame by frame.

Each frame is segmented by the engine's Predictor (PyTorch or onnxruntime backend), its person
mask is smoothed over time (`humanseg.deploy.smoothing`, unless `--no-smooth`), and the frame is
composed onto the new background. The output is written to a temporary file that replaces
`--output` only when every frame went through, so a failure leaves no partial video. A file
that ends before the frame count its header gives (damaged, truncated) gives a warning saying
how many frames were written. `--output` may not be the input, even through a link. A webcam runs
until `--max_frames` or Ctrl-C, and what was recorded up to then is kept.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from humanseg.deploy.compose import (
    Background,
    compose,
    fit_background_to,
    parse_background,
    person_probability,
)
from humanseg.deploy.smoothing import FlowSmoother
from humanseg.engine.predict import add_region_arguments, build_predictor
from humanseg.errors import HumanSegError, HumanSegWarning
from humanseg.io import atomic_path, check_output_path

FALLBACK_FPS = 25.0
FOURCC = "mp4v"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi")

Segmenter = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class VideoStats:
    """What one run did: frames written, seconds spent, and the resulting frames per second."""

    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        """Frames processed per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg video`."""
    parser.add_argument("--input", required=True, help="video file, or a camera index such as 0")
    parser.add_argument("--output", required=True, help="video to write, e.g. out.mp4")
    parser.add_argument(
        "--background", default="blur", help="blur (default), #RRGGBB, or an image file"
    )
    parser.add_argument("--config", help="model config YAML (default: the packaged model's)")
    parser.add_argument(
        "--model_path",
        help="model.pt, or model.onnx with --backend onnxruntime (default: packaged)",
    )
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="run the model with PyTorch, or an exported .onnx with onnxruntime")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where the torch backend runs")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of the torch backend (default 1: PyTorch's spinning OpenMP threads "
        "stall when the CPU is shared; onnxruntime uses 2 threads that sleep when idle)",
    )
    parser.add_argument("--no-smooth", action="store_true", help="turn temporal smoothing off")
    parser.add_argument("--max_frames", type=int, help="stop after this many frames")
    add_region_arguments(parser)


def is_camera(source: str) -> bool:
    """A bare non-negative integer names a camera index, anything else a file."""
    return source.isdigit()


def is_same_file(first: str | Path, second: str | Path) -> bool:
    """True when both paths exist and are one file (through symbolic or hard links)."""
    try:
        return os.path.samefile(first, second)
    except OSError:  # either does not exist
        return False


def open_capture(source: str) -> cv2.VideoCapture:
    """Open a camera index or a video file, with a clear error when neither works."""
    if is_camera(source):
        # OpenCV prints a warning per backend it tries; the one-line error below says it all.
        log = cv2.utils.logging
        level = log.getLogLevel()
        log.setLogLevel(log.LOG_LEVEL_ERROR)
        try:
            capture = cv2.VideoCapture(int(source))
        finally:
            log.setLogLevel(level)
        if not capture.isOpened():
            raise HumanSegError(f"camera {source}: not available (no such device, or it is busy)")
        return capture
    path = Path(source)
    if not path.is_file():
        raise HumanSegError(f"{path}: video file not found")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise HumanSegError(f"{path}: not a readable video (corrupt or unsupported format)")
    return capture


def read_frames(capture: cv2.VideoCapture, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield RGB frames until the stream ends or `max_frames` were read."""
    count = 0
    while max_frames is None or count < max_frames:
        ok, frame = capture.read()
        if not ok:
            return
        count += 1
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def write_video(
    frames: Iterator[np.ndarray],
    segment: Segmenter,
    background: Background,
    output: str | Path,
    fps: float,
    smooth: bool = True,
    total: int | None = None,
    keep_on_interrupt: bool = False,
) -> VideoStats:
    """Segment, smooth and compose every frame into `output` (mp4), atomically."""
    output = Path(output)
    smoother = FlowSmoother() if smooth else None
    written = 0
    start = time.perf_counter()
    with atomic_path(output) as tmp, tqdm(total=total, unit="frame", desc="video") as progress:
        writer: cv2.VideoWriter | None = None
        try:
            for frame in frames:
                height, width = frame.shape[:2]
                if writer is None:
                    writer = cv2.VideoWriter(
                        str(tmp), cv2.VideoWriter_fourcc(*FOURCC), fps, (width, height)
                    )
                    if not writer.isOpened():
                        raise HumanSegError(f"{output}: cannot write an {FOURCC} video here")
                    background = fit_background_to(background, height, width)
                alpha = segment(frame)
                if smoother is not None:
                    alpha = smoother(frame, alpha)
                writer.write(cv2.cvtColor(compose(frame, alpha, background), cv2.COLOR_RGB2BGR))
                written += 1
                progress.update()
        except KeyboardInterrupt:
            if not (keep_on_interrupt and written):
                raise
        finally:
            if writer is not None:
                writer.release()
        if written == 0:
            raise HumanSegError(f"{output}: the input gave no frames; nothing written")
    return VideoStats(written, time.perf_counter() - start)


def set_torch_threads(threads: int) -> Callable[[], None]:
    """Set torch's CPU thread count; return what restores it (torch loads only for this
    backend: the onnxruntime one never imports it)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    return lambda: torch.set_num_threads(previous)


def run(args: argparse.Namespace) -> int:
    """Open the input, build the predictor, write the composed video and print the speed."""
    if args.max_frames is not None and args.max_frames <= 0:
        raise HumanSegError(f"--max_frames must be positive, got {args.max_frames}")
    if Path(args.output).suffix.lower() not in VIDEO_SUFFIXES:
        raise HumanSegError(f"--output {args.output}: end it in one of {', '.join(VIDEO_SUFFIXES)}")
    if args.threads <= 0:
        raise HumanSegError(f"--threads must be positive, got {args.threads}")
    check_output_path(args.output)
    if not is_camera(args.input) and is_same_file(args.input, args.output):
        raise HumanSegError(f"--output {args.output}: is the input video {args.input}; "
                            "write the result to another file")
    background = parse_background(args.background)
    capture = open_capture(args.input)
    restore_threads = set_torch_threads(args.threads) if args.backend == "torch" else None
    try:
        predictor = build_predictor(
            argparse.Namespace(**{**vars(args), "precision": "fp32", "track_subject": True})
        )
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not is_camera(args.input) else 0
        if args.max_frames is not None and total > 0:
            total = min(total, args.max_frames)
        fps = capture.get(cv2.CAP_PROP_FPS)  # 0 (or NaN) when the source does not say
        stats = write_video(
            read_frames(capture, args.max_frames),
            lambda frame: person_probability(predictor(frame)),
            background,
            args.output,
            fps=fps if fps > 0 else FALLBACK_FPS,  # NaN > 0 is False too
            smooth=not args.no_smooth,
            total=total or None,
            keep_on_interrupt=is_camera(args.input),
        )
    finally:
        capture.release()
        if restore_threads is not None:
            restore_threads()
    if total and stats.frames < total:
        warnings.warn(
            f"{args.input}: the video ended after {stats.frames} of its {total} frames (damaged "
            f"or truncated file?); {args.output} holds the {stats.frames} frames that were read",
            HumanSegWarning,
            stacklevel=2,
        )
    print(
        f"wrote {args.output}: {stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.1f} FPS)"
    )
    return 0
