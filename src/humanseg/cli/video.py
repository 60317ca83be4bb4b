"""`humanseg video`: replace or blur the background of a video file or a webcam, frame by frame
(`humanseg.deploy.video`: capture, temporal smoothing, atomic output)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import cv2

from humanseg.cli.options import (
    add_backend,
    add_compile,
    add_device,
    add_model,
    add_regions,
    predictor_from_args,
    region_options,
)
from humanseg.deploy.compose import parse_background
from humanseg.deploy.video import (
    FALLBACK_FPS,
    VIDEO_SUFFIXES,
    is_camera,
    is_same_file,
    open_capture,
    read_frames,
    set_torch_threads,
    write_video,
)
from humanseg.engine.predict import TorchForward
from humanseg.errors import HumanSegError, HumanSegWarning
from humanseg.io import check_output_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg video`."""
    parser.add_argument("--input", required=True, help="video file, or a camera index such as 0")
    parser.add_argument("--output", required=True, help="video to write, e.g. out.mp4")
    parser.add_argument(
        "--background", default="blur", help="blur (default), #RRGGBB, or an image file"
    )
    add_model(parser)
    add_backend(parser)
    add_device(parser)
    add_compile(parser)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads of the torch backend (default 1: PyTorch's spinning OpenMP threads "
        "stall when the CPU is shared; onnxruntime uses 2 threads that sleep when idle)",
    )
    parser.add_argument("--no-smooth", action="store_true", help="turn temporal smoothing off")
    parser.add_argument("--max_frames", type=int, help="stop after this many frames")
    add_regions(parser)
    parser.add_argument("--edge_refine", action="store_true",
                        help="make the person edges follow the frame's (a guided filter: about "
                             "as costly per 640x480 frame as the model; off by default in video)")


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
    restore_threads = None
    try:
        predictor = predictor_from_args(args, device=args.device, track_subject=True,
                                        refine_edges=args.edge_refine, compile=args.compile,
                                        **region_options(args)).predictor
        if isinstance(predictor.forward, TorchForward):  # the backend "auto" chose
            restore_threads = set_torch_threads(args.threads)
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not is_camera(args.input) else 0
        if args.max_frames is not None and total > 0:
            total = min(total, args.max_frames)
        fps = capture.get(cv2.CAP_PROP_FPS)  # 0 (or NaN) when the source does not say
        stats = write_video(
            read_frames(capture, args.max_frames),
            lambda frame: predictor.infer(frame).alpha(),
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
