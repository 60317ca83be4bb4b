"""PP-HumanSeg-Lite (the paper's ConnectNet): PaddleSeg's `PPHumanSegLite`, layer for layer.

A stride-2 stem, a 1/2-resolution shortcut, two ShuffleNetV2-style stages (1/8 and 1/16), and a
depthwise-separable decoder that joins the shortcut. Padding is symmetric everywhere and the
decoder resizes to the shortcut's size, so every input size works exactly as in PaddleSeg: the
model's `size_divisor` is 1. As in PaddleSeg, the classifier ends with BN + ReLU, so logits are
non-negative.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from humanseg.models.base import MODELS, SegmentationModel
from humanseg.models.layers import (
    ConvBN,
    capturing_graph,
    channels_last,
    init_like_paddleseg,
    upsample_logits,
    with_zero_channels,
)

# onnxruntime's CPU convolutions run in blocks of 8 (AVX2) or 16 (AVX-512) channels (NCHWc); a
# layer of another width falls back to its plain kernels, several times slower.
CHANNEL_BLOCK = 16


class SeparableConvBN(nn.Module):
    """Depthwise 3x3 conv-BN followed by pointwise 1x1 conv-BN-ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = ConvBN(in_channels, in_channels, 3, stride, groups=in_channels, relu=False)
        self.pointwise = ConvBN(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """depthwise -> pointwise."""
        return self.pointwise(self.depthwise(x))


def channel_shuffle(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Channels interleaved in 2 groups, [f0, s0, f1, s1, ...].

    Eager calls concatenate and use ATen's shuffle kernel, which keeps channels-last inputs
    channels-last (stacking would return NCHW and send every following convolution through a
    layout conversion) and is 1.5-3x faster at this model's sizes; a captured graph keeps the
    plain stack-and-flatten form, which every exporter understands.
    """
    if capturing_graph():
        return torch.stack([first, second], dim=2).flatten(1, 2)
    return F.channel_shuffle(torch.cat([first, second], dim=1), 2)


class ShuffleBlock(nn.Module):
    """ShuffleNetV2 unit: split (or downsample) into two halves, transform one, concat, shuffle.

    Stride 1 keeps the channels; stride 2 halves the resolution and outputs `out_channels`
    (default: twice the input). PaddleSeg also builds a downsampling branch in stride-1 units that
    its forward never uses; it is left out here (the importer drops its weights).
    """

    def __init__(self, in_channels: int, stride: int, out_channels: int | None = None) -> None:
        super().__init__()
        self.stride = stride
        if stride == 1:
            branch_in = in_channels // 2
            half = branch_in
        else:
            branch_in = in_channels
            half = (out_channels or 2 * in_channels) // 2
            self.down_branch = SeparableConvBN(in_channels, half, stride)
        self.pointwise = ConvBN(branch_in, half, 1)
        self.separable = SeparableConvBN(half, half, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concat of the two halves, channel-shuffled in 2 groups: [s0, b0, s1, b1, ...]."""
        if self.stride == 1:
            shortcut, branch = x.chunk(2, dim=1)
            # A channel slice is strided in every layout; oneDNN wants it dense.
            branch = channels_last(branch)
        else:
            shortcut, branch = self.down_branch(x), x
        branch = self.separable(self.pointwise(branch))
        return channel_shuffle(shortcut, branch)


@MODELS.register
class PPHumanSegLite(SegmentationModel):
    """The ultra-light real-time portrait model; forward returns logits at the input size.

    Args:
        num_classes: classes predicted.
        in_channels: channels of the input images.
        pretrained: a local `.pt` / `.pdparams` file loaded after building (a URL is ignored).
        align_corners: bilinear resizing with align_corners, as PaddleSeg's switch.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        pretrained: str | None = None,
        align_corners: bool = False,
    ) -> None:
        super().__init__(num_classes, in_channels, size_divisor=1)
        self.align_corners = align_corners
        self.pretrained = pretrained
        self.stem = ConvBN(in_channels, 36, 3, stride=2)
        self.shortcut = ConvBN(36, 18, 1)
        self.block1 = nn.Sequential(
            ShuffleBlock(36, stride=2, out_channels=72), *(ShuffleBlock(72, 1) for _ in range(3))
        )
        self.block2 = nn.Sequential(ShuffleBlock(72, 2), *(ShuffleBlock(144, 1) for _ in range(7)))
        self.decode0 = SeparableConvBN(144, 64)
        self.decode1 = SeparableConvBN(64 + 18, 64)
        self.classifier = SeparableConvBN(64, num_classes)
        init_like_paddleseg(self)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder, decoder joined with the 1/2-resolution shortcut, resized to the input."""
        size = x.shape[-2:]
        x = self.stem(x)
        shortcut = self.shortcut(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        x = self.decode0(self.block2(self.block1(x)))
        x = F.interpolate(
            x, shortcut.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        x = self.classifier(self.decode1(torch.cat([shortcut, x], dim=1)))
        return upsample_logits(x, size, self.align_corners)

    def export_form(self) -> nn.Module:
        """BN folded, and the 18-channel shortcut widened by zero channels to a multiple of
        `CHANNEL_BLOCK`, so the decoder joins 96 channels instead of 82 and onnxruntime runs its
        two widest convolutions blocked: the same logits in about 27% less time (fp32, 1 thread,
        192x192; docs/benchmarks.md)."""
        fused = super().export_form()
        width = fused.shortcut.conv.out_channels
        extra = -width % CHANNEL_BLOCK
        fused.shortcut.conv = with_zero_channels(fused.shortcut.conv, width, extra, inputs=False)
        decoder = fused.decode1
        decoder.depthwise.conv = with_zero_channels(decoder.depthwise.conv, width, extra, True)
        decoder.pointwise.conv = with_zero_channels(decoder.pointwise.conv, width, extra, True)
        return fused
