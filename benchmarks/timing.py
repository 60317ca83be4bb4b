"""Timing shared by the benchmarks and by tools/paddle_reference.py (standard library only)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_seconds(step: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of `step` over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
