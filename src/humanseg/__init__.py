"""humanseg: connectivity-aware portrait segmentation (PP-HumanSeg and SCL) in PyTorch.

The Python API (`humanseg.deploy.api`), loaded on first use so `import humanseg` stays light:

    import humanseg
    result = humanseg.segment("photo.jpg")          # result.mask, result.alpha
    humanseg.load_predictor(backend="onnxruntime")  # load once, call on many photos
"""

import os
from typing import Any

# albumentations otherwise asks the network for a newer release on every import.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from humanseg.errors import HumanSegError  # noqa: E402

__version__ = "0.1.0"
API = ("load_predictor", "segment", "Segmenter", "SegmentResult")
__all__ = ["HumanSegError", "__version__", *API]


def __getattr__(name: str) -> Any:
    """The API's names, imported from `humanseg.deploy.api` when first asked for."""
    if name in API:
        from humanseg.deploy import api

        return getattr(api, name)
    raise AttributeError(f"module 'humanseg' has no attribute {name!r}")
