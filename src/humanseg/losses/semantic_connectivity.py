"""Semantic Connectivity-aware loss (SCL, PP-HumanSeg) with gradient; definition in docs/sc_loss.md.

The computation (components, matching, the exact gradient) lives in `humanseg.ops.connectivity`,
which the metrics share for the hard connectivity score.
"""

from __future__ import annotations

import torch
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.losses.base import LOSSES
from humanseg.losses.inputs import check_logits_and_labels
from humanseg.ops.connectivity import (
    UNMATCHED_MODES,
    TwoClassMargin,
    hard_connectivity_loss,
    semantic_connectivity_per_image,
)


@LOSSES.register
class SemanticConnectivityLoss(nn.Module):
    """SC loss: 1 - connectivity between predicted and label components, averaged per class.

    Args:
        ignore_index: label value that belongs to no component.
        max_pred_num_conn: per class, at most this many predicted components count when there
            are more than twice as many as label components (the largest are kept).
        use_argmax: false takes a hard class map [N, H, W] instead of logits (no gradient).
        connectivity: 8 or 4 (pixel neighbourhood of a component).
        unmatched: how a predicted component touching no label component counts in the
            denominator: `hard` (the paper: 1, no gradient) or `soft` (its mean probability,
            so false blobs are pushed away; docs/sc_loss.md).
    """

    def __init__(
        self,
        ignore_index: int = 255,
        max_pred_num_conn: int = 10,
        use_argmax: bool = True,
        connectivity: int = 8,
        unmatched: str = "hard",
    ) -> None:
        """PaddleSeg's arguments and `unmatched` (see the class docstring)."""
        super().__init__()
        if max_pred_num_conn < 1:
            raise HumanSegError(
                f"SemanticConnectivityLoss: max_pred_num_conn must be >= 1, got {max_pred_num_conn}"
            )
        if connectivity not in (4, 8):
            raise HumanSegError(
                f"SemanticConnectivityLoss: connectivity must be 4 or 8, got {connectivity}"
            )
        if unmatched not in UNMATCHED_MODES:
            raise HumanSegError(
                f"SemanticConnectivityLoss: unmatched must be one of {', '.join(UNMATCHED_MODES)}, "
                f"got {unmatched!r}"
            )
        self.ignore_index = ignore_index
        self.max_pred_num_conn = max_pred_num_conn
        self.use_argmax = use_argmax
        self.connectivity = connectivity
        self.unmatched = unmatched

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
            TwoClassMargin.for_logits(logits), labels, logits.shape[1], self.ignore_index,
            self.max_pred_num_conn, self.connectivity, self.unmatched,
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the per-image loss; a scalar that carries gradient to logits."""
        return self.per_image(logits, labels).mean()
