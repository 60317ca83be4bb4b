"""The humanseg command itself: every verb is wired, and user errors are one line, exit 2."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from humanseg.cli import VERBS, build_parser, main


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


def verb_options(verb: str) -> list[argparse.Action]:
    """The options (and positionals) a verb's module adds to its parser."""
    parser = argparse.ArgumentParser()
    importlib.import_module(VERBS[verb][0]).add_arguments(parser)
    return [action for action in parser._actions if not isinstance(action, argparse._HelpAction)]


def help_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """What `humanseg ARGV --help` prints, with the line wrapping undone."""
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("verb", list(VERBS))
def test_every_option_has_help_and_help_shows_its_default(verb: str, capsys) -> None:
    shown = help_text([verb], capsys)
    for action in verb_options(verb):
        assert action.help and action.help.strip(), f"{verb} {action.option_strings}: no help"
        unset = action.default is None or action.default is False
        if action.option_strings and not unset:
            assert f"(default: {action.default})" in shown or "default" in action.help, (
                f"{verb} {action.option_strings[0]}: default {action.default!r} not shown")


def test_top_level_help_speaks_to_users(capsys) -> None:
    shown = help_text([], capsys)
    assert "humanseg predict photo.jpg" in shown and "humanseg VERB --help" in shown
    for verb in VERBS:
        assert verb in shown
    for internal in ("module", "add_arguments", "run("):
        assert internal not in shown
    assert "(default: output/result)" in help_text(["predict"], capsys)


def test_only_the_chosen_verbs_module_is_imported() -> None:
    code = ("import sys\nfrom humanseg.cli import VERBS, build_parser\nbuild_parser(['predict'])\n"
            "print(sorted(verb for verb, (module, _) in VERBS.items() if module in sys.modules), "
            "'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "['predict'] False"
