"""The humanseg command itself: every verb is wired, and user errors are one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from humanseg.cli import VERBS, build_parser


def test_every_verb_has_a_parser_and_a_run_function() -> None:
    parser = build_parser()
    for verb in VERBS:
        args = parser.parse_args(_minimal_args(verb))
        assert callable(args.run), verb


def _minimal_args(verb: str) -> list[str]:
    """Arguments that parse for each verb (values need not exist: nothing runs)."""
    required = {
        "train": ["--config", "c.yml"],
        "val": ["--config", "c.yml", "--model_path", "m.pt"],
        "prepare-coco": ["--coco-root", "coco", "--out", "out"],
        "convert-paddle": ["--src", "m.pdparams", "--config", "c.yml", "--dst", "m.pt"],
        "export": ["--output", "m.onnx"],
        "video": ["--input", "v.mp4", "--output", "o.mp4"],
        "info": ["--config", "c.yml"],
    }
    return [verb, *required.get(verb, [])]


def test_missing_image_is_one_line_on_stderr_with_exit_2(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.jpg"
    result = subprocess.run(
        [sys.executable, "-m", "humanseg.cli", "predict", str(missing),
         "--save_dir", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"humanseg predict: error: {missing}: no such image file or folder"
    ]
    assert not (tmp_path / "out").exists()
