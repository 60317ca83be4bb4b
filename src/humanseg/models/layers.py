"""Shared by the networks: conv-BN(-ReLU) units, input checks, layout and initialisation."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


class ConvBN(nn.Module):
    """Conv2d + BatchNorm2d (+ ReLU): PaddleSeg's ConvBN / ConvBNReLU, named `conv` and `bn`.

    `pad_end=True` reproduces Paddle's `padding='same'` for a stride-2 3x3 conv on an even-sized
    input: no padding before, one row/column after (PyTorch's symmetric padding would shift the
    sampling grid by one pixel). BatchNorm keeps PyTorch's defaults, eps=1e-5 and momentum=0.1,
    which is Paddle's momentum=0.9 (running = 0.9 * running + 0.1 * batch).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        relu: bool = True,
        bias: bool = False,
        pad_end: bool = False,
    ) -> None:
        super().__init__()
        padding = 0 if pad_end else kernel_size // 2
        self.pad_end = pad_end
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=bias
        )
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """conv -> bn (-> relu)."""
        if self.pad_end:
            x = F.pad(x, (0, 1, 0, 1))
        x = self.bn(self.conv(x))
        # In place: neither BN's nor the convolution's backward needs the tensor it overwrites.
        return F.relu_(x) if self.relu else x


def fuse(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every ConvBN's batch norm folded into its convolution.

    Same logits (within float rounding) from one operation less per unit: the predictor's torch
    path and the ONNX export run the fused copy. Inference only: BN statistics no longer exist
    to update, and its state_dict has no `bn` keys (checkpoints stay those of the unfused model).
    """
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, ConvBN) and isinstance(module.bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn_eval(module.conv, module.bn)
            module.bn = nn.Identity()
    return fused


def channels_last_weights(model: nn.Module) -> nn.Module:
    """`model` (changed in place) with its convolution weights laid out like its activations,
    for eager inference: PyTorch's own kernel for small batch-1 inputs (under 20,480 values:
    HRNet's 1/16 and 1/32 branches) otherwise copies each NCHW weight to channels-last on every
    call (HRNet-W18 at 192x192: 8-13% of its time). Not for export: the ONNX exporter mis-sizes
    a dynamic-shape Resize after channels-last weights."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.weight.data = channels_last(module.weight.data)
    return model


def with_zero_channels(conv: nn.Conv2d, at: int, count: int, inputs: bool) -> nn.Conv2d:
    """A copy of `conv` (bias folded in) with `count` zero channels inserted at channel `at` of
    its inputs (`inputs`: weights that ignore them) or of its outputs (zero filters and biases);
    a depthwise convolution gets both, one group per channel. The other outputs keep their
    values, so a layer can take a width a kernel prefers without changing the network's result."""
    weight = conv.weight.detach()
    bias = conv.bias.detach() if conv.bias is not None else weight.new_zeros(conv.out_channels)
    depthwise = conv.groups == conv.in_channels == conv.out_channels > 1
    axis = 1 if inputs and not depthwise else 0
    shape = list(weight.shape)
    shape[axis] = count
    weight = torch.cat([weight.narrow(axis, 0, at), weight.new_zeros(shape),
                        weight.narrow(axis, at, weight.shape[axis] - at)], axis)
    if axis == 0:
        bias = torch.cat([bias[:at], bias.new_zeros(count), bias[at:]])
    groups = weight.shape[0] if depthwise else conv.groups
    wider = nn.Conv2d(weight.shape[1] * groups, weight.shape[0], conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, groups).to(weight.device)
    with torch.no_grad():
        wider.weight.copy_(weight)
        wider.bias.copy_(bias)
    return wider.eval()


def capturing_graph() -> bool:
    """True while torch.jit.trace, torch.export / ONNX export or torch.compile records a graph."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """`x` laid out channels-last (NHWC in memory; same shape and values).

    The models feed their convolutions channels-last activations, which oneDNN runs 10-40%
    faster on the CPU here (training weights keep their usual layout; eager inference lays its
    weights out channels-last too, `channels_last_weights`), and return contiguous NCHW logits.
    """
    if capturing_graph():  # a graph has no memory layout; forcing one pins the batch size
        return x
    return x.contiguous(memory_format=torch.channels_last)


def upsample_logits(logits: torch.Tensor, size: Sequence[int], align_corners: bool,
                    ) -> torch.Tensor:
    """Bilinear resize of few-channel logits to `size`, in NCHW: with 2 channels the
    channels-last kernel has nothing to vectorise over and runs 2-4x slower (forward and
    backward), and the model returns NCHW logits anyway."""
    return F.interpolate(logits.contiguous(), tuple(size), mode="bilinear",
                         align_corners=align_corners)


def init_like_paddleseg(model: nn.Module) -> None:
    """PaddleSeg's initialisation: conv weights N(0, 0.001), conv biases 0, BN weight 1, bias 0."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.001)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
