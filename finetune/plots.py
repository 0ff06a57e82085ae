"""A run's plots: loss and accuracy per epoch, and the confusion matrix, drawn with matplotlib (an
optional dependency: ``pip install zoo[plots]``). Owns ``write_plots``. May import ``zoo``; never
``zoo.cli``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo._io import atomic_write

from .rundir import RunDir

__all__ = ["write_plots"]


def write_plots(run_dir: RunDir, history: list[dict[str, Any]], summary: dict[str, Any]) -> list[Path]:
    """The loss and accuracy curves per epoch and the confusion matrix (test, else val) as PNGs; nothing
    when matplotlib is not installed (the figures are in the log and ``metrics.json`` anyway)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    if history:
        epochs = [r["epoch"] for r in history]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
        ax1.plot(epochs, [r["train_loss"] for r in history], label="train")
        if all("val_loss" in r for r in history):
            ax1.plot(epochs, [r["val_loss"] for r in history], label="val")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("loss")
        ax1.legend()
        if all(r.get("val_acc") is not None for r in history):
            ax2.plot(epochs, [r["val_acc"] for r in history], color="C2")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("val accuracy")
        fig.tight_layout()
        with atomic_write(run_dir.curves) as fh:
            fig.savefig(fh, format="png", dpi=100)
        plt.close(fig)
        written.append(run_dir.curves)
    report = summary.get("test") or summary.get("val")
    if report:
        import numpy as np

        cm = np.asarray(report["confusion"])
        labels = report["labels"]
        size = min(12, 2 + 0.5 * len(labels))
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(cm, cmap="Blues")
        if len(labels) <= 30:
            ax.set_xticks(range(len(labels)), labels, rotation=90)
            ax.set_yticks(range(len(labels)), labels)
            for i in range(len(labels)):
                for j in range(len(labels)):
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion ({'test' if summary.get('test') else 'val'})")
        fig.tight_layout()
        with atomic_write(run_dir.confusion) as fh:
            fig.savefig(fh, format="png", dpi=100)
        plt.close(fig)
        written.append(run_dir.confusion)
    return written
