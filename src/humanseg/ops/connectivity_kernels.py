"""The compiled (numba) sweeps behind the SC loss, each one pass over a batch's pixels.

`index_pieces` indexes the pieces that the predicted and label components cut each other into and
sums a probability over each. cc3d labels the maps first (`humanseg.ops.ccl`). The sweep
replaces the NumPy work that followed it: run detection, a sort or table of piece keys, areas,
first pixels, a per-pixel index array and the sums. On the speckled maps of early training that
work cost more than the labelling itself.

`two_class_backward` carries the loss's gradient to two-class logits.

numba compiles both on first use and caches the machine code beside this file, in the user's
cache folder where that is not writable, or in NUMBA_CACHE_DIR; with no writable folder at all
(a read-only install and home), each process compiles them again (`compiled`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from humanseg.errors import HumanSegError
from humanseg.ops.ccl import ComponentLabels


def compiled(function: Callable[..., Any]) -> Callable[..., Any]:
    """`function` compiled by numba, releasing the GIL, with its machine code cached on disk
    where numba finds a writable folder; without one, numba refuses to cache at import time,
    so the function is compiled afresh in each process instead (a few seconds on first use)."""
    try:
        return njit(cache=True, nogil=True)(function)
    except RuntimeError as error:
        if "cannot cache" not in str(error):
            raise
        return njit(nogil=True)(function)


@compiled
def _index_pieces(
    pred: np.ndarray,
    label: np.ndarray,
    valid: np.ndarray,
    probability: np.ndarray,
    pred_ids: np.ndarray,
    pred_count: int,
    label_ids: np.ndarray,
    label_count: int,
) -> tuple[np.ndarray, ...]:
    """One sweep: component areas and first pixels, and the pieces with their sums.

    A piece is the set of pixels of predicted component j (0: ignored pixels) whose label
    component is i where the label agrees with the prediction, else 0. Each predicted component
    keeps a linked list of its pieces (rarely more than a few) and remembers the last one it hit.
    The arrays are sized for the worst case and never grown: a growing array in the loop makes
    numba count references at every pixel, ten times the cost of the sweep.
    """
    size = pred.shape[0]
    piece_of = np.empty(size, np.int32)
    pred_area = np.zeros(pred_count + 1, np.int64)
    pred_first = np.full(pred_count + 1, -1, np.int64)
    label_area = np.zeros(label_count + 1, np.int64)
    label_first = np.full(label_count + 1, -1, np.int64)
    piece_pred = np.empty(size, np.int64)  # pieces <= pixels
    piece_label = np.empty(size, np.int64)
    piece_sum = np.empty(size, np.float64)
    piece_next = np.empty(size, np.int64)
    first_piece = np.full(pred_count + 1, -1, np.int64)
    last_piece = np.full(pred_count + 1, -1, np.int64)
    count = 0
    for pixel in range(size):
        component = pred_ids[pixel]
        label_component = label_ids[pixel]
        pred_area[component] += 1
        if pred_first[component] < 0:
            pred_first[component] = pixel
        label_area[label_component] += 1
        if label_first[label_component] < 0:
            label_first[label_component] = pixel
        # the label component where the label agrees, else 0: a product, not a branch that
        # speckled maps would mispredict at every other pixel
        key = label_component * (valid[pixel] & (pred[pixel] == label[pixel]))
        piece = last_piece[component]
        if piece < 0 or piece_label[piece] != key:
            piece = first_piece[component]
            while piece >= 0 and piece_label[piece] != key:
                piece = piece_next[piece]
            if piece < 0:
                piece = count
                count += 1
                piece_pred[piece] = component
                piece_label[piece] = key
                piece_sum[piece] = 0.0
                piece_next[piece] = first_piece[component]
                first_piece[component] = piece
            last_piece[component] = piece
        piece_sum[piece] += probability[pixel]
        piece_of[pixel] = piece
    return (
        piece_of, piece_pred[:count].copy(), piece_label[:count].copy(),
        piece_sum[:count].copy(), pred_area, pred_first, label_area, label_first,
    )


@dataclass(frozen=True)
class BatchPieces:
    """The pieces that a batch's predicted and label components cut each other into.

    Component arrays are indexed by the labelling's ids (entry 0: the ignored pixels); piece
    arrays by piece, numbered in raster order of their first pixel.
    """

    piece_of: np.ndarray
    """[N * H * W] int32: the piece of each pixel (raster order)."""
    piece_pred: np.ndarray
    """[pieces] int64: the predicted component of each piece (0: ignored pixels)."""
    piece_label: np.ndarray
    """[pieces] int64: the label component where the label agrees with the prediction, else 0."""
    piece_sum: np.ndarray
    """[pieces] float64: the sum of the per-pixel probability over the piece."""
    pred_area: np.ndarray
    """[predicted components + 1] int64 pixel counts."""
    pred_first: np.ndarray
    """[predicted components + 1] int64: flat index of each component's first pixel (-1: none)."""
    label_area: np.ndarray
    """[label components + 1] int64 pixel counts."""
    label_first: np.ndarray
    """[label components + 1] int64: flat index of each component's first pixel (-1: none)."""


def index_pieces(
    pred: np.ndarray,
    label: np.ndarray,
    valid: np.ndarray,
    probability: np.ndarray,
    pred_cc: ComponentLabels,
    label_cc: ComponentLabels,
) -> BatchPieces:
    """Index the pieces of [N, H, W] `pred` and `label` (one integer dtype), labelled as
    `pred_cc` and `label_cc` with the pixels where `valid` is False excluded, and sum the
    [N, H, W] `probability` (float32 or float64) over each piece."""
    if pred.size == 0:
        raise HumanSegError("index_pieces: the maps hold no pixels")
    return BatchPieces(
        *_index_pieces(
            pred.reshape(-1), label.reshape(-1), valid.reshape(-1), probability.reshape(-1),
            pred_cc.ids.reshape(-1), pred_cc.count, label_cc.ids.reshape(-1), label_cc.count,
        )
    )


@compiled
def two_class_backward(
    margin: np.ndarray,
    probability: np.ndarray,
    piece_gradient: np.ndarray,
    piece_of: np.ndarray,
    label_gradient: np.ndarray,
    label_of: np.ndarray,
    label_probability: np.ndarray,
    label_is_one: np.ndarray,
) -> np.ndarray:
    """Gradient of the loss by two-class logits, [N, 2, H * W], from each pixel's margin
    m = l1 - l0 and p = sigmoid(|m|) ([N, H * W]), the loss's gradient by each piece's sum of p
    and, when `label_gradient` is not empty, by each label component's sum of the label class's
    probability q = sigmoid(+-m), + where the label is class 1 (entry 0: ignored pixels).

    d p / dm = p (1 - p) sign(m), with sign(0) = 0 as torch's abs has it; d q / dm =
    q (1 - q) (+-1). No exponential is taken again: numba's is not vectorised.
    """
    num_images, plane = margin.shape
    grad = np.empty((num_images, 2, plane), margin.dtype)
    with_labels = label_gradient.shape[0] > 0
    for image in range(num_images):
        for position in range(plane):
            pixel = image * plane + position
            slope = probability[image, position] * (1.0 - probability[image, position])
            step = piece_gradient[piece_of[pixel]] * slope
            value = margin[image, position]
            total = step * ((value > 0) - (value < 0))  # no branch: the signs are random early
            if with_labels and label_of[pixel] > 0:
                chosen = label_probability[pixel]
                change = label_gradient[label_of[pixel]] * chosen * (1.0 - chosen)
                total += change if label_is_one[pixel] else -change
            grad[image, 1, position] = total
            grad[image, 0, position] = -total
    return grad
