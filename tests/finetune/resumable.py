"""A small training run with every source of randomness the loop must restore, for the resume tests.

Importable (the in-process tests) and runnable (the kill tests run it in a subprocess):

    python resumable.py KIND MODE RUN_DIR OUT

KIND: ``memory`` (a ``get_batch`` dataset that augments with torch's global generator), ``dataset``
(a map-style Dataset augmenting with torch, ``random`` and NumPy, loaded by 2 workers) or ``loader``
(the same Dataset in the caller's own shuffling DataLoader with 2 workers). The network has dropout,
so the training steps draw from the global generator too. MODE: ``kill`` (SIGKILL in the middle of
the 8th forward pass of the first epoch), ``sigint`` (a real SIGINT in the middle of the 6th), or
``resume`` (resume RUN_DIR to the end, then train the same run uninterrupted in a fresh folder and
save both final weights to OUT).
"""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from zoo.finetune.loop import TrainConfig, train

N, FEATURES, CLASSES = 384, 8, 3


def _blobs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(CLASSES, FEATURES, generator=g) * 2.0
    y = torch.randint(0, CLASSES, (N,), generator=g)
    return centres[y] + torch.randn(N, FEATURES, generator=g), y


class NoisyMemory:
    """In-memory data whose ``get_batch`` adds noise drawn from torch's global generator."""

    def __init__(self) -> None:
        self.x, self.y = _blobs()

    def __len__(self) -> int:
        return N

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[indices]
        return x + 0.3 * torch.randn_like(x), self.y[indices]


class Augmented(Dataset):
    """Per-sample augmentation drawing from all three global generators (torch, random, NumPy)."""

    def __init__(self) -> None:
        self.x, self.y = _blobs()

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[i] + 0.3 * torch.randn(FEATURES)
        if random.random() < 0.5:
            x = x * 0.9
        x = x + torch.from_numpy(np.random.normal(0, 0.1, FEATURES).astype(np.float32))
        return x, self.y[i]


def data(kind: str, workers: int = 2):
    if kind == "memory":
        return NoisyMemory()
    if kind == "dataset":
        return Augmented()
    return DataLoader(Augmented(), batch_size=32, shuffle=True, num_workers=workers)


def network() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, CLASSES))


def config(kind: str, workers: int = 2) -> TrainConfig:
    # checkpoint_interval: a mid-epoch checkpoint after every step, so any kill finds a recent one
    return TrainConfig(epochs=2, batch_size=32, lr=1e-2, optimizer="adamw", device="cpu",
                       num_workers=workers if kind == "dataset" else 0, checkpoint_interval=1e-9)


def run(kind: str, run_dir: Path, *, resume: bool = False, callbacks=None, workers: int = 2):
    return train(network(), data(kind, workers), data("memory"), config(kind, workers), run_dir=run_dir,
                 resume=resume, callbacks=callbacks, progress=False)


def signal_on_forward(sig: int, at: int):
    """A forward pre-hook sending ``sig`` to this process during training forward pass number ``at``."""
    count = [0]

    def hook(module, args):
        if module.training:
            count[0] += 1
            if count[0] == at:
                os.kill(os.getpid(), sig)

    return hook


def main() -> None:
    torch.set_num_threads(1)
    kind, mode, run_dir = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    if mode == "resume":
        resumed = run(kind, run_dir, resume=True).model
        clean = run(kind, run_dir.with_name(run_dir.name + "-clean")).model
        torch.save({"resumed": resumed.state_dict(), "clean": clean.state_dict()}, sys.argv[4])
        return
    sig, at = (signal.SIGKILL, 8) if mode == "kill" else (signal.SIGINT, 6)
    net = network()
    net[2].register_forward_pre_hook(signal_on_forward(sig, at))  # mid-forward: after Linear and ReLU
    try:
        train(net, data(kind), data("memory"), config(kind), run_dir=run_dir, progress=False)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
