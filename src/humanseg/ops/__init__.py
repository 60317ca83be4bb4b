"""Tensor operations the losses and metrics share: batched connected-component labelling."""

from humanseg.ops.ccl import CONNECTIVITIES, ComponentLabels, label_components

__all__ = ["CONNECTIVITIES", "ComponentLabels", "label_components"]
