"""The training loop's state: everything a run needs to continue exactly where it stopped.

Owns ``TrainState`` (counters, the running sums of the epoch in progress, history, the best epoch,
and the live model, optimizer and gradient scaler whose ``state_dict``s it saves), the checkpoint
file (``TrainState.state_dict()`` saved atomically with ``torch.save`` and read back with
``torch.load(weights_only=True)``; the keys written are the keys read, and a file with other keys is
refused), and the random-number snapshots (``capture_rng``/``restore_rng``) of every global
generator a step can draw from: torch on the CPU and on the training GPU, Python's ``random`` and
NumPy's legacy global generator.

May import ``zoo`` and torch; never ``zoo.cli``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo._io import atomic_write
from zoo.errors import RunError

__all__ = ["TrainState", "CHECKPOINT_FORMAT", "capture_rng", "restore_rng", "save_checkpoint", "load_checkpoint"]

# Bumped when the checkpoint's keys or their meaning change; a file of another format is refused.
CHECKPOINT_FORMAT = 2


@dataclass(eq=False)
class TrainState:
    """Where a run is. The checkpoint is exactly ``state_dict()``; ``load_state_dict`` reads it back.

    The learning rate is a function of the config and ``step`` (the loop sets it every step), so the
    schedule has no state of its own to save. ``rng`` is filled by ``load_state_dict`` and applied by
    the loop (``restore_rng``) just before the first batch, so nothing drawn in between shifts it.
    """

    model: nn.Module  # the unwrapped model being trained (saved as its state_dict)
    optimizer: torch.optim.Optimizer  # saved as its state_dict: moments, step counts, param groups
    scaler: torch.amp.GradScaler | None = None  # fp16 AMP's loss scaler; None with bf16 or no AMP
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches done in the epoch in progress (0 at an epoch boundary)
    step: int = 0  # optimizer steps taken in the whole run
    epoch_loss: float = 0.0  # sum of loss x batch size over the epoch's done batches (this rank)
    epoch_correct: int = 0  # correct predictions in the epoch's done batches (class-index targets)
    epoch_samples: int = 0  # samples in the epoch's done batches (this rank)
    epoch_seconds: float = 0.0  # training seconds spent in the epoch in progress, over all sessions
    epoch_rng: dict[str, Any] | None = None  # RNG before the epoch's first batch (to replay a caller's DataLoader)
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per completed epoch
    best: dict[str, Any] = field(default_factory=dict)  # the best epoch's row by the monitored value
    bad_epochs: int = 0  # epochs since the monitored value last improved (early stopping)
    elapsed: float = 0.0  # wall-clock seconds of training over all sessions
    config: dict[str, Any] = field(default_factory=dict)  # TrainConfig.to_dict() of the session that saved
    rng: dict[str, Any] | None = None  # RNG read from a checkpoint, waiting to be restored

    def state_dict(self, device: torch.device) -> dict[str, Any]:
        """The checkpoint: every field (the model, optimizer and scaler as their state dicts; ``rng``
        captured now, or the one read from a checkpoint if not yet restored) plus ``format``."""
        saved: dict[str, Any] = {"format": CHECKPOINT_FORMAT}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("model", "optimizer", "scaler"):
                value = value.state_dict() if value is not None else None
            elif f.name == "rng" and value is None:  # live generators, unless read ones still wait
                value = capture_rng(device)
            saved[f.name] = value
        return saved

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        """Read a checkpoint written by ``state_dict`` into this state, its model, optimizer and scaler.

        Raises:
            RunError: the checkpoint's keys are not this version's (written by another version, or
                changed outside the zoo), or its scaler does not match this run's AMP setting.
        """
        expected = {"format", *(f.name for f in fields(self))}
        if set(saved) != expected or saved.get("format") != CHECKPOINT_FORMAT:
            missing, extra = sorted(expected - set(saved)), sorted(set(saved) - expected)
            raise RunError(f"cannot resume: the checkpoint has format {saved.get('format')!r} (missing {missing}, "
                           f"unexpected {extra}); this zoo reads format {CHECKPOINT_FORMAT}. Start the run again "
                           "without resume.")
        if (saved["scaler"] is None) != (self.scaler is None):
            raise RunError("cannot resume: the checkpoint was written with a different amp setting (fp16 keeps a "
                           "loss scaler, bf16 and no AMP do not); resume with the amp setting of the interrupted run")
        for f in fields(self):
            value = saved[f.name]
            if f.name in ("model", "optimizer", "scaler"):
                if value is not None:
                    getattr(self, f.name).load_state_dict(value)
            else:
                setattr(self, f.name, value)

    def restore_rng(self, device: torch.device) -> None:
        """Apply the RNG read from a checkpoint (once; a fresh state has none)."""
        if self.rng is not None:
            restore_rng(self.rng, device)
            self.rng = None


def capture_rng(device: torch.device | None = None) -> dict[str, Any]:
    """The states of the global generators a training step can draw from, in types ``torch.load``
    reads with ``weights_only=True`` (tensors, lists, numbers)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device is not None and device.type == "cuda" else None,
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def restore_rng(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Set the global generators to a ``capture_rng`` snapshot."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_checkpoint(path: Path, state: TrainState, device: torch.device) -> Path:
    """Write ``state`` to ``path`` atomically (readers see the old file or the whole new one)."""
    with atomic_write(path) as fh:
        torch.save(state.state_dict(device), fh)
    return path


def load_checkpoint(path: Path | None, state: TrainState) -> None:
    """Read the checkpoint at ``path`` into ``state`` (weights onto the model's own device).

    Raises:
        RunError: no file there, a damaged file, or a checkpoint of another format.
    """
    if path is None or not path.is_file():
        raise RunError(f"cannot resume: {path or 'run_dir=None'} has no checkpoint; "
                       "start the run without resume (or point run_dir at the interrupted run)")
    try:
        # On the CPU: RNG states must stay there, and load_state_dict copies weights onto the model's device.
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a damaged file: pickle, zip or weights_only errors alike
        raise RunError(f"cannot resume: {path} is not a readable checkpoint ({type(err).__name__}: "
                       f"{str(err)[:200]}); the zoo writes checkpoints atomically, so it was changed "
                       "outside the zoo. Start the run again without resume.") from err
    if not isinstance(saved, dict):
        raise RunError(f"cannot resume: {path} holds a {type(saved).__name__}, not a checkpoint; start the run "
                       "again without resume.")
    state.load_state_dict(saved)
