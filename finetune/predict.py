"""Classify images with any zoo model: the top-k labels and their probabilities, per image.

Owns: ``predict`` (images in, one result per image: the top-k labels with probabilities, or why the
image could not be read), ``write_predictions_csv`` (the same as a CSV file, one row per image),
``class_labels`` (what each output of a model is called) and ``iter_logits`` (the batched forward
pass that ``predict`` and ``zoo.finetune.validate`` share). Images are decoded, preprocessed and
batched by ``zoo.extract.Extractor`` (the one decode/batch/forward path), reading the ``logits``
layer, so an unreadable file is reported and never stops the others.

May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.model import LOGITS, ZooModel

__all__ = ["predict", "write_predictions_csv", "class_labels", "iter_logits", "LogitBatch", "load_model"]


@dataclass(slots=True)
class LogitBatch:
    """One batch of ``iter_logits``: the logits (float32, CPU) of the items at ``index`` (positions in
    the list given), and the items of this batch that could not be read, as ``(position, reason)``."""

    logits: torch.Tensor
    index: torch.Tensor
    failed: list[tuple[int, str]] = field(default_factory=list)


def load_model(model: str | os.PathLike | ZooModel) -> ZooModel:
    """``model`` itself, or ``zoo.load(model)`` for a registry name or a model folder (a fine-tuned or
    from-scratch run, an imported Caffe model, a saved model)."""
    if isinstance(model, ZooModel):
        return model
    from zoo.factory import load

    return load(model)


def _has_classifier(model: ZooModel) -> bool:
    # A net whose classifier stays in the body (SqueezeNet, Caffe's NIN) has an identity head, and its
    # labels or an entry whose class count is the body's width; a feature backbone has none of these.
    if not isinstance(model.get_classifier(), nn.Identity) or model.labels is not None:
        return True
    classes = model.entry.head.num_classes if model.entry is not None else 0
    return classes > 0 and classes == model.num_features and model.cut_layer is None


def class_labels(model: ZooModel) -> list[str]:
    """The name of each of the model's outputs: its labels, or the output indices as text for a model
    that has none (an imported Caffe net without a labels file).

    Raises:
        ConfigError: the model has no classifier (a feature backbone, or a cut without a new head).
    """
    if not _has_classifier(model):
        raise ConfigError(f"{model.name or 'this model'} has no classifier (a feature backbone): it gives features, "
                          "not classes. Extract features with `zoo extract`, or fine-tune a head first with "
                          "`zoo finetune`.", option="model")
    if model.labels is not None:
        return list(model.labels)
    head = model.get_classifier()
    if isinstance(head, nn.Linear):
        return [str(i) for i in range(head.out_features)]
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    with torch.no_grad():  # the width of the output, for a head whose module does not say it
        width = model(torch.zeros(1, *model.input_size, device=device)).shape[1]
    model.train(was_training)
    return [str(i) for i in range(int(width))]


def iter_logits(model: ZooModel, items: Sequence[Any], *, batch_size: int | None = None, device: str = "auto",
                num_workers: int | None = None, progress: bool = False, desc: str = "predict"
                ) -> Iterator[LogitBatch]:
    """The model's logits for ``items`` (paths, PIL images, arrays, as ``zoo.Extractor`` takes them),
    one batch at a time, in order; unreadable items are reported on their batch, never raised.

    Args:
        model: the model (moved to ``device``, in eval mode, in place).
        items: one image per item.
        batch_size, num_workers, device: as ``zoo.Extractor`` (None: its defaults for the device).
        progress: a progress bar over the items (only on a terminal).
        desc: the bar's label.
    """
    from zoo.extract import Extractor
    from zoo.extract.extractor import progress_bar

    extractor = Extractor(model, layer=LOGITS, device=device, batch_size=batch_size, num_workers=num_workers,
                          output="torch", freeze=False)
    bar = progress_bar(len(items), progress, desc=desc)
    try:
        for batch in extractor.batches(items):
            x, index = batch
            failed = [(f.index, f.reason) for f in batch.failures]
            if x is None:
                yield LogitBatch(torch.zeros(0, 0), torch.zeros(0, dtype=torch.long), failed)
            else:
                logits = extractor.forward(x)[LOGITS].float().cpu()
                yield LogitBatch(logits, index, failed)
            bar.update(len(failed) + (0 if index is None else len(index)))
    finally:
        bar.close()


def _name(item: Any, position: int) -> str:
    from zoo.extract.inputs import describe

    return describe(item, position)


def predict(model: str | os.PathLike | ZooModel, images: Any, *, top_k: int = 5, batch_size: int | None = None,
            device: str = "auto", num_workers: int | None = None, progress: bool = False) -> list[dict[str, Any]]:
    """Top-k labels with probabilities (softmax over the model's outputs) for each image.

    Args:
        model: a registry name, a model folder (run, import, saved model) or a ``ZooModel``.
        images: a path, a folder (its images, naturally sorted), a PIL image, an array, or a list of these.
        top_k: labels per image (at most the number of classes).
        batch_size, device, num_workers: as ``zoo.Extractor``.
        progress: a progress bar (only on a terminal).

    Returns:
        One dict per image, in input order: ``{"image": name, "top": [{"label", "index", "probability"},
        ...]}``, or ``{"image": name, "error": reason}`` for one that could not be read; then the files
        of the folders given that claim to be images but are not, as errors.

    Raises:
        ConfigError: the model has no classifier.
        ImageError: a folder given holds no image file at all.

    Example:
        >>> results = predict("resnet18", ["cat.jpg", "photos/"], top_k=3)     # doctest: +SKIP
        >>> results[0]["top"][0]                                              # doctest: +SKIP
        {'label': 'tabby', 'index': 281, 'probability': 0.71}
    """
    from zoo.extract.inputs import as_items

    model = load_model(model)
    labels = class_labels(model)
    k = max(1, min(top_k, len(labels)))
    rejected: list[tuple[str, str]] = []
    items = as_items(images, rejected=rejected)
    results: list[dict[str, Any]] = [{"image": _name(item, i)} for i, item in enumerate(items)]
    for batch in iter_logits(model, items, batch_size=batch_size, device=device, num_workers=num_workers,
                             progress=progress):
        for i, reason in batch.failed:
            results[i]["error"] = reason
        if not len(batch.index):
            continue
        values, indices = torch.softmax(batch.logits, dim=1).topk(k, dim=1)
        for i, probs, classes in zip(batch.index.tolist(), values.tolist(), indices.tolist(), strict=True):
            results[i]["top"] = [{"label": labels[j], "index": j, "probability": p}
                                 for p, j in zip(probs, classes, strict=True)]
    return results + [{"image": path, "error": reason} for path, reason in rejected]


def write_predictions_csv(results: Sequence[dict[str, Any]], path: str | os.PathLike, *, top_k: int) -> Path:
    """``predict``'s results as CSV: ``path``, then ``label_1, probability_1, ... label_k,
    probability_k``, then ``error`` (empty for an image that was classified); one row per image.

    Returns:
        The file written.
    """
    from zoo._io import atomic_path

    out = Path(path)
    header = ["path"] + [f"{kind}_{r}" for r in range(1, top_k + 1) for kind in ("label", "probability")] + ["error"]
    with atomic_path(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for result in results:
            cells: list[Any] = [result["image"]]
            for r in range(top_k):
                top = result.get("top", [])
                cells += [top[r]["label"], f"{top[r]['probability']:.6g}"] if r < len(top) else ["", ""]
            writer.writerow(cells + [result.get("error", "")])
    return out
