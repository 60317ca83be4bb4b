"""`humanseg predict` / `python predict.py`: per photo, a label PNG, pseudo-colour, overlay and
cut-out in PaddleSeg's output folders (`humanseg.deploy.outputs`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from humanseg.cli.options import (
    add_backend,
    add_compile,
    add_device,
    add_model,
    add_precision,
    add_regions,
    predictor_from_args,
    region_options,
)
from humanseg.deploy.outputs import (
    OUTPUT_DIRS,
    image_paths,
    output_names,
    render_outputs,
    write_outputs,
)
from humanseg.errors import HumanSegError
from humanseg.io import check_output_path, read_image


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `humanseg predict` / `python predict.py` (PaddleSeg's names)."""
    parser.add_argument("image", nargs="?", help="an image or folder (same as --image_path)")
    parser.add_argument("--image_path",
                        help="an image, a folder of images or a .txt list of image paths")
    add_model(parser, "config file (default: the packaged model's)",
              "model.pt, or an exported model.onnx (with --backend onnxruntime a model.pt is "
              "exported once into ~/.cache/humanseg/onnx)")
    parser.add_argument("--save_dir", default="output/result",
                        help="where the outputs go (one subfolder per kind)")
    add_backend(parser)
    add_device(parser)
    add_precision(parser, "autocast precision of the torch backend (fp16 needs --device cuda)")
    add_compile(parser)
    add_regions(parser)
    parser.add_argument("--no_edge_refine", action="store_true",
                        help="keep the network's resampled person edges instead of making them "
                             "follow the photo's (a guided filter; on by default for photos)")


def run(args: argparse.Namespace) -> int:
    """Segment every image and write its label, pseudo-colour, overlay and cut-out; a file that
    fails is reported in one line and the others still run (exit status 2 if any failed)."""
    if args.image and args.image_path and args.image != args.image_path:
        raise HumanSegError("give the image either positionally or with --image_path, not both")
    source = args.image_path or args.image
    if not source:
        raise HumanSegError("no image given: humanseg predict PHOTO.jpg (or --image_path DIR)")
    paths = image_paths(source)
    save_dir = Path(args.save_dir)
    for folder in (save_dir, *(save_dir / name for name in OUTPUT_DIRS)):
        check_output_path(folder, folder=True)  # before the model loads: fail at once
    segmenter = predictor_from_args(args, device=args.device, precision=args.precision,
                                    refine_edges=not args.no_edge_refine, compile=args.compile,
                                    **region_options(args))
    failed = 0
    for path, name in tqdm(list(zip(paths, output_names(paths), strict=True)), desc="predict",
                           unit="img", disable=len(paths) < 2):
        try:  # a bad file is reported and skipped: the others still run
            result = segmenter(read_image(path))
            write_outputs(save_dir, name, render_outputs(result.image, result.prediction))
        except HumanSegError as error:
            failed += 1
            tqdm.write(f"humanseg predict: error: {error}", file=sys.stderr)
    folders = ", ".join(f"{folder}/" for folder in OUTPUT_DIRS)
    print(f"[PREDICT] {len(paths) - failed} image(s) done, {failed} failed -> {save_dir} "
          f"({folders})")
    return 2 if failed else 0
