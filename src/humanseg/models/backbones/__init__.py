"""Backbones, registered in `humanseg.models.base.BACKBONES` under PaddleSeg's names."""

from __future__ import annotations

from humanseg.models.backbones import hrnet  # noqa: F401  (registers the HRNet variants)
from humanseg.models.base import BACKBONES

__all__ = ["BACKBONES"]
