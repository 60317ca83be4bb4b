"""FCN on a backbone (PaddleSeg's `FCN` + `FCNHead`): 1x1 conv-BN-ReLU, 1x1 classifier, upsample."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.models.layers import (
    ConvBN,
    channels_last,
    check_input,
    check_num_classes,
    init_like_paddleseg,
)


class FCNHead(nn.Module):
    """Projects one backbone feature map (1x1 conv-BN-ReLU) and classifies it (1x1 conv)."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, bias: bool) -> None:
        super().__init__()
        self.project = ConvBN(in_channels, channels, 1, bias=bias)
        self.classifier = nn.Conv2d(channels, num_classes, 1, bias=bias)
        init_like_paddleseg(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Feature map -> low-resolution logits."""
        return self.classifier(self.project(x))


class FCN(nn.Module):
    """FCN: backbone features -> head -> bilinear upsampling to the input size."""

    def __init__(
        self,
        num_classes: int,
        backbone: nn.Module,
        backbone_indices: Sequence[int] = (-1,),
        channels: int | None = None,
        align_corners: bool = False,
        pretrained: str | None = None,
        bias: bool = True,
        data_format: str = "NCHW",
    ) -> None:
        super().__init__()
        if data_format != "NCHW":
            raise HumanSegError(f"FCN: data_format must be NCHW, got {data_format!r}")
        feat_channels = list(backbone.feat_channels)
        try:
            self.feature_index = int(backbone_indices[0])
            in_channels = feat_channels[self.feature_index]
        except (IndexError, TypeError, ValueError) as error:
            raise HumanSegError(
                f"FCN: backbone_indices {backbone_indices!r} do not fit the backbone's "
                f"{len(feat_channels)} output(s)"
            ) from error
        self.num_classes = check_num_classes(num_classes, "FCN")
        self.size_divisor = backbone.size_divisor
        self.align_corners = align_corners
        self.pretrained = pretrained
        self.backbone = backbone
        self.head = FCNHead(in_channels, channels or in_channels, num_classes, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image batch [N, C, H, W] -> logits [N, num_classes, H, W]."""
        check_input(x, self.backbone.in_channels, self.size_divisor, type(self).__name__)
        logits = self.head(self.backbone(channels_last(x))[self.feature_index])
        logits = F.interpolate(
            logits, x.shape[-2:], mode="bilinear", align_corners=self.align_corners
        )
        return logits.contiguous()
