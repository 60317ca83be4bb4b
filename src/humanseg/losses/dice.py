"""Soft Dice loss over classes (softmax probabilities against one-hot labels), ignore aware."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.losses.base import LOSSES
from humanseg.losses.inputs import check_class_weights, check_logits_and_labels


@LOSSES.register
class DiceLoss(nn.Module):
    """1 - (2 |P ∩ Y| + smooth) / (|P| + |Y| + smooth) per class over the batch, class-averaged.

    Args:
        weight: one weight per class for the class average (default: a plain mean).
        ignore_index: label value that counts for neither prediction nor label.
        smooth: added to numerator and denominator (>= 0).
    """

    def __init__(
        self, weight: Sequence[float] | None = None, ignore_index: int = 255, smooth: float = 1.0
    ) -> None:
        """PaddleSeg's arguments; `weight` makes the class average a weighted one."""
        super().__init__()
        if smooth < 0:
            raise HumanSegError(f"DiceLoss: smooth must be >= 0, got {smooth}")
        self.weight = check_class_weights("DiceLoss", weight)
        self.ignore_index = ignore_index
        self.smooth = smooth

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar loss; ignored pixels count for neither the prediction nor the label."""
        labels = check_logits_and_labels("DiceLoss", logits, labels, self.ignore_index)
        num_classes = logits.shape[1]
        valid = (labels != self.ignore_index).unsqueeze(1).to(logits.dtype)
        one_hot = F.one_hot(labels.where(labels != self.ignore_index, 0), num_classes)
        one_hot = one_hot.permute(0, 3, 1, 2).to(logits.dtype) * valid
        probs = logits.softmax(1) * valid
        intersection = (probs * one_hot).sum((0, 2, 3))
        cardinality = probs.sum((0, 2, 3)) + one_hot.sum((0, 2, 3))
        class_loss = 1 - (2 * intersection + self.smooth) / (cardinality + self.smooth).clamp_min(
            torch.finfo(logits.dtype).tiny
        )
        if self.weight is None:
            return class_loss.mean()
        if self.weight.numel() != num_classes:
            raise HumanSegError(
                f"DiceLoss: weight has {self.weight.numel()} entries but logits have "
                f"{num_classes} classes"
            )
        weight = self.weight.to(device=logits.device, dtype=logits.dtype)
        return (class_loss * weight).sum() / weight.sum().clamp_min(torch.finfo(logits.dtype).tiny)
