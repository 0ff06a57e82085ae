"""Classification metrics from predictions and targets: accuracy, per-class precision and recall, the
confusion matrix, and their plain-text rendering.

Owns: ``classification_report`` and ``format_report``. numpy only (no torch, no scikit-learn), so the
figures a run records are computed the same way everywhere. Never imports ``zoo.cli``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["confusion_matrix", "classification_report", "format_report", "top_confusions"]


def confusion_matrix(targets: Sequence[int], predictions: Sequence[int], num_classes: int) -> np.ndarray:
    """``cm[true, predicted]`` counts, (num_classes, num_classes) int64.

    Raises:
        ValueError: lengths differ or a class index is out of range.
    """
    t = np.asarray(targets, dtype=np.int64).ravel()
    p = np.asarray(predictions, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"targets ({t.size}) and predictions ({p.size}) differ in length")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"class indices must be in [0, {num_classes}), got {min(t.min(), p.min())}.."
                         f"{max(t.max(), p.max())}")
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def classification_report(targets: Sequence[int], predictions: Sequence[int], labels: Sequence[str]
                          ) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/F1/support, macro averages and the confusion matrix.

    A class never predicted has precision 0 (and never seen, recall 0); macro averages run over the
    classes that have support, so a class absent from an evaluation folder does not drag them down.

    Args:
        targets: true class indices.
        predictions: predicted class indices.
        labels: class names, indexed like the predictions.

    Returns:
        ``{"n", "accuracy", "macro_precision", "macro_recall", "macro_f1", "per_class": {label: {...}},
        "confusion": [[...]], "labels": [...]}`` (JSON-ready).

    Example:
        >>> r = classification_report([0, 1, 1], [0, 1, 0], ["a", "b"])
        >>> round(r["accuracy"], 3), r["per_class"]["b"]["recall"]
        (0.667, 0.5)
    """
    cm = confusion_matrix(targets, predictions, len(labels))
    n = int(cm.sum())
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    per_class = {
        str(label): {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                     "support": int(support[i])}
        for i, label in enumerate(labels)
    }

    def macro(values: np.ndarray) -> float:
        return float(values[present].mean()) if present.any() else 0.0

    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "per_class": per_class,
        "labels": [str(x) for x in labels],
        "confusion": cm.tolist(),
    }


def top_confusions(report: dict[str, Any], k: int = 5) -> list[tuple[str, str, int]]:
    """The ``k`` largest off-diagonal cells: (true label, predicted label, count)."""
    cm = np.asarray(report["confusion"])
    labels = report["labels"]
    cells = [(labels[i], labels[j], int(cm[i, j])) for i in range(len(labels)) for j in range(len(labels))
             if i != j and cm[i, j] > 0]
    return sorted(cells, key=lambda c: -c[2])[:k]


def format_report(report: dict[str, Any], *, confusion: bool = True) -> str:
    """The report as text: accuracy, a per-class table and (small) the confusion matrix."""
    labels = report["labels"]
    width = max(8, *(len(x) for x in labels))
    lines = [f"accuracy {report['accuracy']:.4f} on {report['n']} images  "
             f"(macro precision {report['macro_precision']:.4f}, macro recall {report['macro_recall']:.4f})",
             f"{'class':<{width}}  precision  recall     f1  support"]
    for label in labels:
        c = report["per_class"][label]
        lines.append(f"{label:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:5.3f}  {c['support']:7d}")
    if confusion and len(labels) <= 20:
        cm = report["confusion"]
        cell = max(5, len(str(max((max(r) for r in cm), default=0))) + 1)
        lines.append("confusion (rows: true, columns: predicted)")
        lines.append(" " * width + "".join(f"{i:>{cell}d}" for i in range(len(labels))))
        for i, label in enumerate(labels):
            lines.append(f"{label:<{width}}" + "".join(f"{v:>{cell}d}" for v in cm[i]) + f"   {i}")
    elif confusion:
        lines.append("most confused: " + ", ".join(f"{t} -> {p} ({n})" for t, p, n in top_confusions(report)))
    return "\n".join(lines)
