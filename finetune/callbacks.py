"""The training loop's built-in callbacks: what it shows and the logs it writes.

Owns ``progress_bar_enabled`` (the one rule for progress bars, shared with the CLI and
``zoo.finetune.fit``: a bar only when the stream is a terminal, tqdm's own ``disable=None`` rule),
``ProgressLog`` (that bar, and one summary line per epoch always: train/val loss and accuracy,
learning rate, images/s, time left), ``MetricsFiles`` (``metrics.jsonl`` and ``metrics.csv`` in the
run folder) and ``TensorBoardLog`` (event files in ``tensorboard/`` when ``torch.utils.tensorboard``
imports; without the optional ``tensorboard`` package it writes nothing and says nothing), and
``add_callbacks``, which files an object's ``on_*`` methods under the loop's events.

A callback is a callable taking one dict (see ``zoo.finetune.loop.train``); these are classes only
because they keep a bar, a writer or a clock between events. May import ``zoo`` and torch; never
``zoo.cli``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from zoo._io import atomic_write

__all__ = ["EVENTS", "METRICS", "METRICS_CSV", "TENSORBOARD", "progress_bar_enabled", "add_callbacks",
           "format_epoch", "ProgressLog", "MetricsFiles", "TensorBoardLog"]

EVENTS = ("on_train_start", "on_step_end", "on_epoch_end", "on_checkpoint", "on_train_end")
METRICS = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
TENSORBOARD = "tensorboard"

Callbacks = dict[str, list[Callable[[dict[str, Any]], Any]]]


def progress_bar_enabled(stream: IO | None = None) -> bool:
    """Whether to draw a progress bar on ``stream`` (default ``sys.stderr``): only on a terminal, as
    tqdm's ``disable=None`` decides. A bar redrawn with carriage returns is noise in a log file.

    Example:
        >>> tqdm(items, disable=not progress_bar_enabled())   # doctest: +SKIP
    """
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def add_callbacks(callbacks: Callbacks, obj: Any) -> Callbacks:
    """File each ``on_<event>`` method of ``obj`` under that event in ``callbacks`` (in place)."""
    for event in EVENTS:
        method = getattr(obj, event, None)
        if method is not None:
            callbacks.setdefault(event, []).append(method)
    return callbacks


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_epoch(row: dict[str, Any], epochs: int, seconds_left: float | None = None) -> str:
    """One epoch's summary line, e.g. ``epoch 3/10  train_loss 0.4321  train_acc 0.8750  val_loss
    0.5012  val_acc 0.8400  lr 0.000912  1234 img/s  5.2s  12s left``."""
    parts = [f"epoch {row['epoch']}/{epochs}"]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
        if row.get(key) is not None:
            parts.append(f"{key} {row[key]:.4f}")
    parts.append(f"lr {row['lr']:.3g}")
    parts.append(f"{row['images_per_s']:.0f} img/s")
    if "mfu" in row:
        parts.append(f"mfu {row['mfu']:.1%}")
    parts.append(f"{row['seconds']:.1f}s")
    if seconds_left is not None:
        parts.append(f"{format_duration(seconds_left)} left")
    return "  ".join(parts)


class ProgressLog:
    """A tqdm bar (only when ``bar``: give it ``progress_bar_enabled()``) and one line per epoch."""

    def __init__(self, *, bar: bool, log_every: int = 50, stream: IO | None = None):
        self.show_bar, self.log_every, self.stream = bar, max(1, log_every), stream
        self.bar: Any = None
        self.epochs, self.total, self.t0, self.step0 = 0, 0, 0.0, 0

    def on_train_start(self, info: dict[str, Any]) -> None:
        self.epochs, self.total = info["config"].epochs, info["total_steps"]
        self.t0, self.step0 = time.monotonic(), info["state"].step
        if self.show_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=self.step0, unit="step", dynamic_ncols=True, leave=True,
                            file=self.stream or sys.stderr)

    def on_step_end(self, info: dict[str, Any]) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if info["step"] % self.log_every == 0:
            self.bar.set_postfix(epoch=info["epoch"] + 1, loss=f"{float(info['loss']):.4f}", lr=f"{info['lr']:.3g}",
                                 refresh=False)

    def on_epoch_end(self, info: dict[str, Any]) -> None:
        done = info["step"] - self.step0
        left = (time.monotonic() - self.t0) / done * (self.total - info["step"]) if done > 0 else None
        line = format_epoch(info["row"], self.epochs, left)
        if self.bar is not None:
            self.bar.write(line, file=self.stream or sys.stderr)
        else:
            print(line, file=self.stream or sys.stderr, flush=True)

    def on_train_end(self, info: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class MetricsFiles:
    """``metrics.jsonl`` (one JSON row per epoch, appended) and ``metrics.csv`` (the same rows as a
    table, rewritten each epoch) in ``run_dir``. At the start both are rewritten from the state's
    history, so after a resume they hold each epoch once, whatever a kill left behind."""

    def __init__(self, run_dir: Path):
        self.jsonl, self.csv = Path(run_dir) / METRICS, Path(run_dir) / METRICS_CSV

    def on_train_start(self, info: dict[str, Any]) -> None:
        history = info["state"].history
        with atomic_write(self.jsonl, "w") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in history)
        self._write_csv(history)

    def on_epoch_end(self, info: dict[str, Any]) -> None:
        with open(self.jsonl, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(info["row"]) + "\n")
        self._write_csv(info["history"])

    def _write_csv(self, history: list[dict[str, Any]]) -> None:
        columns = list(dict.fromkeys(key for row in history for key in row))
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(history)
        with atomic_write(self.csv, "w") as fh:
            fh.write(text.getvalue() if history else "")


class TensorBoardLog:
    """Scalars for TensorBoard in ``run_dir/tensorboard``: the step loss and learning rate every
    ``log_every`` steps, and each epoch's row, all against the step. A resumed run purges the events
    a killed session wrote past its checkpoint. Build it with ``create``, which gives None when
    ``torch.utils.tensorboard`` cannot be imported (tensorboard is an optional package)."""

    def __init__(self, writer_class: type, run_dir: Path, log_every: int = 50):
        self.writer_class, self.log_dir, self.log_every = writer_class, Path(run_dir) / TENSORBOARD, max(1, log_every)
        self.writer: Any = None

    @classmethod
    def create(cls, run_dir: Path, log_every: int = 50) -> TensorBoardLog | None:
        """A logger, or None without tensorboard installed."""
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: documented, nothing to report
            return None
        return cls(SummaryWriter, run_dir, log_every)

    def on_train_start(self, info: dict[str, Any]) -> None:
        # Events up to the checkpoint's step belong to the state; later ones a killed session wrote go.
        step = info["state"].step
        self.writer = self.writer_class(log_dir=str(self.log_dir), purge_step=step + 1 if step else None)

    def on_step_end(self, info: dict[str, Any]) -> None:
        if info["step"] % self.log_every == 0:
            self.writer.add_scalar("step/train_loss", float(info["loss"]), info["step"])
            self.writer.add_scalar("step/lr", info["lr"], info["step"])

    def on_epoch_end(self, info: dict[str, Any]) -> None:
        for key, value in info["row"].items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)) and value is not None:
                self.writer.add_scalar(f"epoch/{key}", value, info["step"])
        self.writer.flush()

    def on_train_end(self, info: dict[str, Any]) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
