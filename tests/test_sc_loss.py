"""SemanticConnectivityLoss: hand-worked cases, an independent slow reference, gradient, errors."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from scipy import ndimage

from humanseg.errors import HumanSegError
from humanseg.losses import SemanticConnectivityLoss
from humanseg.ops import connectivity_kernels
from humanseg.ops.ccl import label_components
from humanseg.ops.connectivity import (
    PlaneSoftmax,
    TwoClassMargin,
    hard_connectivity_loss,
    semantic_connectivity_per_image,
)
from humanseg.ops.connectivity_kernels import index_pieces

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def one_hot_logits(pred: np.ndarray, num_classes: int, margin: float = 30.0) -> torch.Tensor:
    """Logits whose softmax is one-hot in float32 (exp(-60) underflows next to 1)."""
    one_hot = np.eye(num_classes, dtype=np.float32)[pred].transpose(0, 3, 1, 2)
    return torch.from_numpy(margin * (2 * one_hot - 1)).requires_grad_(True)


def sc_value(pred: np.ndarray, label: np.ndarray, num_classes: int = 2, **kwargs) -> float:
    """The loss module on one-hot logits of `pred` ([N, H, W] or one [H, W] image)."""
    if pred.ndim == 2:
        pred, label = pred[None], label[None]
    loss = SemanticConnectivityLoss(**kwargs)
    return loss(one_hot_logits(pred, num_classes), torch.from_numpy(label)).item()


def reference_sc_loss(
    pred: np.ndarray,
    label: np.ndarray,
    ignore_index: int = 255,
    max_pred_num_conn: int = 10,
    structure: np.ndarray = EIGHT_CONNECTED,
    probabilities: np.ndarray | None = None,
    unmatched: str = "hard",
) -> float:
    """Slow, direct reading of docs/sc_loss.md for one image: one class and one pair at a time.

    `probabilities` [C, H, W] (softmax) turn areas into probability sums (one-hot when None);
    `unmatched="soft"` counts each unmatched predicted component by its mean probability.
    """
    valid = label != ignore_index
    classes = sorted(set(np.unique(label[valid])) | set(np.unique(pred[valid])))
    class_losses = []
    for class_id in classes:
        pred_mask = (pred == class_id) & valid
        label_mask = (label == class_id) & valid
        q = (pred == class_id).astype(np.float64)
        if probabilities is not None:
            q = probabilities[class_id].astype(np.float64)
        pred_ids, num_pred = ndimage.label(pred_mask, structure)
        label_ids, num_label = ndimage.label(label_mask, structure)
        if num_pred and num_label:
            kept = list(range(1, num_pred + 1))  # scipy numbers components in raster order
            if num_pred > 2 * num_label:
                kept = sorted(kept, key=lambda j: (-(pred_ids == j).sum(), j))[:max_pred_num_conn]
            iou = np.zeros((num_label, len(kept)))
            for i in range(num_label):
                for column, j in enumerate(kept):
                    g, p = label_ids == i + 1, pred_ids == j
                    if (g & p).any():
                        intersection = q[g & p].sum()
                        iou[i, column] = intersection / (g.sum() + q[p].sum() - intersection)
            connectivity_sum = sum(row[row > 0].mean() for row in iou if (row > 0).any())
            lone = [j for column, j in enumerate(kept) if not iou[:, column].any()]
            if unmatched == "soft":
                lone_count = sum(q[pred_ids == j].mean() for j in lone)
            else:
                lone_count = len(lone)
            class_losses.append(1 - connectivity_sum / (num_label + lone_count))
        else:  # one side is empty: missed area on the label's pixels, false alarm on the pred's
            missed = (1 - q[label_mask]).sum()
            false_alarm = q[pred_mask].sum()
            class_losses.append((missed + false_alarm) / label.size)
    return float(np.mean(class_losses)) if class_losses else 0.0


def test_perfect_prediction_is_zero() -> None:
    label = np.zeros((6, 6), dtype=np.int64)
    label[1:5, 1:5] = 1
    assert sc_value(label, label) == 0.0


def test_person_split_into_three_fragments() -> None:
    label = np.zeros((8, 5), dtype=np.int64)
    label[1:7, 1:4] = 1  # one person, 6 x 3 = 18 px
    pred = label.copy()
    pred[[2, 4], 1:4] = 0  # fragments: row 1 (3 px), row 3 (3 px), rows 5-6 (6 px)
    # person: 3 > 2 * 1 components, the cap (10) keeps all; mean IoU = (3 + 3 + 6) / 18 / 3 = 2/9
    person_loss = 1 - 2 / 9
    # background: label 40 - 18 = 22 px, prediction 22 + 6 = 28 px, one component each
    background_loss = 1 - 22 / 28
    assert sc_value(pred, label) == pytest.approx((person_loss + background_loss) / 2, abs=1e-6)
    assert (person_loss + background_loss) / 2 == pytest.approx(125 / 252)


def test_missed_component() -> None:
    label = np.zeros((6, 7), dtype=np.int64)
    label[1:3, 1:3] = 1  # A: 4 px
    label[1:4, 4:6] = 1  # B: 6 px
    pred = np.zeros_like(label)
    pred[1:3, 1:3] = 1  # only A found
    # person: IoU(A) = 1, B touches nothing (0); connectivity = (1 + 0) / (2 + 0 lone) = 1/2
    # background: label 42 - 10 = 32 px, prediction 42 - 4 = 38 px: IoU 32/38
    expected = ((1 - 1 / 2) + (1 - 32 / 38)) / 2
    assert sc_value(pred, label) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(25 / 76)


def test_false_alarm_only() -> None:
    label = np.zeros((5, 5), dtype=np.int64)  # no person in the label
    pred = label.copy()
    pred[1:3, 1:3] = 1  # a 4 px false alarm
    # person: prediction only -> (0 missed + 4 false alarm) / 25; background: IoU 21/25
    expected = (4 / 25 + (1 - 21 / 25)) / 2
    assert sc_value(pred, label) == pytest.approx(expected, abs=1e-6)
    # and the mirror case, a person missed entirely: (4 missed + 0) / 25, background 21/25
    assert sc_value(label, pred) == pytest.approx(expected, abs=1e-6)


def test_three_class_map() -> None:
    label = np.zeros((4, 6), dtype=np.int64)
    label[:, 2:4] = 1
    label[:, 4:6] = 2  # three 8 px columns
    pred = label.copy()
    pred[1, 2:4] = 2  # class 1 cut in two (2 px + 4 px); class 2 grows to 10 px
    # class 0: perfect, 0; class 1: 2 components, not > 2 * 1, IoUs 2/8, 4/8 -> 1 - 3/8
    # class 2: IoU 8/10 -> 1 - 4/5
    expected = (0 + (1 - 3 / 8) + (1 - 4 / 5)) / 3
    assert sc_value(pred, label, num_classes=3) == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(11 / 40)


def test_ignored_pixels_count_for_neither_side() -> None:
    label = np.zeros((4, 6), dtype=np.int64)
    label[1:3, 1:5] = 1
    label[:, 3] = 255  # an ignored column through the person
    pred = np.zeros_like(label)
    pred[1:3, 1:5] = 1
    pred[:, 3] = 1  # prediction differs from the label only where it is ignored
    # ignored pixels leave both maps: person = {cols 1-2} + {col 4} on both sides, same for
    # the background left and right of column 3, so every IoU is 1
    assert sc_value(pred, label) == 0.0
    fully_ignored = np.full_like(label, 255)
    # an image with nothing counted scores 0 and still counts in the batch mean
    split = pred.copy()
    split[1:3, 1:3] = 0
    single = sc_value(split, label)
    batch = sc_value(np.stack([split, pred]), np.stack([label, fully_ignored]))
    assert single > 0
    assert batch == pytest.approx(single / 2, abs=1e-6)


@pytest.mark.parametrize("ignore_index", [-1, 1000])
def test_ignore_index_outside_the_label_dtype_range(ignore_index: int) -> None:
    rng = np.random.default_rng(4)
    pred, label = random_maps(rng, 12, 3, 1.0)
    moved = np.where(label == 255, ignore_index, label)
    value = sc_value(pred, moved, num_classes=3, ignore_index=ignore_index)
    assert value == pytest.approx(reference_sc_loss(pred, label), abs=1e-6)


def test_empty_image_is_zero() -> None:
    background = np.zeros((5, 5), dtype=np.int64)
    assert sc_value(background, background) == 0.0  # no person on either side


def test_cap_keeps_the_largest_predicted_components() -> None:
    label = np.zeros((5, 29), dtype=np.int64)
    label[2, 1:28] = 1  # a 27 px person
    pred = np.zeros_like(label)
    pred[2, 1:20:2] = 1  # 10 one-pixel fragments at columns 1, 3, ..., 19
    pred[2, 21:23] = 1  # two 2 px fragments, last in raster order
    pred[2, 24:26] = 1
    # 12 > 2 * 1 components: keep the 10 largest = both 2 px + the first 8 singles
    # mean IoU = (2 + 2 + 8 * 1) / 27 / 10 = 2/45 (raster-first would give 10/27/10 = 1/27)
    person_loss = 1 - 2 / 45
    background_loss = 1 - 118 / 131  # label 145 - 27, prediction 145 - 14, one component each
    expected = (person_loss + background_loss) / 2
    assert sc_value(pred, label) == pytest.approx(expected, abs=1e-6)
    # with a cap of 12 every fragment counts: (10 + 4) / 27 / 12
    uncapped = (1 - 14 / 27 / 12 + background_loss) / 2
    assert sc_value(pred, label, max_pred_num_conn=12) == pytest.approx(uncapped, abs=1e-6)


def test_cap_drops_lone_specks_beyond_the_limit() -> None:
    label = np.zeros((7, 16), dtype=np.int64)
    label[1:4, 1:4] = 1  # 9 px person
    pred = label.copy()
    pred[5, 1:16:2] = 1  # 8 specks
    pred[1, 6:13:2] = 1  # 4 more: 13 predicted components, 12 touch nothing
    # cap 10: the person + 9 specks, all 1 px (ties by raster order); connectivity 1 / (1 + 9)
    # background: label 112 - 9 = 103 px, prediction 103 - 12 = 91 px, one component each
    expected = ((1 - 1 / 10) + (1 - 91 / 103)) / 2
    assert sc_value(pred, label) == pytest.approx(expected, abs=1e-6)


def test_connectivity_argument_changes_diagonal_joins() -> None:
    label = np.zeros((4, 4), dtype=np.int64)
    label[1:3, 1:3] = 1
    pred = np.zeros_like(label)
    pred[1, 1] = pred[2, 2] = 1  # two diagonal pixels: one component with 8-, two with 4-
    for connectivity, structure in ((8, EIGHT_CONNECTED), (4, FOUR_CONNECTED)):
        expected = reference_sc_loss(pred, label, structure=structure)
        assert sc_value(pred, label, connectivity=connectivity) == pytest.approx(expected)
    # 8: person IoU 2/4 -> 1/2; background: label 12 px (one), prediction 14 px (one) -> 12/14
    assert sc_value(pred, label) == pytest.approx((1 / 2 + 2 / 14) / 2, abs=1e-6)


def blobby_map(rng: np.random.Generator, size: int, num_classes: int, smooth: float) -> np.ndarray:
    """Argmax of smoothed noise: blobs for smooth ~2, salt-and-pepper for smooth 0."""
    noise = ndimage.gaussian_filter(rng.random((num_classes, size, size)), (0, smooth, smooth))
    return noise.argmax(0)


def random_maps(
    rng: np.random.Generator, size: int, num_classes: int, smooth: float
) -> tuple[np.ndarray, np.ndarray]:
    """A (prediction, label) pair of one of three kinds, with 5% ignored label pixels: a
    perturbed copy; an unrelated speckled prediction (many components: the cap); a copy with
    class 1 never predicted and class 2 never labelled (the one-side branches; 3 classes)."""
    label = blobby_map(rng, size, num_classes, smooth)
    kind = rng.integers(3)
    if kind == 1:
        pred = blobby_map(rng, size, num_classes, 0.0)
    else:
        pred = label.copy()
        for _ in range(rng.integers(1, 8)):
            row, col = rng.integers(0, size - 2, size=2)
            pred[row : row + rng.integers(1, 4), col : col + rng.integers(1, 4)] = rng.integers(
                num_classes
            )
        if kind == 2:
            pred[pred == 1] = 0
            label[label == num_classes - 1] = 0
    label[rng.random(label.shape) < 0.05] = 255
    return pred, label


@pytest.fixture(params=[1, 2], ids=["1_thread", "2_threads"])
def torch_threads(request: pytest.FixtureRequest) -> Iterator[int]:
    """Run the test with 1 and with 2 torch threads."""
    previous = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(previous)


@pytest.mark.parametrize("connectivity", [8, 4])
def test_matches_reference_on_random_maps(connectivity: int, torch_threads: int) -> None:
    rng = np.random.default_rng(7)
    structure = EIGHT_CONNECTED if connectivity == 8 else FOUR_CONNECTED
    for smooth in (0.0, 1.0, 2.5, 2.5):
        maps = [random_maps(rng, 14, 3, smooth) for _ in range(6)]
        pred, label = (np.stack(pair) for pair in zip(*maps, strict=True))
        expected = [
            reference_sc_loss(p, g, max_pred_num_conn=4, structure=structure)
            for p, g in zip(pred, label, strict=True)
        ]
        hard = hard_connectivity_loss(pred, label, 255, 4, connectivity)
        np.testing.assert_allclose(hard.numpy(), expected, atol=1e-6)
        soft = SemanticConnectivityLoss(max_pred_num_conn=4, connectivity=connectivity)
        value = soft(one_hot_logits(pred, 3), torch.from_numpy(label)).item()
        assert value == pytest.approx(float(np.mean(expected)), abs=1e-6)


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("unmatched", ["hard", "soft"])
def test_gradient_matches_finite_differences(num_classes: int, unmatched: str) -> None:
    rng = np.random.default_rng(num_classes)
    maps = [random_maps(rng, 8, num_classes, smooth) for smooth in (0.0, 1.0, 2.0, 2.0)]
    pred, label = (np.stack(pair) for pair in zip(*maps, strict=True))
    label[0] = np.where(label[0] == 255, 255, 0)  # the last class only predicted: false alarm
    label[1, 2:5, 2:5] = 1
    pred[1][pred[1] == 1] = 0  # class 1 labelled but never predicted: missed
    label[2], pred[2] = 0, 0
    label[2, 4:, :4] = pred[2, 4:, :4] = 1
    pred[2, 1:3, 5:7] = 1  # a class-1 blob touching no label component (the unmatched term)
    one_hot = np.eye(num_classes)[pred].transpose(0, 3, 1, 2)
    logits = torch.from_numpy(2.0 * one_hot + rng.normal(0, 0.3, one_hot.shape))
    logits.requires_grad_(True)
    loss = SemanticConnectivityLoss(max_pred_num_conn=3, unmatched=unmatched)
    labels = torch.from_numpy(label)
    assert torch.autograd.gradcheck(lambda x: loss.per_image(x, labels), (logits,))


def test_kernels_compile_where_numba_has_no_cache_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only install with no writable home: numba's `cache=True` raises at import (seen
    as an unprivileged user); the kernels then compile without a cache instead."""
    real_njit = connectivity_kernels.njit

    def no_cache_folder(**options: object) -> object:
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available for file 'f.py'")
        return real_njit(**options)

    monkeypatch.setattr(connectivity_kernels, "njit", no_cache_folder)
    total = connectivity_kernels.compiled(lambda values: values.sum())
    assert total(np.arange(5)) == 10

    def broken(**options: object) -> object:
        raise RuntimeError("some other numba failure")

    monkeypatch.setattr(connectivity_kernels, "njit", broken)
    with pytest.raises(RuntimeError, match="other numba failure"):
        connectivity_kernels.compiled(lambda values: values.sum())


def test_two_class_margin_matches_plane_softmax_in_value_and_gradient() -> None:
    """The compiled two-class route against torch's autograd of the same logistic form, with
    exact ties (margin 0: pred 0, no gradient through |m|) and a missed class."""
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, (3, 2, 16, 16)).astype(np.float32)
    logits[0, 1, :4] = logits[0, 0, :4]  # ties
    labels = (rng.random((3, 16, 16)) > 0.5).astype(np.int64)
    labels[1, 3:9, 3:9] = 1
    logits[1, 1] = logits[1, 0] - 1.0  # image 1 predicts no person: class 1 is missed
    labels[2, 0] = 255
    values, grads = [], []
    for form in (TwoClassMargin, PlaneSoftmax):
        leaf = torch.from_numpy(logits).requires_grad_(True)
        per_image = semantic_connectivity_per_image(form(leaf), torch.from_numpy(labels), 2)
        (per_image * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
        values.append(per_image.detach().numpy())
        grads.append(leaf.grad.numpy())
    np.testing.assert_allclose(values[0], values[1], rtol=1e-6)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-9)
    assert (grads[0][0, :, :4] == 0).all()  # ties
    assert np.abs(grads[0][1]).max() > 0  # the missed class's gradient reaches its image
    assert isinstance(TwoClassMargin.for_logits(torch.zeros(1, 2, 4, 4)), TwoClassMargin)
    for other in (torch.zeros(1, 3, 4, 4), torch.zeros(1, 2, 4, 4, dtype=torch.bfloat16)):
        assert isinstance(TwoClassMargin.for_logits(other), PlaneSoftmax)


def test_one_gradient_step_raises_connectivity() -> None:
    label = np.zeros((1, 12, 12), dtype=np.int64)
    label[0, 2:10, 2:10] = 1  # an 8 x 8 person
    margin = np.where(label == 1, 4.0, -4.0)  # logit(person) - logit(background)
    margin[0, 5, 2:10] = -0.5  # a weakly wrong band cuts the person in two
    logits = torch.from_numpy(np.stack([-margin / 2, margin / 2], 1).astype(np.float32))
    logits.requires_grad_(True)
    labels = torch.from_numpy(label)
    loss = SemanticConnectivityLoss()(logits, labels)
    # before: person IoUs 24/64 and 32/64 -> connectivity 7/16; background IoU 80/88
    before = 1 - hard_connectivity_loss(logits.argmax(1), labels)
    assert before.item() == pytest.approx(1 - ((1 - 7 / 16) + (1 - 80 / 88)) / 2, abs=1e-6)
    loss.backward()
    # in the band, background probability inflates the background component: pushed down
    band_gradient = logits.grad[0, :, 5, 2:10]
    assert (band_gradient[0] > 0).all() and (band_gradient[1] < 0).all()
    with torch.no_grad():
        stepped = logits - 1000.0 * logits.grad  # one plain gradient-descent step
    after = 1 - hard_connectivity_loss(stepped.argmax(1), labels)
    assert after.item() > before.item()
    assert after.item() == pytest.approx(1.0)  # the band flips: one person, exact match
    assert SemanticConnectivityLoss()(stepped, labels).item() < loss.item()


@pytest.mark.parametrize("num_classes", [2, 3, 5])
def test_plane_softmax_matches_torch_softmax_and_argmax(num_classes: int) -> None:
    generator = torch.Generator().manual_seed(num_classes)
    logits = torch.randn(2, num_classes, 5, 6, generator=generator, dtype=torch.float64)
    class_map = torch.randint(0, num_classes, (2, 5, 6), generator=generator)
    weights = torch.rand(2, 5, 6, generator=generator, dtype=torch.float64)
    tied = logits.clone()
    tied[0, :, 0, 0] = 0.0  # an exact tie: the lower class wins, as with argmax
    for values, check_gradient in ((tied, False), (logits, True)):
        values = values.clone().requires_grad_(True)
        softmax = PlaneSoftmax(values)
        assert torch.equal(softmax.pred.long(), values.argmax(1))
        oracle = values.softmax(1)
        expected_pred = oracle.gather(1, values.argmax(1)[:, None])[:, 0]
        expected_map = oracle.gather(1, class_map[:, None])[:, 0]
        pairs = ((softmax.pred_probability(), expected_pred),
                 (softmax.probability(class_map), expected_map))
        for ours, theirs in pairs:
            torch.testing.assert_close(ours, theirs)
            if check_gradient:  # away from ties, where the argmax class's probability has a kink
                (ours_grad,) = torch.autograd.grad(
                    (ours * weights).sum(), values, retain_graph=True
                )
                (oracle_grad,) = torch.autograd.grad(
                    (theirs * weights).sum(), values, retain_graph=True
                )
                torch.testing.assert_close(ours_grad, oracle_grad)


def test_soft_value_uses_probability_sums() -> None:
    # one row of 3 pixels, label [1, 0, 0], prediction [1, 1, 0], each predicted class at
    # probability 3/4 (logit margin ln 3)
    margin = math.log(3.0)
    logits = torch.tensor([[[[-margin, -margin, margin]], [[margin, margin, -margin]]]]) / 2
    labels = torch.tensor([[[1, 0, 0]]])
    # person: I = 3/4 (pixel 0), S = 3/4 + 3/4, |g| = 1 -> IoU = 0.75 / (1 + 1.5 - 0.75) = 3/7
    # background: I = S = 3/4 (pixel 2), |g| = 2 -> IoU = 0.75 / 2 = 3/8
    expected = ((1 - 3 / 7) + (1 - 3 / 8)) / 2
    assert SemanticConnectivityLoss()(logits, labels).item() == pytest.approx(expected)


def test_one_side_branches_push_the_right_way() -> None:
    label = np.zeros((1, 5, 5), dtype=np.int64)
    pred = label.copy()
    pred[0, 1:3, 1:3] = 1  # a false alarm: pushing its person logit down lowers the loss
    logits = one_hot_logits(pred, 2, margin=1.0)
    SemanticConnectivityLoss()(logits, torch.from_numpy(label)).backward()
    assert (logits.grad[0, 1, 1:3, 1:3] > 0).all()
    missed = one_hot_logits(label, 2, margin=1.0)  # the person of `pred` missed entirely
    SemanticConnectivityLoss()(missed, torch.from_numpy(pred)).backward()
    assert (missed.grad[0, 1, 1:3, 1:3] < 0).all()


def test_value_equals_hard_definition_and_is_float_scalar_with_gradient() -> None:
    rng = np.random.default_rng(3)
    pred, label = random_maps(rng, 16, 2, 1.5)
    logits = one_hot_logits(pred[None], 2)
    loss = SemanticConnectivityLoss()(logits, torch.from_numpy(label[None]))
    assert loss.dim() == 0 and loss.requires_grad
    assert loss.item() == pytest.approx(reference_sc_loss(pred, label), abs=1e-6)
    hard = SemanticConnectivityLoss(use_argmax=False)(
        torch.from_numpy(pred[None]), torch.from_numpy(label[None])
    )
    assert hard.item() == pytest.approx(loss.item(), abs=1e-6)


def test_half_precision_logits_are_summed_in_float32() -> None:
    label = np.zeros((1, 200, 300), dtype=np.int64)
    label[0, 50:150, 50:250] = 1  # 100 x 200 = 20000 px: far beyond bfloat16's 8-bit precision
    pred = label.copy()
    pred[0, 100] = 0  # halves of 50 x 200 and 49 x 200 px
    # person: (10000 + 9800) / 20000 / 2 = 0.495; background: 40000 / 40200
    expected = ((1 - 0.495) + (1 - 40000 / 40200)) / 2
    logits = one_hot_logits(pred, 2).detach().to(torch.bfloat16)
    value = SemanticConnectivityLoss()(logits, torch.from_numpy(label))
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("connectivity", [8, 4])
def test_index_pieces_matches_numpy_grouping(connectivity: int) -> None:
    """Pieces, their sums, areas and first pixels against np.unique and np.bincount over the
    (component, agreeing label component) keys of every pixel, with ignored pixels."""
    rng = np.random.default_rng(connectivity)
    maps = [random_maps(rng, 12, 3, smooth) for smooth in (0.0, 1.0, 2.5, 0.0, 1.0)]
    pred, label = (np.stack(pair).astype(np.uint8) for pair in zip(*maps, strict=True))
    valid = label != 255
    assert not valid.all()
    probability = rng.random(pred.shape).astype(np.float32)
    pred_cc = label_components(pred, valid, connectivity)
    label_cc = label_components(label, valid, connectivity)
    pieces = index_pieces(pred, label, valid, probability, pred_cc, label_cc)

    matched = valid & (pred == label)
    keys = np.stack([pred_cc.ids.ravel(), np.where(matched, label_cc.ids, 0).ravel()], axis=1)
    unique_keys, inverse = np.unique(keys, axis=0, return_inverse=True)
    found = np.stack([pieces.piece_pred, pieces.piece_label], axis=1)
    order = np.lexsort((found[:, 1], found[:, 0]))
    np.testing.assert_array_equal(found[order], unique_keys)
    np.testing.assert_array_equal(found[pieces.piece_of], keys)  # each pixel's own piece
    sums = np.bincount(inverse.ravel(), weights=probability.ravel().astype(np.float64))
    np.testing.assert_allclose(pieces.piece_sum[order], sums, rtol=1e-12)
    for cc, area, first in (
        (pred_cc, pieces.pred_area, pieces.pred_first),
        (label_cc, pieces.label_area, pieces.label_first),
    ):
        np.testing.assert_array_equal(area, np.bincount(cc.ids.ravel(), minlength=cc.count + 1))
        np.testing.assert_array_equal(first[1:], cc.first_pixel[1:])


@pytest.mark.parametrize(
    ("logits", "labels", "message"),
    [
        (torch.zeros(2, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long), "logits must have shape"),
        (torch.zeros(2, 2, 8, 8), torch.zeros(2, 1, 8, 8, dtype=torch.long), "labels must have"),
        (torch.zeros(2, 2, 8, 8), torch.zeros(2, 8, 7, dtype=torch.long), "does not match"),
        (torch.zeros(2, 2, 8, 8), torch.full((2, 8, 8), 2), "label value 2 is outside 0..1"),
        (torch.zeros(2, 2, 8, 8), torch.full((2, 8, 8), -1), "label value -1"),
        (torch.zeros(2, 2, 8, 8), torch.zeros(2, 8, 8), "integer class ids"),
        (torch.zeros(2, 2, 8, 8, dtype=torch.long), torch.zeros(2, 8, 8), "floating point"),
        (torch.zeros(0, 2, 8, 8), torch.zeros(0, 8, 8, dtype=torch.long), "empty"),
    ],
)
def test_bad_inputs_raise_clear_errors(
    logits: torch.Tensor, labels: torch.Tensor, message: str
) -> None:
    with pytest.raises(HumanSegError, match=message):
        SemanticConnectivityLoss()(logits, labels)


def test_ignore_index_is_not_out_of_range_and_bad_arguments_are_refused() -> None:
    labels = torch.full((1, 4, 4), 255)
    assert SemanticConnectivityLoss()(torch.zeros(1, 2, 4, 4), labels).item() == 0.0
    with pytest.raises(HumanSegError, match="max_pred_num_conn"):
        SemanticConnectivityLoss(max_pred_num_conn=0)
    with pytest.raises(HumanSegError, match="connectivity"):
        SemanticConnectivityLoss(connectivity=6)


def row_logits(person_probability: list[float]) -> torch.Tensor:
    """[1, 2, 1, W] logits of a one-row image with the given person probability per pixel."""
    margin = torch.logit(torch.tensor(person_probability, dtype=torch.float64))
    return torch.stack([-margin / 2, margin / 2])[None, :, None, :]


def test_unmatched_soft_counts_a_lone_blob_by_its_mean_probability() -> None:
    # label [1, 1, 0, 0, 0, 0]; prediction [1, 1, 0, 1, 1, 0]: pixels 3-4 are a lone person blob
    # at person probability 0.6 and 0.9, every other pixel's predicted class at 3/4
    logits = row_logits([0.75, 0.75, 0.25, 0.6, 0.9, 0.25])
    labels = torch.tensor([[[1, 1, 0, 0, 0, 0]]])
    # person: I = S = 1.5 on the matched component, |g| = 2 -> IoU 3/4; background: label
    # component pixels 2-5 (4 px), predicted pixels 2 and 5 apart, IoU 0.75 / 4 each -> 3/16
    background_loss = 1 - 3 / 16
    # paper: the blob counts 1 -> connectivity (3/4) / 2; soft: its mean probability 0.75
    # (its max, 0.9, would give (3/4) / 1.9)
    paper = ((1 - 3 / 8) + background_loss) / 2
    soft = ((1 - 3 / 7) + background_loss) / 2
    assert SemanticConnectivityLoss()(logits, labels).item() == pytest.approx(paper)
    value = SemanticConnectivityLoss(unmatched="soft")(logits, labels).item()
    assert value == pytest.approx(soft)
    assert soft == pytest.approx(155 / 224)
    reference = reference_sc_loss(
        np.array([[1, 1, 0, 1, 1, 0]]), labels[0].numpy(),
        probabilities=logits[0].softmax(0).numpy(), unmatched="soft",
    )
    assert reference == pytest.approx(soft)


@pytest.mark.parametrize("num_classes", [2, 3])
@pytest.mark.parametrize("unmatched", ["hard", "soft"])
def test_matches_reference_with_soft_probabilities(num_classes: int, unmatched: str) -> None:
    rng = np.random.default_rng(11 + num_classes)
    maps = [random_maps(rng, 12, num_classes, smooth) for smooth in (0.0, 1.0, 2.0, 2.5)]
    pred, label = (np.stack(pair) for pair in zip(*maps, strict=True))
    one_hot = np.eye(num_classes)[pred].transpose(0, 3, 1, 2)
    logits = torch.from_numpy(1.5 * one_hot + rng.normal(0, 0.4, one_hot.shape))
    pred = logits.argmax(1).numpy()
    probabilities = logits.softmax(1).numpy()
    expected = [
        reference_sc_loss(p, g, max_pred_num_conn=4, probabilities=q, unmatched=unmatched)
        for p, g, q in zip(pred, label, probabilities, strict=True)
    ]
    loss = SemanticConnectivityLoss(max_pred_num_conn=4, unmatched=unmatched)
    np.testing.assert_allclose(loss.per_image(logits, torch.from_numpy(label)), expected)


def test_unmatched_soft_equals_paper_on_one_hot_logits() -> None:
    rng = np.random.default_rng(5)
    for smooth in (0.0, 1.0, 2.5):
        maps = [random_maps(rng, 14, 3, smooth) for _ in range(4)]
        pred, label = (np.stack(pair) for pair in zip(*maps, strict=True))
        expected = hard_connectivity_loss(pred, label, 255, 4).numpy()
        soft = SemanticConnectivityLoss(max_pred_num_conn=4, unmatched="soft")
        values = soft.per_image(one_hot_logits(pred, 3), torch.from_numpy(label))
        np.testing.assert_allclose(values.detach().numpy(), expected, atol=1e-6)


def test_unmatched_soft_descent_step_removes_a_lone_blob_and_keeps_the_person() -> None:
    label = np.zeros((1, 12, 12), dtype=np.int64)
    label[0, 2:8, 2:8] = 1  # a 6 x 6 person
    margin = np.where(label == 1, 4.0, -4.0)  # logit(person) - logit(background)
    margin[0, 9:11, 9:11] = 0.5  # a weakly predicted false blob apart from the person
    labels = torch.from_numpy(label)
    gradients = {}
    for mode in ("hard", "soft"):
        logits = torch.from_numpy(np.stack([-margin / 2, margin / 2], 1))
        logits.requires_grad_(True)
        SemanticConnectivityLoss(unmatched=mode)(logits, labels).backward()
        gradients[mode] = logits.grad
    blob = (slice(None), 1, slice(9, 11), slice(9, 11))
    assert (gradients["hard"][blob] == 0).all()  # the paper's loss does not see the blob
    assert (gradients["soft"][blob] > 0).all()  # descent lowers its person logit
    logits = torch.from_numpy(np.stack([-margin / 2, margin / 2], 1))
    stepped = logits - 100.0 * gradients["soft"]  # one plain gradient-descent step
    before = logits.argmax(1)
    after = stepped.argmax(1)
    assert before[0, 9:11, 9:11].eq(1).all() and after[0, 9:11, 9:11].eq(0).all()
    assert torch.equal(after, labels)  # blob gone, the person component untouched
    assert hard_connectivity_loss(before, labels).item() > 0
    assert hard_connectivity_loss(after, labels).item() == 0.0


def test_unmatched_mode_is_a_config_key_and_is_checked() -> None:
    from humanseg.losses import build_loss_from_config

    mix = build_loss_from_config({"types": [{"type": "SemanticConnectivityLoss",
                                             "unmatched": "soft"}], "coef": [1]})
    assert [loss.unmatched for loss in mix.mix.losses] == ["soft"]
    with pytest.raises(HumanSegError, match="unmatched must be one of hard, soft"):
        SemanticConnectivityLoss(unmatched="max")
