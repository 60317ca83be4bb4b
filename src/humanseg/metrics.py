"""Streaming segmentation metrics: confusion-matrix scores plus the connectivity score (1 - SC)."""

from __future__ import annotations

import numpy as np
import torch

from humanseg.errors import HumanSegError
from humanseg.ops.connectivity import hard_connectivity_loss


def _as_class_map(name: str, array: np.ndarray | torch.Tensor) -> np.ndarray:
    """An [N, H, W] integer array from a tensor or array ([H, W] is taken as one image)."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise HumanSegError(f"metrics: {name} must be [N, H, W], got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise HumanSegError(f"metrics: {name} must hold integer class ids, got {array.dtype}")
    return array.astype(np.int64, copy=False)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator, NaN where the denominator is 0 (score undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


class SegMetrics:
    """Accumulates a confusion matrix and per-image connectivity over batches of hard predictions.

    Classes absent from both label and prediction have NaN IoU / Dice / accuracy and are left
    out of the means (rather than scored 0), so a batch without some class does not lower mIoU.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        """`num_classes` >= 2; label pixels equal to `ignore_index` are skipped everywhere."""
        if not isinstance(num_classes, int) or num_classes < 2:
            raise HumanSegError(
                f"metrics: num_classes must be an integer >= 2, got {num_classes!r}"
            )
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.connectivity_sum = 0.0
        self.num_images = 0

    def update(self, pred: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor) -> None:
        """Add a batch: pred and label are [N, H, W] (or [H, W]) class-id maps of equal shape."""
        pred_np = _as_class_map("pred", pred)
        label_np = _as_class_map("label", label)
        if pred_np.shape != label_np.shape:
            raise HumanSegError(
                f"metrics: pred shape {pred_np.shape} differs from label shape {label_np.shape}"
            )
        valid = label_np != self.ignore_index
        for name, values in (("pred", pred_np), ("label", label_np[valid])):
            if values.size and (values.min() < 0 or values.max() >= self.num_classes):
                raise HumanSegError(
                    f"metrics: {name} has class ids outside 0..{self.num_classes - 1}"
                    + (f" (ignore_index {self.ignore_index} excepted)" if name == "label" else "")
                )
        cells = label_np[valid] * self.num_classes + pred_np[valid]
        self.confusion += np.bincount(cells, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )
        connectivity = 1 - hard_connectivity_loss(pred_np, label_np, self.ignore_index)
        self.connectivity_sum += float(connectivity.sum())
        self.num_images += pred_np.shape[0]

    def compute(self) -> dict[str, float | list[float]]:
        """miou, class_iou, acc, class_acc (recall), kappa, dice, class_dice, connectivity."""
        confusion = self.confusion.astype(np.float64)
        true_positive = np.diag(confusion)
        label_area = confusion.sum(1)
        pred_area = confusion.sum(0)
        total = confusion.sum()
        class_iou = _ratio(true_positive, label_area + pred_area - true_positive)
        class_dice = _ratio(2 * true_positive, label_area + pred_area)
        class_acc = _ratio(true_positive, label_area)
        accuracy = float(true_positive.sum() / total) if total else float("nan")
        chance = float((label_area * pred_area).sum() / total**2) if total else float("nan")
        kappa = (accuracy - chance) / (1 - chance) if total and chance < 1 else float("nan")
        return {
            "miou": _nanmean(class_iou),
            "class_iou": class_iou.tolist(),
            "acc": accuracy,
            "class_acc": class_acc.tolist(),
            "kappa": kappa,
            "dice": _nanmean(class_dice),
            "class_dice": class_dice.tolist(),
            "connectivity": (
                self.connectivity_sum / self.num_images if self.num_images else float("nan")
            ),
        }

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.confusion[:] = 0
        self.connectivity_sum = 0.0
        self.num_images = 0


def _nanmean(values: np.ndarray) -> float:
    """Mean of the defined (non-NaN) entries; NaN if none is defined."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")
