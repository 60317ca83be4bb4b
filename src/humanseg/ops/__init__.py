"""Array operations the losses, metrics and inference share: batched connected-component
labelling, and person-region cleaning of predicted masks. `humanseg.ops.connectivity` (the
semantic connectivity computation behind the SC loss and the metric; it needs torch) is
imported on its own."""

from humanseg.ops.ccl import CONNECTIVITIES, ComponentLabels, label_components
from humanseg.ops.regions import (
    DEFAULT_CONFIDENT_PEAK,
    DEFAULT_MIN_REGION_AREA,
    DEFAULT_MIN_REGION_FRAC,
    KeptRegions,
    RegionFilter,
    kept_regions,
)

__all__ = [
    "CONNECTIVITIES",
    "DEFAULT_CONFIDENT_PEAK",
    "DEFAULT_MIN_REGION_AREA",
    "DEFAULT_MIN_REGION_FRAC",
    "ComponentLabels",
    "KeptRegions",
    "RegionFilter",
    "kept_regions",
    "label_components",
]
