"""Semantic Connectivity-aware loss (SCL, PP-HumanSeg) with gradient; definition in docs/sc_loss.md.

Hard masks (argmax) choose the connected components; the IoUs and areas are sums of the softmax
probability of the component's class, so the value equals the hard definition for one-hot
probabilities and still carries gradient to the logits. Every per-pixel sum is one `index_add`
on the logits' device; only the argmax and label maps visit the CPU for cc3d.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.losses.inputs import check_logits_and_labels
from humanseg.ops import ComponentLabels, label_components


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
        """Softmax probability of the argmax class at each pixel."""
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
) -> torch.Tensor:
    """SC loss of each image, [N], from a prediction and the [N, H, W] label map.

    `probabilities` holds the hard map `pred` and gives each pixel's probability of its
    predicted class, and of any class map's class (asked for the labels' class only when a
    class is missed entirely): softmax for the loss, one-hot for the hard definition.
    """
    pred = probabilities.pred
    pred_prob = probabilities.pred_probability()
    # Sums over up to H * W pixels: accumulate half-precision probabilities in float32.
    device, dtype = pred_prob.device, torch.promote_types(pred_prob.dtype, torch.float32)
    pred_prob = pred_prob.to(dtype)
    num_images, height, width = pred.shape
    num_groups = num_images * num_classes  # group = (image, class)
    pred_np = pred.detach().cpu().numpy()
    label_np = labels.detach().cpu().numpy()
    valid = label_np != ignore_index
    label_np = np.where(valid, label_np, 0).astype(pred_np.dtype)
    matched = valid & (pred_np == label_np)

    pred_cc = label_components(pred_np, valid, connectivity)
    label_cc = label_components(label_np, valid, connectivity)
    inter_cc = label_components(label_np, matched, connectivity)  # pieces of some p_j ∩ g_i
    num_pred, num_label, num_inter = pred_cc.count, label_cc.count, inter_cc.count
    pred_group = (pred_cc.image * num_classes + pred_cc.klass)[1:]
    label_group = (label_cc.image * num_classes + label_cc.klass)[1:]
    preds_per_group = np.bincount(pred_group, minlength=num_groups)
    labels_per_group = np.bincount(label_group, minlength=num_groups)

    # Each intersection piece lies inside exactly one predicted and one label component.
    inter_pred = inter_cc.component_values(pred_cc.ids)[1:].astype(np.int64) - 1  # 0-based
    inter_label = inter_cc.component_values(label_cc.ids)[1:].astype(np.int64) - 1

    # One pass over the pixels: bins 1..K_inter hold each intersection piece's probability sum,
    # bin K_inter + 1 + j the sum over the part of predicted component j outside its class's
    # label (j = 0: the ignored pixels, discarded); bin 0 is unused.
    pixel_bin = np.where(matched, inter_cc.ids, pred_cc.ids.astype(np.int32) + (num_inter + 1))
    bin_sums = torch.zeros(num_inter + num_pred + 2, device=device, dtype=dtype).index_add_(
        0, torch.from_numpy(pixel_bin.ravel()).to(device), pred_prob.reshape(-1)
    )
    inter_sum = bin_sums[1 : num_inter + 1]
    pred_sum = bin_sums[num_inter + 2 :].index_add(0, _to_device(inter_pred, device), inter_sum)

    group_loss = torch.zeros(num_groups, device=device, dtype=dtype)
    both = (preds_per_group > 0) & (labels_per_group > 0)
    if both.any():
        group_loss = group_loss + _both_sides_loss(
            both, pred_cc, pred_group, preds_per_group, label_cc.area[1:], label_group,
            labels_per_group, inter_pred, inter_label, inter_sum, pred_sum, max_pred_num_conn,
        )
    # One side only: (missed + false-alarm area) / (H * W), areas as probability sums.
    false_alarm = (preds_per_group > 0) & (labels_per_group == 0)
    if false_alarm.any():
        alarm_area = torch.zeros(num_groups, device=device, dtype=dtype).index_add_(
            0, _to_device(pred_group, device), pred_sum
        )
        group_loss = group_loss + alarm_area * _to_device(false_alarm, device) / (height * width)
    missed = (labels_per_group > 0) & (preds_per_group == 0)
    if missed.any():
        label_bin = torch.from_numpy(label_cc.ids.astype(np.int64).ravel()).to(device)
        label_hit = torch.zeros(num_label + 1, device=device, dtype=dtype).index_add_(
            0, label_bin, probabilities.probability(labels).to(dtype).reshape(-1)
        )[1:]
        label_miss = _to_device(label_cc.area[1:], device).to(dtype) - label_hit
        missed_area = torch.zeros(num_groups, device=device, dtype=dtype).index_add_(
            0, _to_device(label_group, device), label_miss
        )
        group_loss = group_loss + missed_area * _to_device(missed, device) / (height * width)

    classes_counted = ((preds_per_group + labels_per_group) > 0).reshape(num_images, num_classes)
    per_image_classes = _to_device(np.maximum(classes_counted.sum(1), 1), device)
    return group_loss.reshape(num_images, num_classes).sum(1) / per_image_classes


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A NumPy array as a tensor on `device` (int64 for integers, bool kept as float mask)."""
    if array.dtype == np.bool_:
        return torch.from_numpy(array.astype(np.float32)).to(device)
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(device)


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


def _both_sides_loss(
    both: np.ndarray,
    pred_cc: ComponentLabels,
    pred_group: np.ndarray,
    preds_per_group: np.ndarray,
    label_area: np.ndarray,
    label_group: np.ndarray,
    labels_per_group: np.ndarray,
    inter_pred: np.ndarray,
    inter_label: np.ndarray,
    inter_sum: torch.Tensor,
    pred_sum: torch.Tensor,
    max_pred_num_conn: int,
) -> torch.Tensor:
    """1 - connectivity for the groups where both the label and the prediction have components."""
    device, dtype = pred_sum.device, pred_sum.dtype
    num_groups = both.shape[0]
    kept = kept_predictions(
        pred_cc, pred_group, preds_per_group, labels_per_group, max_pred_num_conn
    )
    # Pairs (p_j, g_i) that touch, each summed over its intersection pieces.
    num_label = label_area.shape[0]
    pair_key, piece_pair = np.unique(inter_pred * num_label + inter_label, return_inverse=True)
    pair_pred, pair_label = pair_key // num_label, pair_key % num_label
    pair_inter = torch.zeros(pair_key.shape[0], device=device, dtype=dtype).index_add_(
        0, _to_device(piece_pair.ravel(), device), inter_sum
    )
    live = kept[pair_pred]
    pair_pred, pair_label = pair_pred[live], pair_label[live]
    pair_inter = pair_inter[_to_device(np.flatnonzero(live), device)]
    pred_index, label_index = _to_device(pair_pred, device), _to_device(pair_label, device)
    union = _to_device(label_area, device).to(dtype)[label_index] + pred_sum[pred_index]
    pair_iou = pair_inter / (union - pair_inter)

    # Mean IoU of each label component over the predicted components it touches (0 if none).
    iou_sum = torch.zeros(num_label, device=device, dtype=dtype).index_add_(
        0, label_index, pair_iou
    )
    touches = np.bincount(pair_label, minlength=num_label)
    label_mean = iou_sum / _to_device(np.maximum(touches, 1), device)
    connectivity_sum = torch.zeros(num_groups, device=device, dtype=dtype).index_add_(
        0, _to_device(label_group, device), label_mean
    )
    lone = kept.copy()
    lone[pair_pred] = False
    lone_per_group = np.bincount(pred_group[lone], minlength=num_groups)
    denominator = np.maximum(labels_per_group + lone_per_group, 1)
    connectivity = connectivity_sum / _to_device(denominator, device)
    return (1 - connectivity) * _to_device(both, device)


class SemanticConnectivityLoss(nn.Module):
    """SC loss: 1 - connectivity between predicted and label components, averaged per class."""

    def __init__(
        self,
        ignore_index: int = 255,
        max_pred_num_conn: int = 10,
        use_argmax: bool = True,
        connectivity: int = 8,
    ) -> None:
        """PaddleSeg's arguments; `use_argmax=False` takes a hard class map [N, H, W] instead."""
        super().__init__()
        if max_pred_num_conn < 1:
            raise HumanSegError(
                f"SemanticConnectivityLoss: max_pred_num_conn must be >= 1, got {max_pred_num_conn}"
            )
        if connectivity not in (4, 8):
            raise HumanSegError(
                f"SemanticConnectivityLoss: connectivity must be 4 or 8, got {connectivity}"
            )
        self.ignore_index = ignore_index
        self.max_pred_num_conn = max_pred_num_conn
        self.use_argmax = use_argmax
        self.connectivity = connectivity

    def per_image(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of each image, [N] (the batch mean is `forward`)."""
        if not self.use_argmax:
            return hard_connectivity_loss(
                logits, labels, self.ignore_index, self.max_pred_num_conn, self.connectivity
            )
        labels = check_logits_and_labels(
            "SemanticConnectivityLoss", logits, labels, self.ignore_index
        )
        return semantic_connectivity_per_image(
            PlaneSoftmax(logits), labels, logits.shape[1], self.ignore_index,
            self.max_pred_num_conn, self.connectivity,
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the per-image loss; a scalar that carries gradient to logits."""
        return self.per_image(logits, labels).mean()


def hard_connectivity_loss(
    pred: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray,
    ignore_index: int = 255,
    max_pred_num_conn: int = 10,
    connectivity: int = 8,
) -> torch.Tensor:
    """SC loss of each image, [N], for hard class maps (no gradient): 1 - it is connectivity."""
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
    valid = labels != ignore_index
    if bool((pred < 0).any()) or bool((labels[valid] < 0).any()):
        raise HumanSegError("connectivity: class ids must be >= 0")
    top_pred = int(pred.max()) if pred.numel() else 0
    top = max(top_pred, int(labels[valid].max()) if bool(valid.any()) else 0)
    return semantic_connectivity_per_image(
        HardPrediction(pred), labels, top + 1, ignore_index, max_pred_num_conn, connectivity
    )
