"""Lovász-Softmax loss (Berman et al. 2018): a convex surrogate of per-class IoU (Jaccard)."""

from __future__ import annotations

import torch
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.losses.base import LOSSES
from humanseg.losses.inputs import check_logits_and_labels


def lovasz_gradient(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at errors sorted descending."""
    truth_total = sorted_truth.sum()
    intersection = truth_total - sorted_truth.cumsum(0)
    union = truth_total + (1 - sorted_truth).cumsum(0)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])


@LOSSES.register
class LovaszSoftmaxLoss(nn.Module):
    """Mean over classes of the Lovász hinge of |onehot - prob|, over all non-ignored pixels.

    Args:
        ignore_index: label value that takes no part.
        classes: `present` (classes in the labels; PaddleSeg's default) or `all`.
    """

    def __init__(self, ignore_index: int = 255, classes: str = "present") -> None:
        """`classes`: "present" (classes in the labels; PaddleSeg's default) or "all"."""
        super().__init__()
        if classes not in ("present", "all"):
            raise HumanSegError(
                f"LovaszSoftmaxLoss: classes must be 'present' or 'all', got {classes!r}"
            )
        self.ignore_index = ignore_index
        self.classes = classes

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar loss; 0 (with zero gradient) when every pixel is ignored."""
        labels = check_logits_and_labels("LovaszSoftmaxLoss", logits, labels, self.ignore_index)
        num_classes = logits.shape[1]
        probs = logits.softmax(1).permute(0, 2, 3, 1).reshape(-1, num_classes)
        flat_labels = labels.reshape(-1)
        valid = flat_labels != self.ignore_index
        probs, flat_labels = probs[valid], flat_labels[valid]
        class_losses = []
        for class_id in range(num_classes):
            truth = (flat_labels == class_id).to(logits.dtype)
            if self.classes == "present" and not bool(truth.any()):
                continue
            errors = (truth - probs[:, class_id]).abs()
            sorted_errors, order = errors.sort(descending=True)
            class_losses.append(sorted_errors @ lovasz_gradient(truth[order]))
        if not class_losses:
            return logits.sum() * 0
        return torch.stack(class_losses).mean()
