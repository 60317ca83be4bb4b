"""The `humanseg` command: one verb per module, each module defining `add_arguments` and `run`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from humanseg.errors import HumanSegError

# Before torch loads: OpenMP threads that spin while idle make every step many times slower as
# soon as the CPU is shared (a video call beside the segmenter, other jobs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# verb -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
VERBS: dict[str, tuple[str, str]] = {
    "train": ("humanseg.engine.train", "train a model from a config"),
    "val": ("humanseg.engine.evaluate", "evaluate a model on the config's val_dataset"),
    "predict": ("humanseg.engine.predict", "segment images and write masks and cut-outs"),
    "prepare-coco": ("humanseg.data.coco", "convert COCO instances into person label PNGs"),
    "info": ("humanseg.models.info", "print a model's parameter count and FLOPs"),
    "convert-paddle": ("humanseg.models.paddle_import", "convert PaddleSeg .pdparams weights"),
    "export": ("humanseg.deploy.export", "export a model to ONNX"),
    "video": ("humanseg.deploy.video", "replace or blur the background of a video or webcam"),
    "demo": ("humanseg.deploy.demo", "run the packaged model on a sample photo"),
    "serve": ("humanseg.deploy.serve", "segmentation over HTTP and the webcam page (FastAPI)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The full parser: one sub-parser per verb, filled in by the verb's module."""
    parser = argparse.ArgumentParser(prog="humanseg", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module_name, help_text) in VERBS.items():
        module = importlib.import_module(module_name)
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text)
        module.add_arguments(verb_parser)
        verb_parser.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn a HumanSegError into one line on stderr and exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except HumanSegError as error:
        print(f"humanseg {args.verb}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"humanseg {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
