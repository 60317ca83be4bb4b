"""Timing shared by the benchmarks and by tools/paddle_reference.py (standard library only)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def median_times(step: Callable[[], object], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Median wall and process-CPU seconds of `step` over `repeats` calls, after `warmup` calls.

    CPU time is reported beside wall time because a shared machine stretches wall time with
    other people's load, while the CPU seconds a step needs stay comparable between runs.
    """
    for _ in range(warmup):
        step()
    wall, cpu = [], []
    for _ in range(repeats):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - start_wall)
        cpu.append(time.process_time() - start_cpu)
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu)}
