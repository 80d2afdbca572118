"""Which samples a training step sees: a permutation per (seed, epoch), sharded across processes, that can start
in the middle of an epoch, so that a resumed run draws exactly the batches the killed one would have."""
from __future__ import annotations

from typing import Any, Dict, Iterator, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..data.dataset import TopDownDataset


class EpochSampler(Sampler):
    """A permutation seeded by (seed, epoch), starting at ``start`` (for resuming inside an epoch).

    ``rank``/``world_size`` give each distributed process an interleaved share of the permutation.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.shuffle = size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def indices(self) -> np.ndarray:
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.size) if self.shuffle
                 else np.arange(self.size))
        # Equal shares: the last size % world_size entries of the permutation sit this epoch out, because
        # processes stepping different numbers of batches would wait for each other forever.
        order = order[: self.size - self.size % self.world_size]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start:].tolist())

    def __len__(self) -> int:
        return max(0, len(self.indices()) - self.start)


class EpochIndexed(Dataset):
    """``dataset[(epoch, index)]``: the epoch travels with each index, so that persistent worker processes (which
    hold their own copy of the dataset) draw that epoch's augmentation."""

    def __init__(self, dataset: TopDownDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Tuple[int, int]) -> Dict[str, Any]:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


class WithEpoch(Sampler):
    def __init__(self, sampler: EpochSampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, index) for index in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def seed_worker(worker_id: int) -> None:
    # torch seeds each worker's torch and random generators from the loader's generator; NumPy's global one too.
    # (The dataset itself draws from generators seeded by (seed, epoch, index), whichever worker runs it.)
    np.random.seed(torch.initial_seed() % 2**32)
