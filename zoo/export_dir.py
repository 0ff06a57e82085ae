"""The folder ``zoo export`` writes and ``zoo.runtime`` reads: its files and ``preprocessing.json``.

Owns: the folder's layout (the only code that names its files), ``ExportSpec`` (what
``preprocessing.json`` holds) and the atomic write of a whole folder. Standard library and numpy only:
no torch, no onnxruntime, so an application reads an export without the zoo's heavy dependencies.
Imports ``zoo.registry`` (the ``Preprocessing`` dataclass) and ``zoo.errors``; nothing else of the zoo.

An export folder holds::

    model.onnx          the network (or model.pt, a TorchScript module): one float32 input "input"
                        (N, C, H, W) with any batch size N, one output, "logits" or "features" (N, D)
    preprocessing.json  how an image becomes that input (below)
    labels.txt          one class name per line, in output order (classifiers whose labels are known)
    mean_image.npy      Caffe's per-pixel mean (C, H, W) float32, in the network's channel order and
                        0-255 scale, when the weights come with a mean file (``np.load``, no pickle)
    LICENSE             the base weights' licence, origin and notes
    README.md           the model card
    export.json         what was exported from what, with which versions, and the parity measured

``preprocessing.json`` (``format`` "zoo-export", ``version`` 1)::

    preprocessing   the weights' preprocessing, the zoo registry's fields as plain numbers:
        input_size      [C, H, W] of the network's input
        resize, crop_mode   "center": resize the shorter side to ``resize``, centre-crop H x W;
                        "squash": resize to ``resize`` scaled to the crop's shape ignoring the aspect
                        ratio, then centre-crop (``resize`` = H feeds the whole image, as Caffe does);
                        "border": resize the longer side to ``resize``, pad to H x W with the mean colour
        interpolation, antialias   the resize filter ("nearest", "bilinear", "bicubic")
        channel_order   "RGB", "BGR" (Caffe) or "L"
        scale           pixels are uint8 / 255 * scale: 1.0 gives [0, 1], 255.0 gives Caffe's 0-255
        mean, std       per channel, in channel_order, after scale: x = (x - mean) / std
        mean_file       the mean file the weights were trained with (its pixels are mean_image.npy,
                        subtracted at the centre crop instead of ``mean``)
    image_mode      "RGB" or "L": decode to this (EXIF orientation applied, alpha on white)
    mean_image      "mean_image.npy" or null
    input           {"name": "input", "dtype": "float32", "shape": [null, C, H, W]} (null: any batch)
    output          {"name": "logits" | "features", "kind": same, "shape": [null, D],
                     "layer": the zoo layer name, "pool": "avg" | "max" | null (how a map became a row)}
                    (a feature map exported with pool null has shape [null, C, H, W])
    steps           the recipe above in words, for a port to another language

An app without the zoo: decode, resize and crop as ``preprocessing`` says, make a float32 array
(N, C, H, W), run the model, softmax the logits, and read ``labels.txt``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from zoo.registry.schema import Preprocessing

from .errors import ExportError

__all__ = ["ExportDir", "ExportSpec", "FORMAT", "VERSION", "describe_steps", "atomic_folder", "refuse_existing",
           "require"]

FORMAT = "zoo-export"
VERSION = 1


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """What ``preprocessing.json`` holds: how to feed the exported network and what it returns."""

    preprocessing: Preprocessing
    image_mode: str  # "RGB" or "L"
    output_kind: str  # "logits" or "features"
    output_shape: tuple[int | None, ...]  # (None, D): None is the batch
    layer: str | None = None  # the zoo layer name the features come from
    pool: str | None = None  # "avg" / "max": how a feature map was reduced to one row per image
    mean_image: str | None = None  # file name of the per-pixel mean, in this folder

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.preprocessing.input_size)

    def to_dict(self) -> dict[str, Any]:
        pre = asdict(self.preprocessing)
        return {
            "format": FORMAT,
            "version": VERSION,
            "preprocessing": pre,
            "image_mode": self.image_mode,
            "mean_image": self.mean_image,
            "input": {"name": "input", "dtype": "float32", "shape": [None, *self.input_size]},
            "output": {"name": self.output_kind, "kind": self.output_kind, "shape": list(self.output_shape),
                       "layer": self.layer, "pool": self.pool},
            "steps": describe_steps(self.preprocessing, self.image_mode, self.mean_image),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "preprocessing.json") -> ExportSpec:
        """Read what ``to_dict`` wrote.

        Raises:
            ExportError: another format, a newer version, or a missing or unknown field.
        """
        if data.get("format") != FORMAT:
            raise ExportError(f"{where} is not a zoo export (format {data.get('format')!r}, expected {FORMAT!r}).")
        if not isinstance(data.get("version"), int) or data["version"] > VERSION:
            raise ExportError(f"{where} has version {data.get('version')!r}; this zoo reads up to {VERSION}: "
                              "upgrade the zoo (pip install -U zoo).")
        try:
            pre = dict(data["preprocessing"])
            known = {f.name for f in fields(Preprocessing)}
            unknown = sorted(set(pre) - known)
            if unknown:
                raise ExportError(f"{where}: unknown preprocessing fields {unknown}; upgrade the zoo.")
            for key in ("input_size", "mean", "std"):
                if key in pre:
                    pre[key] = tuple(pre[key])
            output = data["output"]
            return cls(preprocessing=Preprocessing(**pre), image_mode=data["image_mode"],
                       output_kind=output["kind"], output_shape=tuple(output["shape"]), layer=output.get("layer"),
                       pool=output.get("pool"), mean_image=data.get("mean_image"))
        except (KeyError, TypeError, IndexError) as err:
            raise ExportError(f"{where} is incomplete or damaged ({type(err).__name__}: {err}); "
                              "export the model again.") from err


def require(modules: tuple[str, ...], *, purpose: str, extra: str) -> None:
    """Raise a one-line ``ExportError`` naming what to install when an optional package is missing."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"{purpose} needs {', '.join(missing)}, which is not installed: "
                          f"pip install \"zoo[{extra}]\" (or pip install {' '.join(missing)}).")


def describe_steps(pre: Preprocessing, image_mode: str, mean_image: str | None = None) -> list[str]:
    """``pre`` in words, one step per line: what ``preprocessing.json`` says for a human reader."""
    c, h, w = pre.input_size
    resize = {
        "center": f"resize the shorter side to {pre.resize}, then centre-crop {h}x{w}",
        "squash": (f"resize to {h}x{w} ignoring the aspect ratio" if pre.resize == max(h, w)
                   else f"resize to {pre.resize} scaled to the {h}x{w} shape ignoring the aspect ratio, "
                        f"then centre-crop {h}x{w}"),
        "border": f"resize the longer side to {pre.resize}, then pad to {h}x{w} with the mean colour",
    }[pre.crop_mode]
    steps = [f"decode to {image_mode} (EXIF orientation applied, transparency composited on white)",
             f"{resize} ({pre.interpolation}{', antialiased' if pre.antialias else ''})",
             f"to float32, channels first: uint8 / 255 * {pre.scale:g}"]
    if pre.channel_order == "BGR":
        steps.insert(2, "reverse the channels to BGR")
    if mean_image:
        steps.append(f"subtract the centre {h}x{w} of {mean_image} (Caffe's mean image)")
    else:
        steps.append(f"subtract mean {list(pre.mean)}, divide by std {list(pre.std)} (per channel)")
    steps.append(f"stack into float32 (N, {c}, {h}, {w})")
    return steps


class ExportDir:
    """An export folder: the names of its files and how to read them.

    Example:
        >>> d = ExportDir("exports/resnet50")          # doctest: +SKIP
        >>> d.read_spec().input_size, d.read_labels()[:2]   # doctest: +SKIP
        ((3, 224, 224), ('tench', 'goldfish'))
    """

    ONNX = "model.onnx"
    TORCHSCRIPT = "model.pt"
    PREPROCESSING = "preprocessing.json"
    LABELS = "labels.txt"
    MEAN_IMAGE = "mean_image.npy"
    LICENSE = "LICENSE"
    CARD = "README.md"
    MANIFEST = "export.json"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ExportDir({str(self.path)!r})"

    def file(self, name: str) -> Path:
        return self.path / name

    def model_file(self) -> Path:
        """The network file: ``model.onnx``, else ``model.pt``.

        Raises:
            ExportError: the folder is missing or holds neither.
        """
        if not self.path.is_dir():
            raise ExportError(f"no export folder at {self.path}: write one with `zoo export MODEL --out {self.path}`.")
        for name in (self.ONNX, self.TORCHSCRIPT):
            if (self.path / name).is_file():
                return self.path / name
        raise ExportError(f"{self.path} holds no {self.ONNX} or {self.TORCHSCRIPT}: it is not a finished export; "
                          "export the model again.")

    def read_spec(self) -> ExportSpec:
        """``preprocessing.json``, parsed.

        Raises:
            ExportError: missing, not JSON, or not a zoo export.
        """
        path = self.path / self.PREPROCESSING
        try:
            data = json.loads(path.read_text("utf-8"))
        except FileNotFoundError as err:
            raise ExportError(f"{self.path} has no {self.PREPROCESSING}: it is not a zoo export folder "
                              "(`zoo export` writes one).") from err
        except json.JSONDecodeError as err:
            raise ExportError(f"{path} is not valid JSON ({err.msg}); export the model again.") from err
        return ExportSpec.from_dict(data, where=str(path))

    def read_labels(self) -> tuple[str, ...] | None:
        """The class names in output order, or None when the export has none."""
        path = self.path / self.LABELS
        if not path.is_file():
            return None
        return tuple(line for line in path.read_text("utf-8").splitlines())

    def read_mean_image(self, spec: ExportSpec) -> Any:
        """Caffe's per-pixel mean as a float32 (C, H, W) array, or None."""
        if not spec.mean_image:
            return None
        import numpy as np

        path = self.path / spec.mean_image
        if not path.is_file():
            raise ExportError(f"{self.path}: {self.PREPROCESSING} names {spec.mean_image}, which is missing; "
                              "export the model again.")
        return np.load(path, allow_pickle=False).astype("float32")

    def read_manifest(self) -> dict[str, Any]:
        path = self.path / self.MANIFEST
        return json.loads(path.read_text("utf-8")) if path.is_file() else {}


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike, *, force: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``path`` to write into; on success it replaces ``path`` in one rename
    (an existing folder only with ``force``), on error it is removed and ``path`` is untouched.

    Raises:
        ExportError: ``path`` exists and ``force`` is False (checked before and after the work).
    """
    path = Path(path)
    refuse_existing(path, force=force)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        refuse_existing(path, force=force)
        old = None
        if path.exists():
            # Move the old folder aside first: renaming a folder over a non-empty one is not atomic.
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def refuse_existing(path: Path, *, force: bool) -> None:
    """Raise unless ``path`` is free, or ``force`` allows replacing it: an earlier export or an empty
    folder, never a folder of other files (a mistyped ``--out`` must not delete them)."""
    if not path.exists():
        return
    if not path.is_dir():
        raise ExportError(f"{path} exists and is not a folder; remove it or choose another --out.")
    if not force:
        raise ExportError(f"{path} already exists; pass --force (force=True) to replace it, or choose another --out.")
    if any(path.iterdir()) and not (path / ExportDir.PREPROCESSING).is_file():
        raise ExportError(f"{path} is a folder that is not a zoo export; --force replaces only earlier exports: "
                          "remove it yourself or choose another --out.")
