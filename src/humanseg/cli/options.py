"""Options several verbs share, declared once: choices and defaults come from the runtime's
constants (`humanseg.engine.runtime`, `humanseg.ops.regions`); each verb may word the help."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from humanseg.engine.runtime import BACKENDS, DEVICES, PRECISIONS
from humanseg.ops.regions import (
    DEFAULT_CONFIDENT_PEAK,
    DEFAULT_MIN_REGION_AREA,
    DEFAULT_MIN_REGION_FRAC,
)
from humanseg.weights import resolve_paths

if TYPE_CHECKING:
    from humanseg.deploy.api import Segmenter

MODEL_PATH_HELP = "model.pt, or an exported model.onnx (default: packaged)"


def add_device(parser: argparse.ArgumentParser, help_text: str = "where the torch backend runs",
               ) -> None:
    """`--device cpu|cuda` (default cpu)."""
    parser.add_argument("--device", default=DEVICES[0], choices=DEVICES, help=help_text)


def add_precision(parser: argparse.ArgumentParser,
                  help_text: str = "autocast precision (fp16 needs --device cuda)") -> None:
    """`--precision fp32|fp16|bf16` (default fp32)."""
    parser.add_argument("--precision", default=PRECISIONS[0], choices=PRECISIONS, help=help_text)


def add_backend(parser: argparse.ArgumentParser, help_text: str = "run the model with PyTorch or "
                "onnxruntime; auto: onnxruntime for a .onnx file and for the packaged model on "
                "the CPU at fp32 (no torch import), else torch") -> None:
    """`--backend auto|torch|onnxruntime` (default auto: `resolve_backend`)."""
    parser.add_argument("--backend", default=BACKENDS[0], choices=BACKENDS, help=help_text)


def add_compile(parser: argparse.ArgumentParser) -> None:
    """`--compile`: torch.compile the torch backend's model (worth it for many images)."""
    parser.add_argument("--compile", action="store_true",
                        help="torch backend: compile the model with torch.compile (inductor; "
                        "needs a C++ compiler, else one warning and eager). The first image "
                        "waits 30-100 s for the compile, later ones take up to 22%% less CPU: "
                        "for many images, a video or a server")


def add_model(parser: argparse.ArgumentParser,
              config_help: str = "model config YAML (default: the packaged model's)",
              model_help: str = MODEL_PATH_HELP) -> None:
    """`--config` and `--model_path` (both or neither: neither is the packaged model)."""
    parser.add_argument("--config", help=config_help)
    parser.add_argument("--model_path", help=model_help)


def add_input_size(parser: argparse.ArgumentParser, default: str) -> None:
    """`--input_size H W`: the network input of `info` and `export` (`default` says what is
    taken without it)."""
    parser.add_argument("--input_size", nargs=2, type=int, metavar=("H", "W"),
                        help=f"input height and width (default: {default})")


def add_regions(parser: argparse.ArgumentParser) -> None:
    """The mask-cleaning options of `predict` and `video` (humanseg.ops.regions)."""
    parser.add_argument(
        "--min_region_frac", type=float, default=DEFAULT_MIN_REGION_FRAC,
        help="drop person regions smaller than this fraction of the largest "
        f"(default {DEFAULT_MIN_REGION_FRAC}; 0 keeps every region)",
    )
    parser.add_argument(
        "--min_region_area", type=float, default=DEFAULT_MIN_REGION_AREA,
        help="also drop person regions smaller than this fraction of the network's output map "
        f"(0.001: 37 of the packaged model's 192 x 192 pixels; default {DEFAULT_MIN_REGION_AREA:g}"
        ": off); with --min_region_frac 0 it spares the small people of a crowd",
    )
    parser.add_argument(
        "--confident_peak", type=float, default=DEFAULT_CONFIDENT_PEAK,
        help="keep a small region anyway when its peak person probability exceeds this "
        f"(default {DEFAULT_CONFIDENT_PEAK:g}: every small region is dropped)",
    )
    parser.add_argument("--main_subject", action="store_true",
                        help="keep only the main person region (in video: the one followed)")


def region_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options `add_regions` declared, as `load_predictor`'s keyword arguments."""
    return {name: getattr(args, name) for name in
            ("min_region_frac", "min_region_area", "confident_peak", "main_subject")}


def predictor_from_args(args: argparse.Namespace, **options: Any) -> Segmenter:
    """The API's `load_predictor` for a verb's `--config` / `--model_path` (neither: the packaged
    model) and `--backend`, with `options` (device, precision, region options) passed on."""
    from humanseg.deploy.api import load_predictor as load

    config_path, model_path = resolve_paths(args.config, args.model_path)
    return load(model_path, config_path, args.backend, **options)
