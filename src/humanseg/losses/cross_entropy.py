"""Pixel-wise cross-entropy with ignore_index, class weights and optional hard-pixel mining."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.losses.base import LOSSES
from humanseg.losses.inputs import check_class_weights, check_logits_and_labels


@LOSSES.register
class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over non-ignored pixels (weighted by class weight, as torch does).

    Args:
        weight: one weight per class (default: all 1).
        ignore_index: label value that takes no part.
        top_k_percent_pixels: in (0, 1]; below 1, only that share of the hardest pixels counts.
        avg_non_ignore: PaddleSeg's switch; the mean is always over non-ignored pixels here.
        data_format: only `NCHW`.
    """

    def __init__(
        self,
        weight: Sequence[float] | None = None,
        ignore_index: int = 255,
        top_k_percent_pixels: float = 1.0,
        avg_non_ignore: bool = True,
        data_format: str = "NCHW",
    ) -> None:
        """PaddleSeg's arguments; `top_k_percent_pixels` < 1 averages only the hardest pixels."""
        super().__init__()
        if not 0.0 < top_k_percent_pixels <= 1.0:
            raise HumanSegError(
                f"CrossEntropyLoss: top_k_percent_pixels must be in (0, 1], "
                f"got {top_k_percent_pixels}"
            )
        if data_format != "NCHW":
            raise HumanSegError(f"CrossEntropyLoss: only data_format NCHW, got {data_format!r}")
        self.weight = check_class_weights("CrossEntropyLoss", weight)
        self.ignore_index = ignore_index
        self.top_k_percent_pixels = top_k_percent_pixels
        self.avg_non_ignore = avg_non_ignore

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scalar loss; 0 (with zero gradient) when every pixel is ignored."""
        labels = check_logits_and_labels("CrossEntropyLoss", logits, labels, self.ignore_index)
        weight = None
        if self.weight is not None:
            if self.weight.numel() != logits.shape[1]:
                raise HumanSegError(
                    f"CrossEntropyLoss: weight has {self.weight.numel()} entries but logits "
                    f"have {logits.shape[1]} classes"
                )
            weight = self.weight.to(device=logits.device, dtype=logits.dtype)
        if self.top_k_percent_pixels < 1.0 or not self.avg_non_ignore:
            pixel_loss = F.cross_entropy(
                logits, labels, weight=weight, ignore_index=self.ignore_index, reduction="none"
            )
            if not self.avg_non_ignore:
                return pixel_loss.mean()
            num_valid = int((labels != self.ignore_index).sum())
            num_hard = max(1, int(self.top_k_percent_pixels * num_valid))
            return pixel_loss.flatten().topk(num_hard).values.mean()
        # Weighted mean over non-ignored pixels, as torch's "mean", but 0 (not NaN) when all
        # pixels are ignored.
        summed = F.cross_entropy(
            logits, labels, weight=weight, ignore_index=self.ignore_index, reduction="sum"
        )
        valid = labels != self.ignore_index
        if weight is None:
            denominator = valid.sum().to(logits.dtype)
        else:
            denominator = weight[labels.where(valid, 0)].mul(valid).sum()
        return summed / denominator.clamp_min(torch.finfo(logits.dtype).tiny)
