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

import os
import time
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
)
from humanseg.deploy.smoothing import FlowSmoother
from humanseg.errors import HumanSegError
from humanseg.io import atomic_path

FALLBACK_FPS = 25.0
FOURCC = "mp4v"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi")

FrameAlpha = Callable[[np.ndarray], np.ndarray]  # RGB frame -> person alpha [H, W]


@dataclass(frozen=True)
class VideoStats:
    """What one run did: frames written, seconds spent, and the resulting frames per second."""

    frames: int
    seconds: float

    @property
    def fps(self) -> float:
        """Frames processed per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else float("inf")


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
    segment: FrameAlpha,
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
