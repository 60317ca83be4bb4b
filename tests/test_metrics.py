"""SegMetrics: confusion-matrix scores and the connectivity score against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from humanseg.errors import HumanSegError
from humanseg.metrics import SegMetrics

LABEL = np.array([[0, 0, 1, 1], [0, 1, 1, 255]])
PRED = np.array([[0, 1, 1, 1], [0, 0, 1, 1]])
# valid pixels: 7. label 0 at 3 pixels, predicted 0, 1, 0 -> row [2, 1];
# label 1 at 4 pixels, predicted 1, 1, 0, 1 -> row [1, 3]. Confusion [[2, 1], [1, 3]].


def test_hand_computed_scores() -> None:
    metrics = SegMetrics(num_classes=2)
    metrics.update(PRED[None], LABEL[None])
    assert metrics.confusion.tolist() == [[2, 1], [1, 3]]
    scores = metrics.compute()
    # IoU0 = 2 / (3 + 3 - 2) = 1/2, IoU1 = 3 / (4 + 4 - 3) = 3/5
    assert scores["class_iou"] == pytest.approx([1 / 2, 3 / 5])
    assert scores["miou"] == pytest.approx(0.55)
    assert scores["acc"] == pytest.approx(5 / 7)
    assert scores["class_acc"] == pytest.approx([2 / 3, 3 / 4])
    # kappa: p_o = 5/7, p_e = (3 * 3 + 4 * 4) / 49 = 25/49 -> (35 - 25) / (49 - 25) = 5/12
    assert scores["kappa"] == pytest.approx(5 / 12)
    # Dice: 2 * 2 / (3 + 3) = 2/3, 2 * 3 / (4 + 4) = 3/4
    assert scores["class_dice"] == pytest.approx([2 / 3, 3 / 4])
    assert scores["dice"] == pytest.approx(17 / 24)


def test_connectivity_is_mean_over_images_of_one_minus_sc() -> None:
    perfect = np.zeros((8, 5), dtype=np.int64)
    perfect[1:7, 1:4] = 1
    split = perfect.copy()
    split[[2, 4], 1:4] = 0
    metrics = SegMetrics(num_classes=2)
    metrics.update(torch.from_numpy(perfect[None]), torch.from_numpy(perfect[None]))
    metrics.update(split, perfect)  # a single [H, W] image is accepted too
    # perfect image: 1; the split person (tests/test_sc_loss.py): 1 - 125/252
    assert metrics.compute()["connectivity"] == pytest.approx((1 + (1 - 125 / 252)) / 2)
    assert metrics.num_images == 2


def test_streaming_equals_one_batch() -> None:
    rng = np.random.default_rng(2)
    pred = rng.integers(0, 3, size=(4, 9, 7))
    label = rng.integers(0, 3, size=(4, 9, 7))
    label[rng.random(label.shape) < 0.1] = 255
    whole, streamed = SegMetrics(3), SegMetrics(3)
    whole.update(pred, label)
    streamed.update(pred[:1], label[:1])
    streamed.update(pred[1:], label[1:])
    assert whole.compute() == streamed.compute()
    independent = np.zeros((3, 3), dtype=np.int64)
    for p, g in zip(pred.ravel(), label.ravel(), strict=True):
        if g != 255:
            independent[g, p] += 1
    assert whole.confusion.tolist() == independent.tolist()


def test_absent_class_is_undefined_not_zero() -> None:
    metrics = SegMetrics(num_classes=3)
    metrics.update(PRED[None], LABEL[None])  # class 2 neither labelled nor predicted
    scores = metrics.compute()
    assert math.isnan(scores["class_iou"][2])
    assert scores["miou"] == pytest.approx(0.55)
    metrics.reset()
    assert metrics.confusion.sum() == 0 and math.isnan(metrics.compute()["miou"])


@pytest.mark.parametrize(
    ("pred", "label", "message"),
    [
        (np.zeros((1, 2, 3), int), np.zeros((1, 3, 2), int), "differs from label shape"),
        (np.full((1, 2, 2), 2), np.zeros((1, 2, 2), int), "pred has class ids outside 0..1"),
        (np.zeros((1, 2, 2), int), np.full((1, 2, 2), 7), "label has class ids"),
        (np.zeros((1, 2, 2)), np.zeros((1, 2, 2), int), "integer class ids"),
        (np.zeros((1, 1, 2, 2), int), np.zeros((1, 1, 2, 2), int), r"\[N, H, W\]"),
    ],
)
def test_bad_updates(pred: np.ndarray, label: np.ndarray, message: str) -> None:
    with pytest.raises(HumanSegError, match=message):
        SegMetrics(2).update(pred, label)


def test_bad_num_classes() -> None:
    with pytest.raises(HumanSegError, match="num_classes"):
        SegMetrics(1)
