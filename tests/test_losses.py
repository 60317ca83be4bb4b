"""Cross-entropy, Dice, Lovász-Softmax, MixedLoss and the config builders, on hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from humanseg.errors import HumanSegError
from humanseg.losses import (
    LOSSES,
    CrossEntropyLoss,
    DiceLoss,
    LovaszSoftmaxLoss,
    MixedLoss,
    SemanticConnectivityLoss,
    build_loss,
    build_loss_from_config,
)


def two_pixel_batch(with_ignored: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel a: logits (0, ln 3), label 1 (p = 1/4, 3/4); pixel b: logits (0, 0), label 0;
    optionally pixel c: logits (5, -5) with label 255 (ignored)."""
    columns = [[0.0, 0.0], [math.log(3.0), 0.0]]
    labels = [1, 0]
    if with_ignored:
        columns[0].append(5.0)
        columns[1].append(-5.0)
        labels.append(255)
    logits = torch.tensor(columns).reshape(1, 2, 1, -1).requires_grad_(True)
    return logits, torch.tensor(labels).reshape(1, 1, -1)


def test_cross_entropy_hand_values() -> None:
    logits, labels = two_pixel_batch()
    expected = (math.log(4 / 3) + math.log(2)) / 2  # -ln(3/4), -ln(1/2)
    assert CrossEntropyLoss()(logits, labels).item() == pytest.approx(expected)
    weighted = (3 * math.log(4 / 3) + 1 * math.log(2)) / (3 + 1)  # weight [1, 3]
    assert CrossEntropyLoss(weight=[1, 3])(logits, labels).item() == pytest.approx(weighted)
    hardest = CrossEntropyLoss(top_k_percent_pixels=0.5)(logits, labels)
    assert hardest.item() == pytest.approx(math.log(2))


def test_cross_entropy_ignores_pixels() -> None:
    logits, labels = two_pixel_batch(with_ignored=True)
    expected = (math.log(4 / 3) + math.log(2)) / 2
    assert CrossEntropyLoss()(logits, labels).item() == pytest.approx(expected)
    per_all_pixels = (math.log(4 / 3) + math.log(2)) / 3
    value = CrossEntropyLoss(avg_non_ignore=False)(logits, labels).item()
    assert value == pytest.approx(per_all_pixels)
    all_ignored = torch.full_like(labels, 255)
    loss = CrossEntropyLoss()(logits, all_ignored)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_dice_hand_values() -> None:
    logits, labels = two_pixel_batch(with_ignored=True)
    # class 0: intersection 1/2, |P| = 1/4 + 1/2, |Y| = 1 -> 1 - (2 * 1/2 + 1) / (7/4 + 1) = 3/11
    # class 1: intersection 3/4, |P| = 3/4 + 1/2, |Y| = 1 -> 1 - (3/2 + 1) / (9/4 + 1) = 3/13
    assert DiceLoss()(logits, labels).item() == pytest.approx((3 / 11 + 3 / 13) / 2)
    weighted = DiceLoss(weight=[1, 3])(logits, labels).item()
    assert weighted == pytest.approx((3 / 11 + 3 * 3 / 13) / 4)


def test_lovasz_hand_value() -> None:
    # both pixels labelled 1 with p1 = 0.8 and 0.6: errors 0.2, 0.4; only class 1 is present.
    # sorted errors (0.4, 0.2); Jaccard loss of {b} = 1/2, of {b, a} = 2/2:
    # 0.4 * (1/2 - 0) + 0.2 * (1 - 1/2) = 0.3
    logits = torch.tensor([[0.0, 0.0], [math.log(4.0), math.log(1.5)]]).reshape(1, 2, 1, 2)
    labels = torch.ones(1, 1, 2, dtype=torch.long)
    assert LovaszSoftmaxLoss()(logits, labels).item() == pytest.approx(0.3)


def lovasz_by_set_function(probs: np.ndarray, labels: np.ndarray, classes: str) -> float:
    """Lovász extension evaluated from its definition: increments of the Jaccard set function."""
    class_losses = []
    for class_id in range(probs.shape[1]):
        truth = labels == class_id
        if classes == "present" and not truth.any():
            continue
        errors = np.abs(truth - probs[:, class_id])
        order = np.argsort(-errors, kind="stable")

        def jaccard_loss(members: set[int], truth: np.ndarray = truth) -> float:
            union = set(np.flatnonzero(truth)) | members
            return len(members) / len(union) if union else 0.0

        value, chosen = 0.0, set()
        for pixel in order:
            before = jaccard_loss(chosen)
            chosen.add(int(pixel))
            value += errors[pixel] * (jaccard_loss(chosen) - before)
        class_losses.append(value)
    return float(np.mean(class_losses))


@pytest.mark.parametrize("classes", ["present", "all"])
def test_lovasz_matches_its_definition(classes: str) -> None:
    rng = np.random.default_rng(5)
    logits = torch.from_numpy(rng.normal(size=(2, 3, 4, 5)).astype(np.float64))
    labels = torch.from_numpy(rng.integers(0, 2, size=(2, 4, 5)))  # class 2 never labelled
    labels[0, 0] = 255
    valid = (labels != 255).reshape(-1).numpy()
    probs = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, 3).numpy()[valid]
    expected = lovasz_by_set_function(probs, labels.reshape(-1).numpy()[valid], classes)
    value = LovaszSoftmaxLoss(classes=classes)(logits, labels).item()
    assert value == pytest.approx(expected)


@pytest.mark.parametrize("loss_class", [CrossEntropyLoss, DiceLoss, LovaszSoftmaxLoss])
def test_losses_give_gradient_and_check_inputs(loss_class: type) -> None:
    logits, labels = two_pixel_batch(with_ignored=True)
    loss = loss_class()(logits, labels)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    with pytest.raises(HumanSegError, match="label value 7"):
        loss_class()(logits, torch.full_like(labels, 7))
    with pytest.raises(HumanSegError, match="does not match"):
        loss_class()(logits, labels[:, :, :2])


def test_class_weight_errors() -> None:
    logits, labels = two_pixel_batch()
    with pytest.raises(HumanSegError, match="weight has 3 entries"):
        CrossEntropyLoss(weight=[1, 1, 1])(logits, labels)
    with pytest.raises(HumanSegError, match="weight must be"):
        DiceLoss(weight=[1, -1])
    with pytest.raises(HumanSegError, match="weight must be"):
        CrossEntropyLoss(weight="heavy")


def test_mixed_loss_is_the_weighted_sum_with_named_terms() -> None:
    logits, labels = two_pixel_batch()
    cross_entropy = CrossEntropyLoss()(logits, labels).item()
    dice = DiceLoss()(logits, labels).item()
    mixed = MixedLoss([CrossEntropyLoss(), DiceLoss(), DiceLoss()], [1.0, 0.5, 2])
    total, terms = mixed.forward_terms(logits, labels)
    assert total.item() == pytest.approx(cross_entropy + 2.5 * dice)
    assert list(terms) == ["CrossEntropyLoss", "DiceLoss", "DiceLoss_2"]
    assert terms["DiceLoss_2"].item() == pytest.approx(dice)
    assert not terms["DiceLoss"].requires_grad
    with pytest.raises(HumanSegError, match="one number per loss"):
        MixedLoss([CrossEntropyLoss()], [1, 2])


def test_build_loss_from_paddleseg_config_forms() -> None:
    rng = np.random.default_rng(0)
    logits = torch.from_numpy(rng.normal(size=(2, 2, 8, 8)).astype(np.float32))
    logits.requires_grad_(True)
    labels = torch.from_numpy(rng.integers(0, 2, size=(2, 8, 8)))
    cross_entropy = CrossEntropyLoss()(logits, labels).item()
    connectivity = SemanticConnectivityLoss()(logits, labels).item()
    nested = {
        "types": [
            {
                "type": "MixedLoss",
                "losses": [{"type": "CrossEntropyLoss"}, {"type": "SemanticConnectivityLoss"}],
                "coef": [1, 0.1],
            }
        ],
        "coef": [1],
    }
    total, terms = build_loss_from_config(nested)(logits, labels)
    assert total.item() == pytest.approx(cross_entropy + 0.1 * connectivity)
    assert set(terms) == {"MixedLoss.CrossEntropyLoss", "MixedLoss.SemanticConnectivityLoss"}
    flat = {"types": [{"type": "CrossEntropyLoss"}, {"type": "SemanticConnectivityLoss"}]}
    total, terms = build_loss_from_config({**flat, "coef": [1, 0.1]})(logits, labels)
    assert total.item() == pytest.approx(cross_entropy + 0.1 * connectivity)
    assert terms["SemanticConnectivityLoss"].item() == pytest.approx(connectivity)
    total.backward()
    assert logits.grad.abs().sum() > 0


def test_build_loss_passes_paddleseg_arguments() -> None:
    loss = build_loss(
        {"type": "SemanticConnectivityLoss", "ignore_index": 0, "max_pred_num_conn": 3}
    )
    assert (loss.ignore_index, loss.max_pred_num_conn, loss.use_argmax) == (0, 3, True)
    weighted = build_loss({"type": "CrossEntropyLoss", "weight": [1, 2], "ignore_index": 9})
    assert weighted.weight.tolist() == [1.0, 2.0] and weighted.ignore_index == 9
    assert set(LOSSES) >= {"CrossEntropyLoss", "DiceLoss", "LovaszSoftmaxLoss", "MixedLoss"}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"types": [{"type": "FocalLoss"}], "coef": [1]},
            r"loss\.types\[0\]\.type: unknown loss 'FocalLoss'",
        ),
        ({"types": [{"type": "DiceLoss", "ignore_idx": 1}], "coef": [1]}, "ignore_idx"),
        ({"types": [{"ignore_index": 1}], "coef": [1]}, "`type` key"),
        ({"types": [{"type": "DiceLoss"}], "coef": [1, 2]}, "one number per loss"),
        ({"types": [{"type": "DiceLoss"}], "coef": ["one"]}, "coef must hold numbers"),
        ({"types": [{"type": "DiceLoss"}]}, r"coef: missing"),
        ({"types": [], "coef": []}, "non-empty list"),
        ({"types": [{"type": "DiceLoss"}], "coef": [1], "weights": 1}, "unknown key"),
        ({"types": [{"type": "MixedLoss", "losses": []}], "coef": [1]}, r"coef: missing"),
        ({"types": [{"type": "MixedLoss", "losses": "x", "coef": [1]}], "coef": [1]}, "list"),
        (
            {"types": [{"type": "SemanticConnectivityLoss", "max_pred_num_conn": "x"}],
             "coef": [1]},
            "SemanticConnectivityLoss",
        ),
        ("CrossEntropyLoss", "mapping"),
    ],
)
def test_bad_loss_configs_name_the_problem(config: object, message: str) -> None:
    with pytest.raises(HumanSegError, match=message):
        build_loss_from_config(config)
