"""Training data order and augmentation randomness as pure functions of (seed, iteration).

Batches come from a seeded permutation per epoch, and each sample's augmentation is seeded from
its place in that order. Resuming at iteration k therefore replays exactly the batches (and the
augmentations) an uninterrupted run would have seen, in one process or sharded across ranks.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from humanseg.errors import HumanSegError

SampleKey = tuple[int, int]  # (dataset index, augmentation seed)


class ShuffledBatches(Sampler[list[SampleKey]]):
    """Endless batches for one rank: global batch b of epoch e is permutation(e)[b*B:(b+1)*B].

    Rank r takes the r-th slice of each global batch, so N ranks with batch size B see the same
    samples, with the same augmentation seeds, as one process with batch size N*B.
    """

    def __init__(
        self, dataset_size: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
        start_iteration: int = 0,
    ) -> None:
        """Describe the order; `start_iteration` batches are skipped without loading them."""
        global_batch = batch_size * world_size
        if dataset_size < global_batch:
            raise HumanSegError(
                f"train_dataset: {dataset_size} samples, fewer than one batch of {global_batch} "
                f"(batch_size {batch_size} x {world_size} processes)")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_iteration = start_iteration
        self.batches_per_epoch = dataset_size // global_batch

    def epoch_order(self, epoch: int) -> list[int]:
        """The shuffled dataset indices of `epoch` (the same on every rank)."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.dataset_size, generator=generator).tolist()

    def sample_seed(self, epoch: int, position: int) -> int:
        """The augmentation seed of the sample at `position` of `epoch`'s order."""
        return (self.seed * 1_000_003 + epoch * self.dataset_size + position) % (2**31 - 1)

    def __iter__(self) -> Iterator[list[SampleKey]]:
        """Yield this rank's share of each global batch, from `start_iteration` on, forever."""
        epoch, first_batch = divmod(self.start_iteration, self.batches_per_epoch)
        global_batch = self.batch_size * self.world_size
        while True:
            order = self.epoch_order(epoch)
            for batch in range(first_batch, self.batches_per_epoch):
                start = batch * global_batch + self.rank * self.batch_size
                yield [
                    (order[position], self.sample_seed(epoch, position))
                    for position in range(start, start + self.batch_size)
                ]
            epoch, first_batch = epoch + 1, 0

    def __len__(self) -> int:
        """Batches per epoch (the sampler itself never ends)."""
        return self.batches_per_epoch


class SeededSamples(Dataset):
    """Wraps a dataset so that `[(index, seed)]` loads `dataset[index]` with seeded augmentation.

    Datasets and transforms draw their randomness from the global Python / NumPy / torch
    generators; those are seeded for the call and restored after it, so loading data never
    shifts the training process's own random streams.
    """

    def __init__(self, dataset: Dataset) -> None:
        """Remember the dataset."""
        self.dataset = dataset

    def __len__(self) -> int:
        """The wrapped dataset's length."""
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: SampleKey) -> Any:
        """Load sample `index` with every random stream seeded from `seed`."""
        index, seed = key
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                np.random.seed(seed)
                torch.default_generator.manual_seed(seed)  # the CPU generator only
                return self.dataset[index]
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
