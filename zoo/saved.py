"""``model.json``: what a saved model's folder says, read and checked before anything is built.

Owns: the file names of a saved model (``MODEL_FILE``, ``WEIGHTS_FILE``) and ``read_saved``, which turns
``model.json`` into a ``SavedModel`` (name, base entry, cut, head, labels, build spec, preprocessing) or
raises one ``RunError`` that names the file and the field: wrong types, unknown head kinds, sizes far
beyond any real model, preprocessing the registry's schema rejects. Files written by earlier versions
(no ``build``, no ``crop_mode``) read as they did. ``zoo.factory`` builds the model from it. Imports the
model contract and the registry's schema; no library.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from zoo.registry.errors import RegistryError
from zoo.registry.schema import Preprocessing, parse_entry

from .errors import RunError
from .model import HEAD_KINDS, BuildSpec, HeadSpec

__all__ = ["MODEL_FILE", "WEIGHTS_FILE", "SavedModel", "read_saved"]

MODEL_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
LIBRARIES = ("torchvision", "timm", "zoo", "caffe")  # what a saved build spec may name (caffe: a converted graph)

# Bounds on numbers read from model.json: far above any real model, far below what would exhaust memory.
_MAX_CLASSES = 1_000_000
_MAX_HIDDEN = 1 << 16
_MAX_CHANNELS = 64


@dataclass(frozen=True, slots=True)
class SavedModel:
    """What a ``model.json`` says, checked: types, known head kinds and sane sizes."""

    name: str | None
    base: str | None
    cut: str | None
    head: HeadSpec | None
    labels: tuple[str, ...] | None
    build: BuildSpec | None
    preprocessing: Preprocessing | None


def read_saved(directory: Path) -> SavedModel:
    """Read and check ``directory/model.json``; every fault is one ``RunError`` naming the field.

    Raises:
        RunError: the file or the weights are missing, or a field is of the wrong type or size.
    """
    path = directory / MODEL_FILE
    try:
        info = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as err:
        raise RunError(f"{directory} has no {MODEL_FILE}: it is not a saved model or run. A run that was "
                       "interrupted resumes with `zoo finetune ... --resume`.") from err
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise RunError(f"{path} is not valid JSON ({getattr(err, 'msg', type(err).__name__)}); the run folder "
                       "is damaged.") from err
    if not isinstance(info, dict):
        raise RunError(f"{path} must hold a JSON object; the run folder is damaged.")
    if not (directory / WEIGHTS_FILE).is_file():
        raise RunError(f"{directory} has {MODEL_FILE} but no {WEIGHTS_FILE}: the run did not finish. "
                       "Resume it with `--resume`, or load its checkpoint.")

    def field(key: str, kind: type | tuple[type, ...]) -> Any:
        value = info.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise RunError(f"{path}: field {key!r} has the wrong type ({type(value).__name__}); the run folder "
                           "is damaged or was edited by hand.")
        return value

    labels = field("labels", list)
    if labels is not None and not all(isinstance(x, str) for x in labels):
        raise RunError(f"{path}: field 'labels' must list strings; the run folder is damaged.")
    head = _head_from(field("head", dict), path)
    if head is not None and labels is not None and len(labels) != head.num_classes:
        raise RunError(f"{path}: {len(labels)} labels for a head of {head.num_classes} classes; the run folder "
                       "is damaged.")
    return SavedModel(name=field("name", str), base=field("base", str), cut=field("cut", str), head=head,
                      labels=tuple(labels) if labels is not None else None,
                      build=_build_from(field("build", dict), path),
                      preprocessing=_preprocessing_from(field("preprocessing", dict), path))


def _count(data: dict[str, Any], key: str, low: int, high: int, path: Path, default: int | None = None) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RunError(f"{path}: {key} must be a whole number from {low} to {high}, got {value!r}; the run "
                       "folder is damaged.")
    return value


def _head_from(data: dict[str, Any] | None, path: Path) -> HeadSpec | None:
    if data is None:
        return None
    kind = data.get("kind", "linear")
    if kind not in HEAD_KINDS or set(data) - {"kind", "num_classes", "hidden", "dropout"}:
        raise RunError(f"{path}: head {data!r} is not a linear or mlp head the zoo writes; the run folder is "
                       "damaged.")
    dropout = data.get("dropout", 0.0)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise RunError(f"{path}: head dropout must be a number in [0, 1), got {dropout!r}.")
    return HeadSpec(kind=kind, num_classes=_count(data, "num_classes", 1, _MAX_CLASSES, path),
                    hidden=_count(data, "hidden", 1, _MAX_HIDDEN, path, 256), dropout=float(dropout))


def _build_from(data: dict[str, Any] | None, path: Path) -> BuildSpec | None:
    if data is None:
        return None
    library, builder, kwargs = data.get("library"), data.get("builder"), data.get("kwargs", {})
    if library not in LIBRARIES or not isinstance(builder, str) or not builder or not isinstance(kwargs, dict):
        raise RunError(f"{path}: build {data!r} does not name a library ({', '.join(LIBRARIES)}), a builder "
                       "and options; the run folder is damaged.")
    # The builder and its options are checked again by zoo.factory.build_network before any library is
    # called (a timm hf-hub: builder or a checkpoint_path would read the network or a file).
    return BuildSpec(library=library, builder=builder, kwargs=kwargs,
                     in_chans=_count(data, "in_chans", 1, _MAX_CHANNELS, path, 3),
                     num_classes=_count(data, "num_classes", 0, _MAX_CLASSES, path, 0))


def _preprocessing_from(data: dict[str, Any] | None, path: Path) -> Preprocessing | None:
    """The saved preprocessing, checked by the registry's own schema."""
    if data is None:
        return None
    data = dict(data)
    mean_file = data.pop("mean_file", None)  # a file role of the base entry, not of this folder
    try:
        entry = parse_entry({"name": "saved.model", "architecture": {"library": "zoo", "builder": "saved"},
                             "license": "unknown", "preprocessing": data, "head": {"num_classes": 0}},
                            path=str(path), index=0)
    except RegistryError as err:
        raise RunError(f"{path}: its preprocessing is damaged: {err}") from err
    pre = entry.preprocessing
    return replace(pre, mean_file=mean_file) if isinstance(mean_file, str) else pre
