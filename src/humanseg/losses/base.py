"""The `LOSSES` registry: each loss module registers its class under its PaddleSeg name."""

from __future__ import annotations

from humanseg.registry import Registry

LOSSES = Registry("loss")
