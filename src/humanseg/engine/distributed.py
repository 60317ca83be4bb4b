"""Process-group set-up under `torchrun` (gloo on CPU, nccl on CUDA) and cross-rank helpers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from humanseg.engine.runtime import resolve_device


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the world size and the device it computes on."""

    rank: int
    world_size: int
    device: torch.device
    owns_group: bool = False  # True when init_distributed created the process group

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files, logs and progress bars."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def init_distributed(device_name: str) -> DistContext:
    """Join the process group that `torchrun` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world_size <= 1:
        return DistContext(rank=0, world_size=1, device=device)
    rank = int(os.environ.get("RANK", "0"))
    if device.type == "cuda":
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, device=device, owns_group=owns_group)


def shutdown_distributed(context: DistContext) -> None:
    """Destroy the process group if `init_distributed` created it (a caller's group stays)."""
    if context.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(context: DistContext, value: Any) -> Any:
    """Rank 0's `value` on every rank (for decisions taken on the main process)."""
    if not context.is_distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_to_main(context: DistContext, value: Any) -> list[Any]:
    """Every rank's `value`, in rank order, on rank 0; an empty list on the other ranks."""
    if not context.is_distributed:
        return [value]
    gathered: list[Any] | None = [None] * context.world_size if context.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered or []


def mean_across_ranks(context: DistContext, values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of a float tensor over all ranks (for logged losses), on the CPU."""
    if not context.is_distributed:
        return values.detach().cpu()
    reduced = values.detach().clone().to(context.device)
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced.cpu() / context.world_size
