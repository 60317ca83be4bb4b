"""Weighted sum of losses (PaddleSeg's MixedLoss), also reporting each term for logging."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.losses.base import LOSSES


@LOSSES.register(nested={"losses": LOSSES})
class MixedLoss(nn.Module):
    """sum_k coef[k] * losses[k](logits, labels), every loss on the same logits.

    Args:
        losses: the loss specs (`{type: Name, ...}`), built before the class sees them.
        coef: one number per loss.
    """

    def __init__(self, losses: Sequence[nn.Module], coef: Sequence[float]) -> None:
        """`losses` are built loss modules; `coef` one number per loss."""
        super().__init__()
        if not isinstance(losses, Sequence) or not losses:
            raise HumanSegError("MixedLoss: losses must be a non-empty list")
        if not isinstance(coef, Sequence) or len(coef) != len(losses):
            raise HumanSegError(
                f"MixedLoss: coef must be a list with one number per loss ({len(losses)}), "
                f"got {coef!r}"
            )
        if any(isinstance(value, bool) or not isinstance(value, int | float) for value in coef):
            raise HumanSegError(f"MixedLoss: coef must hold numbers, got {coef!r}")
        self.losses = nn.ModuleList(losses)
        self.coef = [float(value) for value in coef]
        self.names = _unique_names([type(loss).__name__ for loss in losses])

    def forward_terms(
        self, logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(weighted total, {term name: detached unweighted value}); nested terms are 'A.B'."""
        total = logits.new_zeros(())
        terms: dict[str, torch.Tensor] = {}
        for name, loss, coef in zip(self.names, self.losses, self.coef, strict=True):
            if isinstance(loss, MixedLoss):
                value, inner = loss.forward_terms(logits, labels)
                terms.update({f"{name}.{inner_name}": term for inner_name, term in inner.items()})
            else:
                value = loss(logits, labels)
                terms[name] = value.detach()
            total = total + coef * value
        return total, terms

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The weighted total as a scalar."""
        return self.forward_terms(logits, labels)[0]


def _unique_names(names: list[str]) -> list[str]:
    """Type names, numbered from the second occurrence on ('CrossEntropyLoss', ..._2)."""
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique
