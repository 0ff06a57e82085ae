"""How the training loop walks its data, so that a run stopped at any batch goes on with the same
batches and the same random draws.

Owns ``Batching`` (one run's batch size, order and workers: the batches of an epoch, from any batch
on) and ``eval_batches``. Three kinds of data, each resumed mid-epoch its own way:

- In memory: a dataset with ``get_batch(indices)``, or a two-tensor ``TensorDataset``, is sliced in
  whole batches from the epoch's order (a function of seed and epoch, as ``DistributedSampler``
  draws it); done batches are skipped by starting further along. Augmentation inside ``get_batch``
  draws from the global generators, which the checkpoint saves. This keeps a step's cost near a bare
  PyTorch loop.
- A map-style ``Dataset``: the loop's own ``DataLoader`` over the epoch's order. Each batch is loaded
  under generators (torch, ``random``, NumPy) seeded from (seed, epoch, rank, batch number) and put
  back afterwards, in the main process and in workers alike: a batch's augmentation depends on
  nothing else, so done batches are skipped without loading them and ``num_workers`` does not change
  the result. Workers ignore SIGINT: Ctrl-C reaches only the main process, which stops at a step.
- A caller's ``DataLoader``, used as given: the generators are set back to their state before the
  epoch's first batch, the iterator is made again and the done batches are loaded again and dropped
  (replay), then the generators are set to the checkpoint's. Exact when the loader's randomness comes
  from its sampler's or its own generator, the global generators or its workers' seeds; not with
  ``persistent_workers=True`` (the workers carry their generators from one epoch to the next).

May import ``zoo`` and torch; never ``zoo.cli``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import random
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from zoo.errors import RunError

from .state import capture_rng, restore_rng

__all__ = ["Batching", "eval_batches", "sample_pixels", "dataset_size", "seeded_rng", "batch_seed"]

Batch = tuple[torch.Tensor, torch.Tensor]


def dataset_size(data: Any) -> int:
    """Samples in a dataset, or in a DataLoader's dataset."""
    return len(data.dataset) if isinstance(data, DataLoader) else len(data)


@dataclass(frozen=True)
class Batching:
    """One run's batching: this rank's share of each epoch, in ``batch_size`` batches."""

    batch_size: int  # samples per batch on this rank
    drop_last: bool  # drop each epoch's last partial batch
    num_workers: int  # worker processes for a map-style Dataset (in-memory data never uses them)
    pin: bool  # pinned host memory (for copies to a GPU)
    seed: int  # the epoch order and the per-batch augmentation seeds derive from it
    rank: int = 0  # this process under DDP
    world: int = 1  # processes under DDP

    def steps_per_epoch(self, data: Any) -> int:
        """Batches in one epoch on this rank."""
        if isinstance(data, DataLoader):
            return len(data)
        n_local = math.ceil(len(data) / self.world)
        return n_local // self.batch_size if self.drop_last else math.ceil(n_local / self.batch_size)

    def order(self, n: int, epoch: int) -> torch.Tensor:
        """This rank's sample order for ``epoch``, a pure function of (seed, epoch)."""
        if self.world > 1:
            sampler = DistributedSampler(range(n), num_replicas=self.world, rank=self.rank, shuffle=True,
                                         seed=self.seed)
            sampler.set_epoch(epoch)
            return torch.tensor(list(sampler), dtype=torch.long)
        # DistributedSampler's recipe, so one process sees the union of the ranks' batches.
        g = torch.Generator()
        g.manual_seed(self.seed + epoch)
        return torch.randperm(n, generator=g)

    def epoch(self, data: Any, epoch: int, *, skip: int = 0, epoch_rng: dict[str, Any] | None = None,
              device: torch.device | None = None) -> Iterator[Batch]:
        """The batches of ``epoch`` from batch ``skip`` on. For a caller's DataLoader resumed mid-epoch,
        ``epoch_rng`` is what ``loader_epoch_start`` returned before the epoch's first batch.

        Raises:
            RunError: a caller's DataLoader resumed at ``skip`` without ``epoch_rng``, or shorter than
                ``skip`` batches now.
        """
        if isinstance(data, DataLoader):
            return self._loader_epoch(data, epoch, skip, epoch_rng, device)
        order = self.order(len(data), epoch)
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        batcher = in_memory_batcher(data)
        if batcher is not None:
            starts = range(skip * self.batch_size, stop, self.batch_size)
            return (batcher(order[s:s + self.batch_size]) for s in starts)
        numbered = NumberedBatches(order[:stop].tolist(), self.batch_size, first=skip)
        seeded = SeededBatches(data, self.seed, epoch, self.rank)
        loader = DataLoader(seeded, batch_sampler=numbered, num_workers=self.num_workers, pin_memory=self.pin,
                            generator=torch.Generator().manual_seed(self.seed + epoch),
                            worker_init_fn=ignore_sigint if self.num_workers else None)
        return iter(loader)

    def loader_epoch_start(self, loader: DataLoader, epoch: int, device: torch.device | None) -> dict[str, Any]:
        """Call before a caller's loader's first batch of ``epoch``: sets its sampler's epoch and returns
        the generators' state, from which ``epoch`` can be replayed."""
        _set_epoch(loader, epoch)
        return {"global": capture_rng(device), "loader": [g.get_state() for g in _generators(loader)]}

    def _loader_epoch(self, loader: DataLoader, epoch: int, skip: int, epoch_rng: dict[str, Any] | None,
                      device: torch.device | None) -> Iterator[Batch]:
        if skip == 0:
            return iter(loader)
        if epoch_rng is None:
            raise RunError("cannot resume mid-epoch: the checkpoint has no record of the DataLoader's state at "
                           "the epoch's start; start the run again without resume")
        _set_epoch(loader, epoch)
        now = capture_rng(device)
        restore_rng(epoch_rng["global"], device)
        for g, s in zip(_generators(loader), epoch_rng["loader"], strict=True):
            g.set_state(s)
        batches = iter(loader)
        for _ in range(skip):  # replay: load the done batches again, so every generator moves as it did
            if next(batches, None) is None:
                raise RunError(f"cannot resume: the DataLoader now has fewer than the {skip} batches the "
                               "interrupted epoch had done; resume with the same data and batch size")
        restore_rng(now, device)
        return batches


def in_memory_batcher(data: Any) -> Callable[[torch.Tensor], Batch] | None:
    """``indices -> (x, y)`` for data sliced in whole batches, or None for other data."""
    if hasattr(data, "get_batch"):
        return data.get_batch
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        x_all, y_all = data.tensors
        return lambda idx: (x_all[idx], y_all[idx])
    return None


def sample_pixels(data: Any) -> int | None:
    """Height x width of ``data``'s first sample when it is an image (C,H,W or H,W), else None (features,
    an empty set, a DataLoader, whose batches are already made)."""
    if isinstance(data, DataLoader) or not len(data):
        return None
    batcher = in_memory_batcher(data)
    with torch.random.fork_rng(devices=[]):  # a random transform's draw must not shift the run's stream
        x = batcher(torch.arange(0, 1))[0][0] if batcher is not None else data[0][0]
    return int(x.shape[-2] * x.shape[-1]) if isinstance(x, torch.Tensor) and x.ndim >= 2 else None


def eval_batches(data: Any, batch_size: int, num_workers: int = 0, pin: bool = False) -> Iterator[Batch]:
    """Every sample of ``data`` once, in order. A Dataset gets a DataLoader with its own generator, so
    evaluating draws nothing from the global generators (the training run's stream is left alone)."""
    if isinstance(data, DataLoader):
        yield from data
        return
    batcher = in_memory_batcher(data)
    if batcher is not None:
        for start in range(0, len(data), batch_size):
            yield batcher(torch.arange(start, min(start + batch_size, len(data))))
        return
    yield from DataLoader(data, batch_size=batch_size, num_workers=num_workers, pin_memory=pin,
                          generator=torch.Generator().manual_seed(0))


class NumberedBatches:
    """A batch sampler yielding ``[(batch number, index), ...]`` from batch ``first`` on, so the
    dataset knows which batch it is loading."""

    def __init__(self, order: list[int], batch_size: int, first: int = 0):
        self.order, self.batch_size, self.first = order, batch_size, first

    def __len__(self) -> int:
        return max(0, math.ceil(len(self.order) / self.batch_size) - self.first)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for b in range(self.first, math.ceil(len(self.order) / self.batch_size)):
            yield [(b, i) for i in self.order[b * self.batch_size:(b + 1) * self.batch_size]]


class SeededBatches(Dataset):
    """``data`` loaded one batch at a time under generators seeded for that batch (see the module)."""

    def __init__(self, data: Any, seed: int, epoch: int, rank: int):
        self.data, self.seed, self.epoch, self.rank = data, seed, epoch, rank

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[Any]:
        indices = [i for _, i in keys]
        with seeded_rng(batch_seed(self.seed, self.epoch, self.rank, keys[0][0])):
            getitems = getattr(self.data, "__getitems__", None)
            return getitems(indices) if getitems else [self.data[i] for i in indices]


def batch_seed(*parts: int) -> int:
    """A 63-bit seed from integers (seed, epoch, rank, batch): hashed, so nearby tuples give unrelated
    streams (adding them would make batch 1 of epoch 0 repeat batch 0 of epoch 1)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Seed torch's CPU generator, ``random`` and NumPy for the block and put their states back after.
    (``torch.manual_seed`` is not used: it would also reseed every GPU's generator.)"""
    saved = torch.get_rng_state(), random.getstate(), np.random.get_state()
    torch.default_generator.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        torch.set_rng_state(saved[0])
        random.setstate(saved[1])
        np.random.set_state(saved[2])


def ignore_sigint(worker_id: int) -> None:
    """DataLoader worker set-up: Ctrl-C is the main process's to handle (it stops at a step boundary and
    checkpoints); a worker killed by it would break the batch being loaded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _samplers(loader: DataLoader) -> list[Any]:
    return [s for s in (loader.sampler, getattr(loader.batch_sampler, "sampler", None)) if s is not None]


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    for sampler in _samplers(loader):
        if hasattr(sampler, "set_epoch"):  # DistributedSampler and its kind shuffle per epoch
            sampler.set_epoch(epoch)


def _generators(loader: DataLoader) -> list[torch.Generator]:
    found: list[torch.Generator] = []
    for g in [loader.generator, *(getattr(s, "generator", None) for s in _samplers(loader))]:
        if isinstance(g, torch.Generator) and all(g is not h for h in found):
            found.append(g)
    return found
