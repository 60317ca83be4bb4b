"""FCN on a backbone (PaddleSeg's `FCN` + `FCNHead`): 1x1 conv-BN-ReLU, 1x1 classifier, upsample."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from humanseg.errors import HumanSegError
from humanseg.models.base import BACKBONES, MODELS, SegmentationModel
from humanseg.models.layers import ConvBN, init_like_paddleseg, upsample_logits


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


@MODELS.register(nested={"backbone": BACKBONES})
class FCN(SegmentationModel):
    """FCN: backbone features -> head -> bilinear upsampling to the input size.

    Args:
        num_classes: classes predicted.
        backbone: the backbone's spec, e.g. `{type: HRNet_W18}` (built before the FCN sees it).
        backbone_indices: which backbone output the head reads (PaddleSeg's `[-1]`: the last).
        channels: the head's hidden channels (default: the backbone output's).
        align_corners: bilinear upsampling with align_corners, as PaddleSeg's switch.
        pretrained: a local `.pt` / `.pdparams` file loaded after building (a URL is ignored).
        bias: 1x1 convolutions of the head with bias (PaddleSeg: yes).
        data_format: only `NCHW` (PaddleSeg's key; NHWC is Paddle's layout switch).
    """

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
        super().__init__(num_classes, backbone.in_channels, backbone.size_divisor)
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
        self.align_corners = align_corners
        self.pretrained = pretrained
        self.backbone = backbone
        self.head = FCNHead(in_channels, channels or in_channels, num_classes, bias)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Head on the chosen backbone output, upsampled to the input size."""
        logits = self.head(self.backbone(x)[self.feature_index])
        return upsample_logits(logits, x.shape[-2:], self.align_corners)
