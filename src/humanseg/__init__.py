"""humanseg: connectivity-aware portrait segmentation (PP-HumanSeg and SCL) in PyTorch."""

import os

# albumentations otherwise asks the network for a newer release on every import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from humanseg.errors import HumanSegError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["HumanSegError", "__version__"]
