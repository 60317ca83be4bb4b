"""Evaluation: scoring at label resolution, flip/scale averaging, the `val` verb and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from humanseg.cli import main
from humanseg.engine.evaluate import evaluate, infer_scores

pytestmark = pytest.mark.usefixtures("one_thread")


class FixedLogits(torch.nn.Module):
    """Ignores the image: returns the same person-logit map (resized to the input) every time."""

    num_classes = 2

    def __init__(self, person_logit: torch.Tensor, size_divisor: int = 1) -> None:
        super().__init__()
        self.person_logit = person_logit
        self.size_divisor = size_divisor
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.input_sizes: list[tuple[int, int]] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = tuple(images.shape[-2:])
        self.input_sizes.append(size)
        person = torch.nn.functional.interpolate(self.person_logit[None, None], size=size,
                                                 mode="nearest")[:, 0]
        logits = torch.stack([torch.zeros_like(person), person], dim=1)
        return logits.expand(len(images), -1, -1, -1)


def left_half(size: int) -> torch.Tensor:
    """A size x size map: 1 on the left half, 0 on the right."""
    mask = torch.zeros(size, size)
    mask[:, : size // 2] = 1
    return mask


def test_metrics_of_a_fixed_prediction_match_hand_counts() -> None:
    model = FixedLogits(left_half(8) * 4 - 2)  # person on the left half, background on the right
    image = torch.zeros(3, 8, 8)
    dataset = [(image, left_half(8).long()), (image, torch.zeros(8, 8, dtype=torch.long))]
    metrics = evaluate(model, dataset, num_classes=2)
    # background: TP 32 + 32 = 64, label area 32 + 64 = 96, predicted area 64 -> 64 / 96
    # person: TP 32, label area 32, predicted area 64 -> 32 / 64
    assert metrics["class_iou"] == pytest.approx([2 / 3, 1 / 2])
    assert metrics["miou"] == pytest.approx(7 / 12)
    assert metrics["acc"] == pytest.approx(96 / 128)


def test_logits_are_resized_to_a_larger_label() -> None:
    model = FixedLogits(left_half(8) * 4 - 2)
    dataset = [(torch.zeros(3, 8, 8), left_half(16).long())]  # label at twice the input size
    metrics = evaluate(model, dataset, num_classes=2)
    assert metrics["miou"] == pytest.approx(1.0)
    assert metrics["connectivity"] == pytest.approx(1.0)


def test_flip_averaging_flips_the_scores_back() -> None:
    person_logit = torch.full((8, 8), -1.0)
    person_logit[:, 0] = 3.0  # only column 0 is person
    scores = infer_scores(FixedLogits(person_logit), torch.zeros(1, 3, 8, 8), (8, 8),
                          flip_horizontal=True)
    # Column 0 and column 7 each get softmax at +3 once and at -1 once: person wins there;
    # elsewhere both passes say -1. Without the flip back, only column 0 would be person.
    prediction = scores.argmax(dim=1)[0]
    expected = torch.zeros(8, 8, dtype=torch.long)
    expected[:, [0, 7]] = 1
    assert torch.equal(prediction, expected)
    sigmoid = torch.sigmoid(torch.tensor([3.0, -1.0]))
    assert scores[0, 1, 0, 0].item() == pytest.approx(float(sigmoid.sum()))


def test_scales_round_to_the_model_divisor() -> None:
    model = FixedLogits(left_half(8) * 4 - 2, size_divisor=4)
    scores = infer_scores(model, torch.zeros(1, 3, 8, 8), (8, 8), scales=(0.5, 1.0, 1.3))
    assert model.input_sizes == [(4, 4), (8, 8), (12, 12)]  # 10.4 rounds to 12
    assert scores.shape == (1, 2, 8, 8)
    assert torch.equal(scores.argmax(dim=1)[0], left_half(8).long())


@pytest.fixture(scope="module")
def lite_run(
    tmp_path_factory: pytest.TempPathFactory, make_blob_dataset, blob_config
) -> tuple[Path, Path]:
    """A blob dataset config and an untrained PPHumanSegLite model file."""
    from humanseg.models import build_model

    root = make_blob_dataset(tmp_path_factory.mktemp("blobs"), train=4, val=3)
    config = root / "lite.yml"
    config.write_text(blob_config(root))
    torch.manual_seed(0)
    model_path = root / "model" / "model.pt"
    model_path.parent.mkdir()
    torch.save(build_model({"type": "PPHumanSegLite", "num_classes": 2}).state_dict(), model_path)
    return config, model_path


def test_val_verb_prints_and_writes_metrics_beside_the_model(lite_run, capsys) -> None:
    config, model_path = lite_run
    assert main(["val", "--config", str(config), "--model_path", str(model_path)]) == 0
    out = capsys.readouterr().out
    assert "mIoU" in out and "Kappa" in out and "Connectivity" in out and "Class IoU" in out
    written = json.loads((model_path.parent / "val_metrics.json").read_text())
    assert written["images"] == 3
    assert {"miou", "class_iou", "acc", "kappa", "dice", "connectivity"} <= set(written)
    assert len(written["class_iou"]) == 2


def test_aug_eval_writes_to_save_dir(lite_run, tmp_path: Path) -> None:
    config, model_path = lite_run
    code = main(["val", "--config", str(config), "--model_path", str(model_path.parent),
                 "--aug_eval", "--flip_horizontal", "--scales", "0.75", "1.0",
                 "--save_dir", str(tmp_path)])
    assert code == 0
    assert 0.0 <= json.loads((tmp_path / "val_metrics.json").read_text())["miou"] <= 1.0


def test_val_errors_are_one_line(lite_run, tmp_path: Path, capsys) -> None:
    config, model_path = lite_run
    missing = tmp_path / "nothing.pt"
    assert main(["val", "--config", str(config), "--model_path", str(missing)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("humanseg val: error:") and "nothing.pt" in error
    assert len(error.splitlines()) == 1
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage")
    assert main(["val", "--config", str(config), "--model_path", str(corrupt)]) == 2
    assert "corrupt.pt" in capsys.readouterr().err
    hrnet = tmp_path / "hrnet.yml"
    hrnet.write_text(config.read_text().replace(
        "model: {type: PPHumanSegLite, num_classes: 2}",
        "model: {type: FCN, backbone: {type: HRNet_W18_Small_V1}, num_classes: 2}"))
    assert main(["val", "--config", str(hrnet), "--model_path", str(model_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "model.pt" in error and len(error.splitlines()) == 1
    assert not (tmp_path / "val_metrics.json").exists()
