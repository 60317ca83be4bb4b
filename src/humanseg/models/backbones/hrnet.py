"""HRNet backbones (PaddleSeg's `HRNet_W18` and `HRNet_W18_Small_V1`), layer for layer.

A stride-4 stem, a bottleneck layer, then stages of parallel branches at 1/4, 1/8, 1/16 and 1/32
that exchange information in fusion units. The output is one tensor: every branch of the last
stage upsampled to 1/4 and concatenated (18+36+72+144 = 270 channels for W18).

Paddle's `padding='same'` on stride-2 3x3 convs pads only after (see `ConvBN`), which equals
PaddleSeg exactly when every stride-2 input side is even, i.e. for inputs that are multiples of
32 (`size_divisor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.models.base import BACKBONES
from humanseg.models.layers import ConvBN, init_like_paddleseg


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) residual block; `conv_down` projects the shortcut."""

    def __init__(self, in_channels: int, width: int, project_shortcut: bool) -> None:
        super().__init__()
        self.conv1 = ConvBN(in_channels, width, 1)
        self.conv2 = ConvBN(width, width, 3)
        self.conv3 = ConvBN(width, width * 4, 1, relu=False)
        self.conv_down = (
            ConvBN(in_channels, width * 4, 1, relu=False)
            if project_shortcut
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(body(x) + shortcut(x)), summed and rectified in the body's fresh output."""
        return F.relu_(self.conv3(self.conv2(self.conv1(x))).add_(self.conv_down(x)))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN with an identity shortcut."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(channels, channels, 3)
        self.conv2 = ConvBN(channels, channels, 3, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """relu(conv2(conv1(x)) + x), summed and rectified in conv2's fresh output."""
        return F.relu_(self.conv2(self.conv1(x)).add_(x))


class HighResolutionModule(nn.Module):
    """Parallel branches of basic blocks, then a fusion that sums every branch into every other.

    `fuse[i][j]` brings branch j to branch i: identity (j == i), 1x1 conv-BN then bilinear
    upsampling (j > i), or a chain of i - j stride-2 3x3 convs (j < i).
    """

    def __init__(
        self,
        channels: Sequence[int],
        num_blocks: Sequence[int],
        align_corners: bool,
        downsample: partial,
    ) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(width) for _ in range(count)))
            for width, count in zip(channels, num_blocks, strict=True)
        )
        self.fuse = nn.ModuleList()
        for i, target in enumerate(channels):
            row = nn.ModuleList()
            for j, source in enumerate(channels):
                if j > i:
                    row.append(ConvBN(source, target, 1, relu=False))
                elif j < i:
                    steps = i - j
                    row.append(
                        nn.Sequential(
                            *(downsample(source, source) for _ in range(steps - 1)),
                            downsample(source, target, relu=False),
                        )
                    )
                else:
                    row.append(nn.Identity())
            self.fuse.append(row)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Run each branch, then fuse: out_i = relu(sum_j fuse[i][j](branch_j))."""
        features = [branch(x) for branch, x in zip(self.branches, features, strict=True)]
        fused = []
        for i, row in enumerate(self.fuse):
            total = features[i]
            for j, unit in enumerate(row):
                if j > i:
                    total = total + F.interpolate(
                        unit(features[j]),
                        features[i].shape[-2:],
                        mode="bilinear",
                        align_corners=self.align_corners,
                    )
                elif j < i:
                    total = total + unit(features[j])
            fused.append(F.relu(total))
        return fused


class Transition(nn.Module):
    """Adapts branch widths between stages and opens a new, half-resolution branch."""

    def __init__(
        self, in_channels: Sequence[int], out_channels: Sequence[int], downsample: partial
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for i, width in enumerate(out_channels):
            if i >= len(in_channels):
                self.convs.append(downsample(in_channels[-1], width))
            elif in_channels[i] != width:
                self.convs.append(ConvBN(in_channels[i], width, 3))
            else:
                self.convs.append(nn.Identity())

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """New branch i comes from old branch i, or from the last old branch when i is new."""
        return [
            conv(features[min(i, len(features) - 1)]) for i, conv in enumerate(self.convs)
        ]


class HRNet(nn.Module):
    """High-resolution network; forward returns `[features]` with `feat_channels[0]` channels.

    Registered as `HRNet_W18` and `HRNet_W18_Small_V1` (their stage layouts fixed); the config
    keys are the rest.

    Args:
        in_channels: channels of the input images.
        pretrained: a local `.pt` / `.pdparams` file loaded after building (a URL is ignored).
        align_corners: bilinear resizing in the fusions with align_corners (PaddleSeg's switch).
        padding_same: Paddle's `padding='same'` for the stride-2 stem convolutions.
        has_se, use_psa: PaddleSeg variants, not supported (only False).
    """

    size_divisor = 32

    def __init__(
        self,
        stage_channels: Sequence[Sequence[int]],
        stage_blocks: Sequence[Sequence[int]],
        stage_modules: Sequence[int],
        in_channels: int = 3,
        pretrained: str | None = None,
        align_corners: bool = False,
        padding_same: bool = True,
        has_se: bool = False,
        use_psa: bool = False,
    ) -> None:
        super().__init__()
        if has_se or use_psa:
            raise HumanSegError("HRNet: has_se and use_psa are not supported (only False)")
        self.in_channels = in_channels
        self.align_corners = align_corners
        self.pretrained = pretrained
        downsample = partial(ConvBN, kernel_size=3, stride=2, pad_end=padding_same)
        self.stem1 = downsample(in_channels, 64)
        self.stem2 = downsample(64, 64)
        width = stage_channels[0][0]
        self.layer1 = nn.Sequential(
            *(
                Bottleneck(64 if i == 0 else width * 4, width, project_shortcut=i == 0)
                for i in range(stage_blocks[0][0])
            )
        )
        previous = [width * 4]
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        for channels, blocks, modules in zip(
            stage_channels[1:], stage_blocks[1:], stage_modules[1:], strict=True
        ):
            self.transitions.append(Transition(previous, channels, downsample))
            self.stages.append(
                nn.Sequential(
                    *(
                        HighResolutionModule(channels, blocks, align_corners, downsample)
                        for _ in range(modules)
                    )
                )
            )
            previous = channels
        self.feat_channels = [sum(previous)]
        init_like_paddleseg(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image [N, C, H, W] -> [all branches at H/4 x W/4, concatenated]."""
        features = [self.layer1(self.stem2(self.stem1(x)))]
        for transition, stage in zip(self.transitions, self.stages, strict=True):
            features = stage(transition(features))
        size = features[0].shape[-2:]
        upsampled = [
            F.interpolate(f, size, mode="bilinear", align_corners=self.align_corners)
            for f in features[1:]
        ]
        return [torch.cat([features[0], *upsampled], dim=1)]



# PaddleSeg's HRNet variants: branch widths, blocks per branch and modules per stage (1-4).
HRNET_VARIANTS: dict[str, dict[str, list]] = {
    "HRNet_W18": {
        "stage_channels": [[64], [18, 36], [18, 36, 72], [18, 36, 72, 144]],
        "stage_blocks": [[4], [4, 4], [4, 4, 4], [4, 4, 4, 4]],
        "stage_modules": [1, 1, 4, 3],
    },
    "HRNet_W18_Small_V1": {
        "stage_channels": [[32], [16, 32], [16, 32, 64], [16, 32, 64, 128]],
        "stage_blocks": [[1], [2, 2], [2, 2, 2], [2, 2, 2, 2]],
        "stage_modules": [1, 1, 1, 1],
    },
}


for _name, _variant in HRNET_VARIANTS.items():
    BACKBONES.register(partial(HRNet, **_variant), name=_name)
