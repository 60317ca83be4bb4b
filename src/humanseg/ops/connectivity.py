"""The semantic connectivity of PP-HumanSeg: the SC loss's computation, with its exact gradient,
and the hard connectivity score of class maps (metrics); definition in docs/sc_loss.md.

Hard masks (argmax) choose the connected components; the IoUs and areas are sums of the softmax
probability of the component's class, so the value equals the hard definition for one-hot
probabilities and still carries gradient to the logits. cc3d labels the argmax and label maps
on the CPU, one compiled sweep (`connectivity_kernels`) sums the probabilities over the pieces
the two labellings cut each other into, and the per-component arithmetic runs in NumPy with its
exact gradient.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import torch

from humanseg.errors import HumanSegError
from humanseg.ops.ccl import label_components
from humanseg.ops.connectivity_kernels import (
    BatchPieces,
    index_pieces,
    two_class_backward,
)


class TorchProbabilities:
    """A prediction whose probabilities are torch tensors (any device, any class count): the
    gradient flows from the per-pixel probabilities through torch's autograd.

    Subclasses give the hard map `pred`, `pred_probability()` and `probability(class_map)`.
    """

    pred: torch.Tensor

    def pred_probability(self) -> torch.Tensor:
        """Probability of the predicted class at each pixel, [N, H, W]."""
        raise NotImplementedError

    def probability(self, class_map: torch.Tensor) -> torch.Tensor:
        """Probability of the class `class_map` [N, H, W] names at each pixel."""
        raise NotImplementedError

    @cached_property
    def _summed(self) -> torch.Tensor:
        """`pred_probability()` in the precision it is summed in: half precision would drop
        pixels from sums over up to H * W of them, so at least float32."""
        pred_prob = self.pred_probability()
        return pred_prob.to(torch.promote_types(pred_prob.dtype, torch.float32))

    def pred_map(self) -> np.ndarray:
        """The hard map as a CPU array."""
        return self.pred.detach().cpu().numpy()

    def summed_probability(self) -> np.ndarray:
        """The values the pieces sum, as a CPU array."""
        return self._summed.detach().cpu().numpy()

    def connectivity_loss(self, batch: ComponentBatch, labels: torch.Tensor) -> torch.Tensor:
        """Per-image loss [N] of `batch` (indexed from this prediction), carrying gradient."""
        label_prob = self._summed.new_zeros(0)
        if batch.missed.any():  # probability of the label's class over each label component
            label_prob = self.probability(labels).to(self._summed.dtype)
        return _ConnectivityLoss.apply(self._summed, label_prob, batch)


class PlaneSoftmax(TorchProbabilities):
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


class HardPrediction(TorchProbabilities):
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


class TwoClassMargin:
    """Two-class float logits on the CPU: the argmax and probabilities of PlaneSoftmax's
    logistic form from the margin m = l1 - l0, taken without autograd; the gradient is carried
    to the logits by one compiled sweep (`connectivity_kernels`) instead of torch's ~6 passes
    over the batch."""

    def __init__(self, logits: torch.Tensor) -> None:
        """`logits`: [N, 2, H, W] float32 or float64 on the CPU (`for_logits` checks)."""
        self.logits = logits
        with torch.no_grad():
            margin = logits[:, 1] - logits[:, 0]
            self._pred = (margin > 0).to(torch.uint8).numpy()
            self.pred_prob = torch.sigmoid(margin.abs()).numpy()
        self.margin = margin.numpy()

    def pred_map(self) -> np.ndarray:
        """The argmax map, uint8 [N, H, W] (ties go to class 0)."""
        return self._pred

    def summed_probability(self) -> np.ndarray:
        """sigmoid(|m|): the probability of the predicted class at each pixel."""
        return self.pred_prob

    def connectivity_loss(self, batch: ComponentBatch, labels: torch.Tensor) -> torch.Tensor:
        """Per-image loss [N] of `batch` (indexed from this prediction), carrying gradient to
        the logits."""
        return _TwoClassConnectivityLoss.apply(self.logits, labels, batch, self)

    @staticmethod
    def for_logits(logits: torch.Tensor) -> TwoClassMargin | PlaneSoftmax:
        """The fastest exact form for `logits` [N, C, H, W]: this one for two float32 or
        float64 classes on the CPU, PlaneSoftmax otherwise (other devices, half precision,
        more classes)."""
        if (
            logits.device.type == "cpu"
            and logits.shape[1] == 2
            and logits.dtype in (torch.float32, torch.float64)
        ):
            return TwoClassMargin(logits)
        return PlaneSoftmax(logits)


def semantic_connectivity_per_image(
    probabilities: TorchProbabilities | TwoClassMargin,
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
    pred_np = probabilities.pred_map()
    label_np = labels.detach().cpu().numpy()
    valid = label_np != ignore_index
    label_np = label_np.astype(pred_np.dtype)  # ignore_index may wrap: `valid` masks it out
    label_cc = label_components(label_np, valid, connectivity)
    pieces = index_pieces(
        pred_np, label_np, valid, probabilities.summed_probability(),
        label_components(pred_np, valid, connectivity), label_cc,
    )
    batch = ComponentBatch(
        pieces, label_cc.ids.reshape(-1), pred_np, label_np, num_classes, max_pred_num_conn,
        unmatched,
    )
    return probabilities.connectivity_loss(batch, labels)


class ComponentBatch:
    """The components of a batch and how pixel sums feed the loss; computes loss and gradient.

    Each pixel belongs to its predicted component j and, where the label agrees, its label
    component i (else none); a "piece" is one (j, i) pair (`humanseg.ops.connectivity_kernels`). The
    probability sums over the pieces give everything the loss needs: I_ij (pieces with an i) and
    S_j (all pieces of j). The per-component arithmetic then runs in float64 NumPy with its
    exact gradient by the piece sums, instead of ~50 tiny autograd operations.
    """

    def __init__(
        self,
        pieces: BatchPieces,
        label_of: np.ndarray,
        pred: np.ndarray,
        label: np.ndarray,
        num_classes: int,
        max_pred_num_conn: int,
        unmatched: str = "hard",
    ) -> None:
        """Group the components of [N, H, W] `pred` and `label` by (image, class) and apply
        the cap; `pieces` indexes them, `label_of` [N * H * W] holds each pixel's label
        component."""
        num_images, height, width = pred.shape
        self.num_images, self.num_classes = num_images, num_classes
        self.unmatched = unmatched
        self.image_area = height * width
        self.pieces, self.label_of = pieces, label_of
        self.pred_area = pieces.pred_area[1:].astype(np.float64)
        self.label_area = pieces.label_area[1:].astype(np.float64)
        pred_first, label_first = pieces.pred_first[1:], pieces.label_first[1:]
        pred_image = pieces.pred_first // self.image_area  # entry 0: where an ignored pixel is
        self.label_image = label_first // self.image_area
        self.pred_group = pred_image[1:] * num_classes + pred.reshape(-1)[pred_first]
        self.label_group = self.label_image * num_classes + label.reshape(-1)[label_first]
        num_groups = num_images * num_classes
        self.preds_per_group = np.bincount(self.pred_group, minlength=num_groups)
        self.labels_per_group = np.bincount(self.label_group, minlength=num_groups)
        has_pred, has_label = self.preds_per_group > 0, self.labels_per_group > 0
        self.both, self.missed = has_pred & has_label, has_label & ~has_pred
        self.false_alarm = has_pred & ~has_label
        self.kept = kept_predictions(
            self.pred_area, pred_first, self.pred_group, self.preds_per_group,
            self.labels_per_group, max_pred_num_conn,
        )
        self.piece_pred = pieces.piece_pred - 1  # 0-based; -1: ignored pixels
        self.piece_label = pieces.piece_label - 1  # -1: where the label disagrees
        self.piece_image = pred_image[pieces.piece_pred]

    def loss_and_gradients(
        self, label_prob: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-image loss [N]; its gradient by the piece sums and by the label components'
        probability sums (each entry belongs to one image, so [pieces] and [label components]).

        `label_prob` [N * H * W], the probability of the label's class at each pixel, is
        needed only where a class is missed entirely; its sums over the label components (in
        float64) then count what the prediction missed."""
        piece_sums = self.pieces.piece_sum
        label_hits = np.zeros(self.label_area.shape[0])
        if label_prob is not None:
            label_hits = np.bincount(
                self.label_of.astype(np.intp), weights=label_prob,
                minlength=self.label_area.size + 1,
            )[1:]
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
    """Per-image SC loss of a batch, with the gradient ComponentBatch works out; the pixel
    gradients flow through the pieces (and the label components) the pixels belong to."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        pred_prob: torch.Tensor,
        label_prob: torch.Tensor,
        batch: ComponentBatch,
    ) -> torch.Tensor:
        """Loss of each image, [N], on `pred_prob`'s device and dtype. `batch` holds the piece
        sums of this very `pred_prob`; `label_prob` (empty unless a class is missed) is the
        probability of the label's class at each pixel."""
        image_loss, grad_piece, grad_label_hit = batch.loss_and_gradients(
            label_prob.detach().cpu().numpy().reshape(-1) if label_prob.numel() else None
        )
        device, dtype = pred_prob.device, pred_prob.dtype
        ctx.batch = batch
        ctx.piece_gradient = torch.from_numpy(grad_piece).to(device, dtype)
        ctx.label_gradient = torch.from_numpy(grad_label_hit).to(device, dtype)
        ctx.shape, ctx.has_label_prob = pred_prob.shape, bool(label_prob.numel())
        return torch.from_numpy(image_loss).to(device, dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_images: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        """Chain rule: each piece and each label component belongs to one image, and each pixel
        to one piece and one label component."""
        batch, device = ctx.batch, grad_images.device
        piece_image = torch.from_numpy(batch.piece_image).to(device)
        per_piece = grad_images[piece_image] * ctx.piece_gradient
        piece_of = torch.from_numpy(batch.pieces.piece_of).to(device)
        grad_pred_prob = per_piece.index_select(0, piece_of).reshape(ctx.shape)
        grad_label_prob = None
        if ctx.has_label_prob:  # label component 0 (ignored pixels) gets no gradient
            label_image = torch.from_numpy(batch.label_image).to(device)
            per_label = torch.cat(
                (grad_images.new_zeros(1), grad_images[label_image] * ctx.label_gradient)
            )
            label_of = torch.from_numpy(batch.label_of.astype(np.int64)).to(device)
            grad_label_prob = per_label.index_select(0, label_of).reshape(ctx.shape)
        return grad_pred_prob, grad_label_prob, None


class _TwoClassConnectivityLoss(torch.autograd.Function):
    """Per-image SC loss of a batch indexed from a TwoClassMargin, with the gradient
    ComponentBatch works out carried to the logits by one compiled sweep."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        logits: torch.Tensor,
        labels: torch.Tensor,
        batch: ComponentBatch,
        prediction: TwoClassMargin,
    ) -> torch.Tensor:
        """Loss of each image, [N], in the logits' dtype; `batch` holds the piece sums of
        `prediction`, these very logits."""
        ctx.label_is_one = ctx.label_prob = np.zeros(0)
        if batch.missed.any():  # q = sigmoid(+-m), the probability of the label's class
            ctx.label_is_one = (labels.detach().numpy() == 1).reshape(-1)
            margin = prediction.margin.reshape(-1)
            ctx.label_prob = 1 / (1 + np.exp(np.where(ctx.label_is_one, -margin, margin)))
        image_loss, ctx.grad_piece, ctx.grad_label_hit = batch.loss_and_gradients(
            ctx.label_prob if ctx.label_prob.size else None
        )
        ctx.batch, ctx.prediction = batch, prediction
        return torch.from_numpy(image_loss).to(logits.dtype)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad_images: torch.Tensor
    ) -> tuple[torch.Tensor, None, None, None]:
        """Chain rule through the pieces and label components to each pixel's margin."""
        batch, prediction = ctx.batch, ctx.prediction
        per_image = grad_images.detach().double().numpy()
        per_label = np.zeros(0)
        if ctx.label_is_one.size:  # label component 0 (ignored pixels) gets no gradient
            per_label = np.concatenate(([0.0], per_image[batch.label_image] * ctx.grad_label_hit))
        num_images = prediction.margin.shape[0]
        grad = two_class_backward(
            prediction.margin.reshape(num_images, -1),
            prediction.pred_prob.reshape(num_images, -1),
            per_image[batch.piece_image] * ctx.grad_piece, batch.pieces.piece_of,
            per_label, batch.label_of, ctx.label_prob, ctx.label_is_one,
        )
        return torch.from_numpy(grad).reshape(prediction.logits.shape), None, None, None


def kept_predictions(
    pred_area: np.ndarray,
    pred_first: np.ndarray,
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
    order = np.lexsort((pred_first, -pred_area, pred_group))
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
