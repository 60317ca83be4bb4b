"""The model contract in code: `SegmentationModel`, and the `MODELS` / `BACKBONES` registries.

Every model takes a normalised float32 batch `[N, in_channels, H, W]` and returns one tensor of
logits `[N, num_classes, H, W]`. The base class holds `num_classes`, `in_channels` and
`size_divisor` (input sides must be multiples of it), checks the input, hands the subclass's
`logits` a channels-last batch (oneDNN runs the convolutions 10-40% faster on the CPU) and
returns contiguous NCHW logits, so a new model writes only its layers and `logits`.
"""

from __future__ import annotations

import torch
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.models.layers import capturing_graph, channels_last, fuse
from humanseg.registry import Registry

# Networks by config `type` (`model:` sections) and backbones by name (`model.backbone:`).
MODELS = Registry("model")
BACKBONES = Registry("backbone")


class SegmentationModel(nn.Module):
    """Base class of every model: `forward(x) -> logits` at the input size, with the checks.

    Args:
        num_classes: classes predicted (an int >= 1; 2 for person / background).
        in_channels: channels of the input images (3 for RGB).
        size_divisor: input height and width must be multiples of it (the network's stride).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, size_divisor: int = 1) -> None:
        """Check and keep the attributes every model exposes."""
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise HumanSegError(
                f"{type(self).__name__}: num_classes must be an integer >= 1, got {num_classes!r}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.size_divisor = size_divisor

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The network proper: a checked channels-last batch -> logits at the input size."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch [N, in_channels, H, W] -> contiguous logits [N, num_classes, H, W]."""
        self.check_input(x)
        return self.logits(channels_last(x)).contiguous()

    def export_form(self) -> nn.Module:
        """The copy written to ONNX: batch norm folded (`fuse`). A model may reshape layers
        here for onnxruntime's kernels, as long as the logits stay the same."""
        return fuse(self)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise HumanSegError unless `x` is [N, in_channels, H, W], sides multiples of the
        divisor. Skipped while tracing or exporting, where sizes may be symbolic and the check
        would only add guards to the graph; eager calls are always checked."""
        if capturing_graph():
            return
        name, divisor = type(self).__name__, self.size_divisor
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise HumanSegError(
                f"{name}: expected input [N, {self.in_channels}, H, W], got {list(x.shape)}"
            )
        height, width = int(x.shape[2]), int(x.shape[3])
        if height % divisor or width % divisor:
            fit_height = -(-height // divisor) * divisor
            fit_width = -(-width // divisor) * divisor
            raise HumanSegError(
                f"{name}: input size {height}x{width} (HxW) is not a multiple of {divisor}; "
                f"resize or pad it, e.g. to {fit_height}x{fit_width}"
            )
