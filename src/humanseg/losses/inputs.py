"""Shared validation of a loss's (logits, labels): one clear HumanSegError, never a traceback."""

from __future__ import annotations

import torch

from humanseg.errors import HumanSegError


def check_logits_and_labels(
    loss_name: str, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int
) -> torch.Tensor:
    """Check shapes, dtypes and label range; return the labels as int64 on the logits' device."""
    if not isinstance(logits, torch.Tensor) or not isinstance(labels, torch.Tensor):
        raise HumanSegError(f"{loss_name}: logits and labels must be torch tensors")
    if logits.dim() != 4:
        raise HumanSegError(
            f"{loss_name}: logits must have shape [N, C, H, W], got {tuple(logits.shape)}"
        )
    if not logits.is_floating_point():
        raise HumanSegError(f"{loss_name}: logits must be floating point, got {logits.dtype}")
    if labels.dim() != 3:
        raise HumanSegError(
            f"{loss_name}: labels must have shape [N, H, W], got {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise HumanSegError(f"{loss_name}: labels must hold integer class ids, got {labels.dtype}")
    num_images, num_classes, height, width = logits.shape
    if tuple(labels.shape) != (num_images, height, width):
        raise HumanSegError(
            f"{loss_name}: labels shape {tuple(labels.shape)} does not match logits "
            f"{tuple(logits.shape)} (expected [{num_images}, {height}, {width}])"
        )
    if min(num_images, height, width) == 0:
        raise HumanSegError(f"{loss_name}: empty batch or image, logits {tuple(logits.shape)}")
    if num_classes < 2:
        raise HumanSegError(f"{loss_name}: logits need at least 2 classes, got {num_classes}")
    labels = labels.to(device=logits.device, dtype=torch.int64)
    lowest, highest = (int(value) for value in torch.aminmax(labels))
    if lowest >= 0 and highest < num_classes:  # fast path: no ignored pixel, all in range
        return labels
    out_of_range = (labels >= num_classes) | (labels < 0)
    out_of_range &= labels != ignore_index
    if bool(out_of_range.any()):
        bad_value = int(labels[out_of_range][0])
        raise HumanSegError(
            f"{loss_name}: label value {bad_value} is outside 0..{num_classes - 1} "
            f"and is not ignore_index ({ignore_index})"
        )
    return labels


def check_class_weights(loss_name: str, weight: object) -> torch.Tensor | None:
    """Class weights as a float tensor, or None; anything but non-negative numbers is an error."""
    if weight is None:
        return None
    try:
        tensor = torch.as_tensor(weight, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as error:
        message = f"{loss_name}: weight must be a list of numbers, got {weight!r}"
        raise HumanSegError(message) from error
    if tensor.dim() != 1 or tensor.numel() < 2 or bool((tensor < 0).any()):
        raise HumanSegError(
            f"{loss_name}: weight must be a list of >= 2 non-negative numbers, got {weight!r}"
        )
    return tensor
