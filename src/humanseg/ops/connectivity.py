"""The semantic connectivity of PP-HumanSeg: the SC loss's computation, with its exact gradient,
and the hard connectivity score of class maps (metrics); definition in docs/sc_loss.md.

Hard masks (argmax) choose the connected components; the IoUs and areas are sums of the softmax
probability of the component's class, so the value equals the hard definition for one-hot
probabilities and still carries gradient to the logits. All per-pixel sums of a batch are one
pass of sums over runs of pixels on the logits' device; the argmax and label maps visit the CPU
for cc3d, and the per-component arithmetic runs in NumPy with its exact gradient.
"""

from __future__ import annotations

import numpy as np
import torch

from humanseg.errors import HumanSegError
from humanseg.ops.ccl import ComponentLabels, label_components


class PlaneSoftmax:
    """Argmax and softmax probabilities of [N, C, H, W] logits, plane by plane over C.

    On CPU, elementwise work on the [N, H, W] planes is several times faster than
    softmax/argmax/gather along dim 1 of an NCHW tensor. Two classes use the logistic form
    p = sigmoid(+-(l1 - l0)), a third of the operations of the general form. Ties go to the
    lower class, as with argmax.
    """

    def __init__(self, logits: torch.Tensor) -> None:
        """Compute the argmax map `pred` (uint8 for <= 256 classes) and what the probabilities
        need: the logit margin for two classes, the shifted exponentials otherwise."""
        planes = logits.unbind(1)
        self._margin: torch.Tensor | None = None
        if len(planes) == 2:
            self._margin = planes[1] - planes[0]
            self.pred = (self._margin.detach() > 0).to(torch.uint8)
            return
        with torch.no_grad():
            best = planes[0].detach()
            pred_dtype = torch.uint8 if len(planes) <= 256 else torch.int64
            self.pred = torch.zeros(best.shape, dtype=pred_dtype, device=logits.device)
            for class_id, plane in enumerate(planes[1:], start=1):
                self.pred.masked_fill_(plane.detach() > best, class_id)
                best = torch.maximum(best, plane.detach())
        self._exps = [torch.exp(plane - best) for plane in planes]
        self._total = self._exps[0]
        for class_exp in self._exps[1:]:
            self._total = self._total + class_exp

    def pred_probability(self) -> torch.Tensor:
        """Softmax probability of the argmax class at each pixel (two classes: sigmoid(|l1 - l0|),
        whose gradient at an exact tie is 0, a valid subgradient of the max there)."""
        if self._margin is not None:
            return torch.sigmoid(self._margin.abs())
        return self.probability(self.pred)

    def probability(self, class_map: torch.Tensor) -> torch.Tensor:
        """Softmax probability of the class named by `class_map` [N, H, W] at each pixel
        (ids outside 0..C-1, e.g. ignore_index, read class 0)."""
        if self._margin is not None:
            return torch.sigmoid(torch.where(class_map == 1, self._margin, -self._margin))
        chosen = self._exps[0]
        for class_id, class_exp in enumerate(self._exps[1:], start=1):
            chosen = torch.where(class_map == class_id, class_exp, chosen)
        return chosen / self._total


class HardPrediction:
    """A hard class map seen as one-hot probabilities: the SC loss of it is the hard definition."""

    def __init__(self, pred: torch.Tensor) -> None:
        """`pred`: [N, H, W] class ids."""
        self.pred = pred

    def pred_probability(self) -> torch.Tensor:
        """1 at every pixel."""
        return torch.ones(self.pred.shape, dtype=torch.float32, device=self.pred.device)

    def probability(self, class_map: torch.Tensor) -> torch.Tensor:
        """1 where `class_map` names the predicted class, else 0."""
        return (self.pred == class_map).to(torch.float32)


def semantic_connectivity_per_image(
    probabilities: PlaneSoftmax | HardPrediction,
    labels: torch.Tensor,
    num_classes: int,
    ignore_index: int = 255,
    max_pred_num_conn: int = 10,
    connectivity: int = 8,
    unmatched: str = "hard",
) -> torch.Tensor:
    """SC loss of each image, [N], from a prediction and the [N, H, W] label map.

    `probabilities` holds the hard map `pred` and gives each pixel's probability of its
    predicted class, and of any class map's class (asked for the labels' class only when a
    class is missed entirely): softmax for the loss, one-hot for the hard definition.
    `unmatched` says how a predicted component touching no label component counts
    (`unmatched_existence`).
    """
    pred_prob = probabilities.pred_probability()
    # Sums over up to H * W pixels: accumulate half-precision probabilities in float32.
    dtype = torch.promote_types(pred_prob.dtype, torch.float32)
    pred_np = probabilities.pred.detach().cpu().numpy()
    label_np = labels.detach().cpu().numpy()
    valid = label_np != ignore_index
    label_np = label_np.astype(pred_np.dtype)  # ignore_index may wrap: `valid` masks it out
    matched = valid & (pred_np == label_np)
    batch = ComponentBatch(
        label_components(pred_np, valid, connectivity, labelling_threads(pred_np)),
        label_components(label_np, valid, connectivity),
        matched,
        num_classes,
        max_pred_num_conn,
        unmatched,
    )
    piece_sums = sum_by_runs(
        pred_prob.to(dtype), batch.run_lengths, batch.run_piece, batch.piece_pred.shape[0]
    )
    label_hits = piece_sums.new_zeros(0)
    if batch.missed.any():  # probability of the label's class over each label component
        label_hits = sum_by_runs(
            probabilities.probability(labels).to(dtype), batch.label_run_lengths,
            batch.label_run_ids, batch.label_area.shape[0] + 1,
        )[1:]
    return _ConnectivityLoss.apply(piece_sums, label_hits, batch)


def labelling_threads(pred: np.ndarray) -> int:
    """Threads to label the predicted map on: torch's, for speckled maps (a class change at more
    than 1 in 16 horizontal steps: early training, where cc3d's work dominates the loss), else
    1 (on smooth maps handing chunks to threads costs more than it saves)."""
    if pred.ndim < 2 or pred.shape[-1] < 2:
        return 1
    changes = np.count_nonzero(pred[..., 1:] != pred[..., :-1])
    return torch.get_num_threads() if 16 * changes > pred.size else 1


def sum_by_runs(
    per_pixel: torch.Tensor, run_lengths: np.ndarray, run_bin: np.ndarray, num_bins: int
) -> torch.Tensor:
    """Sums of a per-pixel tensor into `num_bins` bins, run by run: the pixels of run k (runs
    follow raster order, lengths `run_lengths`) all go to bin `run_bin[k]`.

    Long runs (portrait maps): one segment sum over the runs, then a small index_add. Short
    runs (speckled early-training maps, where segment_reduce is slow): index_add over pixels.
    """
    flat = per_pixel.reshape(-1)
    bins = torch.zeros(num_bins, device=flat.device, dtype=flat.dtype)
    if 8 * run_lengths.size > flat.numel():
        pixel_bin = torch.from_numpy(np.repeat(run_bin, run_lengths)).to(flat.device)
        return bins.index_add_(0, pixel_bin, flat)
    lengths = torch.from_numpy(run_lengths).to(flat.device)
    # unsafe: the lengths were built from these very pixels and need no re-checking
    run_sums = torch.segment_reduce(flat, "sum", lengths=lengths, unsafe=True)
    return bins.index_add_(0, torch.from_numpy(run_bin).to(flat.device), run_sums)


def unique_with_inverse(
    keys: np.ndarray, key_space: int, dense_limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_inverse=True) for integer keys in [0, key_space), as int64.

    Sorting dominates the loss on speckled early-training maps (~10^5 runs), so a key space up
    to `dense_limit` (default 16 per key + 65536) is compacted through a presence table instead,
    in linear time.
    """
    if dense_limit is None:
        dense_limit = 16 * keys.size + (1 << 16)
    if key_space > dense_limit:
        unique, inverse = np.unique(keys, return_inverse=True)
        return unique.astype(np.int64), inverse.ravel()
    present = np.zeros(key_space, dtype=bool)
    present[keys] = True
    rank = np.cumsum(present) - 1
    return np.flatnonzero(present), rank[keys]


class ComponentBatch:
    """The components of a batch and how pixel sums feed the loss; computes loss and gradient.

    Each pixel is keyed by its predicted component j and, where the label agrees, its label
    component i (else none); a "piece" is one key. Keys are constant along runs of pixels in
    raster order, so summing the probabilities run by run into pieces gives everything the loss
    needs: I_ij (pieces with an i) and S_j (all pieces of j). The per-component arithmetic then
    runs in float64 NumPy with its exact gradient by the piece sums, instead of ~50 tiny
    autograd operations.
    """

    def __init__(
        self,
        pred_cc: ComponentLabels,
        label_cc: ComponentLabels,
        matched: np.ndarray,
        num_classes: int,
        max_pred_num_conn: int,
        unmatched: str = "hard",
    ) -> None:
        """Group components by (image, class), apply the cap and index the runs and pieces."""
        num_images, height, width = matched.shape
        self.num_images, self.num_classes = num_images, num_classes
        self.unmatched = unmatched
        self.pred_area = pred_cc.area[1:].astype(np.float64)
        self.image_area = height * width
        num_groups = num_images * num_classes
        self.pred_group = (pred_cc.image * num_classes + pred_cc.klass)[1:]
        self.label_group = (label_cc.image * num_classes + label_cc.klass)[1:]
        self.preds_per_group = np.bincount(self.pred_group, minlength=num_groups)
        self.labels_per_group = np.bincount(self.label_group, minlength=num_groups)
        self.label_area = label_cc.area[1:].astype(np.float64)
        has_pred, has_label = self.preds_per_group > 0, self.labels_per_group > 0
        self.both, self.missed = has_pred & has_label, has_label & ~has_pred
        self.false_alarm = has_pred & ~has_label
        self.kept = kept_predictions(
            pred_cc, self.pred_group, self.preds_per_group, self.labels_per_group,
            max_pred_num_conn,
        )
        num_label = label_cc.count
        fits_int32 = (pred_cc.count + 1) * (num_label + 1) < np.iinfo(np.int32).max
        key = pred_cc.ids.ravel().astype(np.int32 if fits_int32 else np.int64)
        key *= num_label + 1
        key += np.where(matched.ravel(), label_cc.ids.ravel(), 0)
        run_starts = np.concatenate(([0], np.flatnonzero(key[1:] != key[:-1]) + 1))
        self.run_lengths = np.diff(run_starts, append=key.size)
        piece_key, self.run_piece = unique_with_inverse(
            key[run_starts], (pred_cc.count + 1) * (num_label + 1)
        )
        self.piece_pred = piece_key // (num_label + 1) - 1  # 0-based; -1: ignored pixels
        self.piece_label = piece_key % (num_label + 1) - 1  # -1: where the label disagrees
        self.piece_image = np.maximum(pred_cc.image[self.piece_pred + 1], 0)
        self.label_run_lengths = np.diff(label_cc.run_starts, append=key.size)
        self.label_run_ids = label_cc.run_ids  # 0: ignored pixels
        self.label_image = label_cc.image[1:]

    def loss_and_gradients(
        self, piece_sums: np.ndarray, label_hits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-image loss [N]; its gradient by the piece sums and by the label components'
        probability sums (each entry belongs to one image, so [pieces] and [label components])."""
        num_groups = self.num_classes * self.num_images
        num_pred = self.pred_group.shape[0]
        group_loss = np.zeros(num_groups)
        grad_pred_sum = np.zeros(num_pred)  # d loss(image) / d S_j
        grad_piece = np.zeros(piece_sums.shape[0])  # d loss(image) / d I_ij, on its piece
        grad_label_hit = np.zeros(self.label_area.shape[0])
        predicted = self.piece_pred >= 0
        pred_sum = np.bincount(
            self.piece_pred[predicted], weights=piece_sums[predicted], minlength=num_pred
        )
        counted = (self.preds_per_group + self.labels_per_group) > 0
        classes_per_image = np.maximum(counted.reshape(self.num_images, -1).sum(1), 1)
        group_weight = 1.0 / np.repeat(classes_per_image, self.num_classes)

        # Both sides: loss = 1 - sum_i mean_j IoU_ij / (G + lone), over the kept p_j.
        pair = np.flatnonzero(predicted & (self.piece_label >= 0))
        pair = pair[self.kept[self.piece_pred[pair]]]
        pair_pred, pair_label = self.piece_pred[pair], self.piece_label[pair]
        intersection = piece_sums[pair]
        union = self.label_area[pair_label] + pred_sum[pair_pred] - intersection
        iou = intersection / union
        touches = np.maximum(np.bincount(pair_label, minlength=self.label_area.shape[0]), 1)
        lone = self.kept.copy()
        lone[pair_pred] = False
        existence, existence_grad = unmatched_existence(
            self.unmatched, pred_sum[lone], self.pred_area[lone]
        )
        denominator = np.maximum(
            self.labels_per_group
            + np.bincount(self.pred_group[lone], weights=existence, minlength=num_groups),
            1,
        )
        pair_group = self.label_group[pair_label]
        connectivity = np.bincount(
            pair_group, weights=iou / touches[pair_label], minlength=num_groups
        ) / denominator
        group_loss[self.both] = 1 - connectivity[self.both]
        # d loss / d IoU_ij = -w_g / (denominator_g * touches_i); IoU = I / (A + S - I)
        grad_iou = -group_weight[pair_group] / (denominator[pair_group] * touches[pair_label])
        grad_piece[pair] = grad_iou * (union + intersection) / union**2
        np.add.at(grad_pred_sum, pair_pred, -grad_iou * intersection / union**2)
        # d loss / d denominator = connectivity / denominator, for the lone p_j of a both-group
        lone_group = self.pred_group[lone]
        in_both = self.both[lone_group]
        grad_pred_sum[np.flatnonzero(lone)[in_both]] += (
            group_weight[lone_group] * connectivity[lone_group] / denominator[lone_group]
            * existence_grad
        )[in_both]

        # One side only: (missed + false-alarm area) / (H * W), as probability sums.
        alarm = self.false_alarm[self.pred_group]
        group_loss += np.bincount(
            self.pred_group[alarm], weights=pred_sum[alarm], minlength=num_groups
        ) / self.image_area
        grad_pred_sum[alarm] += group_weight[self.pred_group[alarm]] / self.image_area
        missed = self.missed[self.label_group]
        miss_area = self.label_area[missed] - label_hits[missed]
        group_loss += np.bincount(
            self.label_group[missed], weights=miss_area, minlength=num_groups
        ) / self.image_area
        grad_label_hit[missed] = -group_weight[self.label_group[missed]] / self.image_area

        image_loss = (group_loss * group_weight).reshape(self.num_images, -1).sum(1)
        grad_piece[predicted] += grad_pred_sum[self.piece_pred[predicted]]
        return image_loss, grad_piece, grad_label_hit


UNMATCHED_MODES = ("hard", "soft")


def unmatched_existence(
    mode: str, prob_sums: np.ndarray, areas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """How much each unmatched predicted component (touching no label component) counts in the
    connectivity denominator, and its derivative by the component's probability sum S_j.

    `hard` (the paper): 1 each, no gradient. `soft`: S_j / |p_j|, the mean probability of the
    component's class over its pixels; 1 on one-hot predictions, and each pixel of a false blob
    gets gradient towards the other class, 1 / |p_j| of the blob's, so specks are pushed hardest.
    """
    if mode == "soft":
        return prob_sums / areas, 1.0 / areas
    return np.ones_like(prob_sums), np.zeros_like(prob_sums)


class _ConnectivityLoss(torch.autograd.Function):
    """Per-image SC loss from the piece sums, with the gradient ComponentBatch works out."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        piece_sums: torch.Tensor,
        label_hits: torch.Tensor,
        batch: ComponentBatch,
    ) -> torch.Tensor:
        """Loss of each image, [N], on the piece sums' device and dtype."""
        device, dtype = piece_sums.device, piece_sums.dtype
        hits = np.zeros(batch.label_area.shape[0])
        if label_hits.numel():
            hits = label_hits.detach().cpu().double().numpy()
        image_loss, grad_piece, grad_label_hit = batch.loss_and_gradients(
            piece_sums.detach().cpu().double().numpy(), hits
        )
        ctx.piece_image = torch.from_numpy(batch.piece_image).to(device)
        ctx.piece_gradient = torch.from_numpy(grad_piece).to(device, dtype)
        ctx.label_image = torch.from_numpy(batch.label_image).to(device)
        ctx.label_gradient = torch.from_numpy(grad_label_hit).to(device, dtype)
        ctx.has_label_hits = bool(label_hits.numel())
        return torch.from_numpy(image_loss).to(device, dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        """Chain rule: each piece and each label component belongs to one image."""
        grad_pieces = grad_images[ctx.piece_image] * ctx.piece_gradient
        grad_label_hits = None
        if ctx.has_label_hits:
            grad_label_hits = grad_images[ctx.label_image] * ctx.label_gradient
        return grad_pieces, grad_label_hits, None


def kept_predictions(
    pred_cc: ComponentLabels,
    pred_group: np.ndarray,
    preds_per_group: np.ndarray,
    labels_per_group: np.ndarray,
    max_pred_num_conn: int,
) -> np.ndarray:
    """Cap rule: in a class with more than twice as many predicted as label components (and at
    least one label component), keep only the `max_pred_num_conn` largest predicted components,
    ties going to the one whose first pixel comes first in raster order. Spurious fragments are
    small, so the cap drops noise rather than the body of the prediction."""
    capped = (preds_per_group > 2 * labels_per_group) & (labels_per_group > 0)
    if not capped.any():
        return np.ones(pred_group.shape[0], dtype=bool)
    order = np.lexsort((pred_cc.first_pixel[1:], -pred_cc.area[1:], pred_group))
    group_start = np.cumsum(preds_per_group) - preds_per_group
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0]) - group_start[pred_group[order]]
    return ~capped[pred_group] | (rank < max_pred_num_conn)


def hard_connectivity_loss(
    pred: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    ignore_index: int = 255,
    max_pred_num_conn: int = 10,
    connectivity: int = 8,
) -> torch.Tensor:
    """SC loss of each image, [N], for hard class maps (no gradient); connectivity = 1 - loss."""
    pred = torch.as_tensor(pred)
    labels = torch.as_tensor(labels, device=pred.device)
    if pred.dim() != 3 or tuple(pred.shape) != tuple(labels.shape):
        raise HumanSegError(
            f"connectivity: prediction {tuple(pred.shape)} and label {tuple(labels.shape)} "
            "must both be [N, H, W]"
        )
    if pred.is_floating_point() or labels.is_floating_point():
        raise HumanSegError("connectivity: prediction and label must hold integer class ids")
    pred, labels = pred.long(), labels.long()
    if pred.numel() == 0:  # no pixels: no class counted, so every image scores 0
        return torch.zeros(pred.shape[0])
    valid = labels != ignore_index
    if bool((pred < 0).any()) or bool((labels[valid] < 0).any()):
        raise HumanSegError("connectivity: class ids must be >= 0")
    top = max(int(pred.max()), int(labels[valid].max()) if bool(valid.any()) else 0)
    return semantic_connectivity_per_image(
        HardPrediction(pred), labels, top + 1, ignore_index, max_pred_num_conn, connectivity
    )
