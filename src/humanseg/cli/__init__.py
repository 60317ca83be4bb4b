"""The `humanseg` command: one module per verb in this package (`humanseg.cli.VERB`), each
defining `add_arguments(parser)` and `run(args) -> int`; options several verbs share are declared
once in `humanseg.cli.options`. The verbs adapt the command line to the library (the Python API
of `humanseg.deploy.api`, the engine, data and model modules) and hold no other logic."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TextIO

from humanseg.errors import HumanSegError, HumanSegWarning

# Before torch loads: OpenMP threads that spin while idle make every step many times slower as
# soon as the CPU is shared (a video call beside the segmenter, other jobs).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# verb -> (module, one-line help). Each module has add_arguments(parser) and run(args) -> int.
VERBS: dict[str, tuple[str, str]] = {
    "train": ("humanseg.cli.train", "train a model from a config"),
    "val": ("humanseg.cli.val", "evaluate a model on the config's val_dataset"),
    "predict": ("humanseg.cli.predict", "segment images and write masks and cut-outs"),
    "prepare-coco": ("humanseg.cli.prepare_coco", "convert COCO instances into person label PNGs"),
    "info": ("humanseg.cli.info", "print a model's parameter count and FLOPs"),
    "convert-paddle": ("humanseg.cli.convert_paddle",
                       "convert PaddleSeg weights (.pdparams or exported .onnx)"),
    "export": ("humanseg.cli.export", "export a model to ONNX"),
    "video": ("humanseg.cli.video", "replace or blur the background of a video or webcam"),
    "demo": ("humanseg.cli.demo", "run the packaged model on a sample photo"),
    "serve": ("humanseg.cli.serve", "segmentation over HTTP and the webcam page (FastAPI)"),
}
DESCRIPTION = """\
Portrait segmentation (PP-HumanSeg): cut people out of photos, replace or blur the background
of videos and webcams, and train, evaluate and export the models. With no --config and
--model_path, predict, video, export and demo use the model shipped with humanseg."""
EXAMPLES = """\
examples:
  humanseg demo                                  sample outputs in output/demo/
  humanseg predict photo.jpg                     mask, overlay and cut-out in output/result/
  humanseg predict photos/ --save_dir out        every image of a folder
  humanseg video --input 0 --output call.mp4     webcam 0 with a blurred background
  humanseg VERB --help                           the options of one verb"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Help that keeps the examples' line breaks and shows each option's default value (unless
    it is unset, off, or the help text already speaks of it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        """The option's help with `(default: VALUE)` appended where that tells the user more."""
        text = action.help or ""
        unset = action.default is None or action.default is False
        if not action.option_strings or unset or action.default == argparse.SUPPRESS \
                or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


@contextmanager
def one_line_warnings(verb: str) -> Iterator[None]:
    """Print each HumanSegWarning as `humanseg VERB: warning: MESSAGE` (no source line)."""
    with warnings.catch_warnings():
        show_other = warnings.showwarning

        def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
            """One line on stderr for our warnings, Python's format for everyone else's."""
            if issubclass(category, HumanSegWarning):
                print(f"humanseg {verb}: warning: {message}", file=sys.stderr)
            else:
                show_other(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield


def build_parser(verbs: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """One sub-parser per verb; only the modules of `verbs` (default: all) are imported to fill
    theirs in, so `humanseg --help` or one verb never loads what another verb needs (torch,
    albumentations take seconds to import)."""
    parser = argparse.ArgumentParser(prog="humanseg", description=DESCRIPTION, epilog=EXAMPLES,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB", title="verbs")
    for verb, (module_name, help_text) in VERBS.items():
        verb_parser = sub.add_parser(verb, help=help_text, description=help_text,
                                     formatter_class=HelpFormatter)
        if verbs is None or verb in verbs:
            module = importlib.import_module(module_name)
            module.add_arguments(verb_parser)
            verb_parser.set_defaults(run=module.run)
    return parser


def chosen_verb(argv: Sequence[str]) -> list[str]:
    """The verb named on the command line: the first word that is not an option (the top level
    has no options but --help), or none."""
    return [word for word in argv if not word.startswith("-")][:1]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, dispatch, and turn a HumanSegError into one line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(chosen_verb(argv)).parse_args(argv)
    try:
        with one_line_warnings(args.verb):
            return int(args.run(args) or 0)
    except HumanSegError as error:
        print(f"humanseg {args.verb}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"humanseg {args.verb}: interrupted", file=sys.stderr)
        return 130
