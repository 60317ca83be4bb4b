"""`humanseg demo`: every output image is written and they agree with each other."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from humanseg.cli import demo
from humanseg.errors import HumanSegError
from humanseg.io import read_image, read_mask
from humanseg.weights import DEFAULT_CONFIG, DEFAULT_MODEL


def run_demo(*argv: str) -> int:
    """Parse `argv` with the verb's own options and run it (as `humanseg demo` would)."""
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return demo.run(parser.parse_args(list(argv)))


def check_outputs(save_dir: Path) -> None:
    """All six images exist, have the photo's size, and tell one consistent story."""
    assert sorted(p.name for p in save_dir.iterdir()) == sorted(demo.OUTPUT_FILES)
    photo = data.astronaut()
    assert np.array_equal(read_image(save_dir / "input.png"), photo)
    mask = read_mask(save_dir / "mask.png")
    assert mask.shape == photo.shape[:2] and set(np.unique(mask)) <= {0, 255}
    cutout = cv2.imread(str(save_dir / "cutout.png"), cv2.IMREAD_UNCHANGED)
    assert cutout.shape == (*photo.shape[:2], 4)
    alpha = cutout[..., 3]
    # mask = person > 0.5 and alpha = round(255 * person): they agree wherever alpha is not
    # within rounding of 127.5 (a random model leaves many pixels at exactly 0.5).
    decided = np.abs(alpha.astype(int) * 2 - 255) > 2
    assert decided.mean() > 0.2
    assert np.array_equal((mask == 255)[decided], (alpha >= 128)[decided])
    overlay = read_image(save_dir / "overlay.png")
    assert np.array_equal(overlay[mask == 0], photo[mask == 0])
    for name in ("background_replaced.png", "background_blurred.png"):
        composed = read_image(save_dir / name)
        opaque = alpha == 255  # pure person: the photo itself
        assert np.array_equal(composed[opaque], photo[opaque])


def test_demo_with_a_given_model(tmp_path: Path, capsys, write_model) -> None:
    config, model_path = write_model(tmp_path / "model")
    save_dir = tmp_path / "demo"
    code = run_demo(
        "--save_dir", str(save_dir), "--config", str(config), "--model_path", str(model_path)
    )
    assert code == 0
    check_outputs(save_dir)
    assert "wrote 6 images" in capsys.readouterr().out


@pytest.mark.skipif(
    not DEFAULT_MODEL.is_file() or not DEFAULT_CONFIG.is_file(),
    reason="the packaged default model (src/humanseg/weights/default.*) is not trained yet",
)
def test_demo_with_the_packaged_model(tmp_path: Path) -> None:
    """The packaged model finds the astronaut: a sizeable person region, mostly in the middle."""
    save_dir = tmp_path / "demo"
    assert run_demo("--save_dir", str(save_dir)) == 0
    check_outputs(save_dir)
    mask = read_mask(save_dir / "mask.png") > 0
    assert 0.15 < mask.mean() < 0.8
    # Regions read off the photo: her face and the middle of her suit are person; the wall at
    # the top right and the flag at the top left are background.
    assert mask[70:140, 190:260].mean() > 0.9
    assert mask[300:420, 170:290].mean() > 0.8
    assert mask[:60, 450:].mean() < 0.1
    assert mask[:200, :60].mean() < 0.1


def test_missing_packaged_model_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    import humanseg.weights

    config = tmp_path / "default.yml"
    config.write_text("model: {type: PPHumanSegLite, num_classes: 2}\n")
    monkeypatch.setattr(humanseg.weights, "DEFAULT_CONFIG", config)
    monkeypatch.setattr(humanseg.weights, "DEFAULT_MODEL", tmp_path / "default.pt")
    with pytest.raises(HumanSegError, match=r"default\.pt: packaged default model file is missing"):
        run_demo("--save_dir", str(tmp_path / "demo"))
    with pytest.raises(HumanSegError, match="give both --config and --model_path"):
        run_demo("--save_dir", str(tmp_path / "demo"), "--config", "some.yml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.yml"]


def test_bad_save_dirs_are_refused_before_the_model_loads(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "demo" / "mask.png").mkdir(parents=True)
    missing = ["--config", str(tmp_path / "no.yml"), "--model_path", str(tmp_path / "no.pt")]
    for save_dir, problem in (("notes.txt", "is a file, expected a folder"),
                              ("notes.txt/demo", "notes.txt is a file, not a folder"),
                              ("demo", r"mask\.png: is a folder, expected a file")):
        with pytest.raises(HumanSegError, match=problem):
            run_demo("--save_dir", str(tmp_path / save_dir), *missing)
    assert (tmp_path / "notes.txt").read_text() == "x"
