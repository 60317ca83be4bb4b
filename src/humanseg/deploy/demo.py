"""`humanseg demo`: segment a bundled photo of a person and write every kind of output.

The photo is scikit-image's `data.astronaut()` (shipped inside the scikit-image wheel, so nothing
is downloaded); the astronaut is put into space, `data.hubble_deep_field()`. With no options the
packaged default model is used, so `make demo` works straight after `make install`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from skimage import data

from humanseg.deploy.compose import (
    Background,
    compose,
    overlay,
    person_probability,
    rgba_cutout,
)
from humanseg.engine.predict import build_predictor
from humanseg.io import check_output_path, write_image

OUTPUT_FILES = (
    "input.png",
    "mask.png",
    "overlay.png",
    "cutout.png",
    "background_replaced.png",
    "background_blurred.png",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg demo`."""
    parser.add_argument("--save_dir", default="output/demo", help="folder for the demo images")
    parser.add_argument("--config", help="model config YAML (default: the packaged model's)")
    parser.add_argument(
        "--model_path",
        help="model.pt, or model.onnx with --backend onnxruntime (default: packaged)",
    )
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                        help="run the model with PyTorch, or an exported .onnx with onnxruntime")


def demo_outputs(image: np.ndarray, person: np.ndarray) -> dict[str, np.ndarray]:
    """Every demo image for one photo and its person probability, keyed by file name."""
    mask = person > 0.5
    space = data.hubble_deep_field()
    return {
        "input.png": image,
        "mask.png": mask.astype(np.uint8) * 255,
        "overlay.png": overlay(image, mask),
        "cutout.png": rgba_cutout(image, person),
        "background_replaced.png": compose(image, person, Background(image=space)),
        "background_blurred.png": compose(image, person, Background(blur=True)),
    }


def run(args: argparse.Namespace) -> int:
    """Predict on the astronaut photo and write the six images to `--save_dir`."""
    save_dir = Path(args.save_dir)
    check_output_path(save_dir, folder=True)  # before the model loads: fail at once
    for name in OUTPUT_FILES:
        check_output_path(save_dir / name)
    options = {**vars(args), "device": "cpu", "precision": "fp32"}
    predictor = build_predictor(argparse.Namespace(**options))
    image = data.astronaut()
    person = person_probability(predictor(image))
    for name, array in demo_outputs(image, person).items():
        write_image(save_dir / name, array)
    share = float((person > 0.5).mean())
    print(
        f"wrote {len(OUTPUT_FILES)} images to {save_dir} (person covers {share:.0%} of the photo)"
    )
    return 0
