"""`humanseg demo`: segment a bundled photo of a person (scikit-image's astronaut) and write every
kind of output (`humanseg.deploy.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from skimage import data

from humanseg.cli.options import add_backend, add_model, predictor_from_args
from humanseg.deploy.demo import OUTPUT_FILES, demo_outputs
from humanseg.io import check_output_path, write_image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg demo`."""
    parser.add_argument("--save_dir", default="output/demo", help="folder for the demo images")
    add_model(parser)
    add_backend(parser)


def run(args: argparse.Namespace) -> int:
    """Predict on the astronaut photo and write the six images to `--save_dir`."""
    save_dir = Path(args.save_dir)
    check_output_path(save_dir, folder=True)  # before the model loads: fail at once
    for name in OUTPUT_FILES:
        check_output_path(save_dir / name)
    image = data.astronaut()
    person = predictor_from_args(args)(image).alpha
    for name, array in demo_outputs(image, person).items():
        write_image(save_dir / name, array)
    share = float((person > 0.5).mean())
    print(
        f"wrote {len(OUTPUT_FILES)} images to {save_dir} (person covers {share:.0%} of the photo)"
    )
    return 0
