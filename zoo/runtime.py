"""Run an exported zoo model in an application, with numpy, Pillow and onnxruntime only.

Owns: ``Classifier`` (images -> top-k labels with probabilities, or logits) and ``Features`` (images ->
feature rows) over a folder written by ``zoo export``. Images go through the zoo's one loader
(``zoo.images.open_image``: EXIF orientation, palettes, CMYK, 16-bit, corrupt files reported, bombs
refused) and its torch-free preprocessing (``zoo.pixels``), read from the folder's
``preprocessing.json``, so an image gets the same array as in ``zoo predict`` and ``zoo.Extractor``.

Imports numpy, PIL, onnxruntime, ``zoo.images``, ``zoo.pixels``, ``zoo.export_dir`` and ``zoo.registry``;
never torch, torchvision or timm (a test imports this module in a fresh interpreter and checks).
Install for an app: ``pip install "zoo[runtime]"``.

Example:
    >>> from zoo.runtime import Classifier, Features         # doctest: +SKIP
    >>> clf = Classifier("exports/resnet50")                  # doctest: +SKIP
    >>> clf.predict(["cat.jpg"], top_k=3)[0]["top"][0]        # doctest: +SKIP
    {'label': 'tabby', 'index': 281, 'probability': 0.62}
    >>> Features("exports/resnet50-pool")("photos/").shape    # doctest: +SKIP
    (412, 2048)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from . import pixels
from .errors import ExportError, ImageError
from .export_dir import ExportDir, ExportSpec, require
from .images import find_images, open_image

__all__ = ["Classifier", "Features", "load_images", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first), as float32."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def load_images(images: Any) -> list[Any]:
    """The inputs as a flat list of single images: a path, a folder (its images, naturally sorted), a
    PIL image, a numpy array (HxW, HxWxC, or NxHxWxC for several), bytes, a file object, or a list of
    these.

    Raises:
        ImageError: a folder without images.
        TypeError: something that is not an image.
    """
    if isinstance(images, (str, os.PathLike)):
        if Path(images).is_dir():
            found = find_images(images)
            if not found:
                raise ImageError(f"{images}: no images in this folder (JPEG, PNG, WebP, BMP, GIF, TIFF).",
                                 path=str(images))
            return list(found)
        return [images]
    if isinstance(images, (Image.Image, bytes, bytearray, memoryview)) or hasattr(images, "read"):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, Iterable):
        out: list[Any] = []
        for item in images:
            out += load_images(item) if isinstance(item, (str, os.PathLike)) and Path(item).is_dir() else [item]
        return out
    raise TypeError(f"cannot read images from a {type(images).__name__}: pass paths, a folder, PIL images, "
                    "numpy arrays or bytes.")


def _name(src: Any) -> str:
    return os.fspath(src) if isinstance(src, (str, os.PathLike)) else type(src).__name__


class _Model:
    """The exported network and its preprocessing: what ``Classifier`` and ``Features`` share."""

    def __init__(self, path: str | os.PathLike, *, batch_size: int, threads: int | None,
                 providers: Sequence[str] | None):
        require(("onnxruntime",), purpose="zoo.runtime", extra="runtime")
        import onnxruntime as ort

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        folder = ExportDir(path)
        model_file = folder.model_file()
        if model_file.name != ExportDir.ONNX:
            raise ExportError(f"{folder.path} holds a TorchScript export ({model_file.name}), which runs in torch "
                              "(torch.jit.load); the runtime needs `zoo export ... --format onnx`.")
        self.folder = folder
        self.spec: ExportSpec = folder.read_spec()
        self.mean_image = folder.read_mean_image(self.spec)
        self.batch_size = batch_size
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model_file), options,
                                            providers=list(providers or ["CPUExecutionProvider"]))
        self.input_name = self.session.get_inputs()[0].name

    def array(self, src: Any) -> np.ndarray:
        """One image -> the float32 (C, H, W) array the network takes."""
        image = open_image(src, mode=self.spec.image_mode)
        return pixels.to_array(image, self.spec.preprocessing, mean_image=self.mean_image)

    def preprocess(self, items: Sequence[Any], on_error: str) -> tuple[np.ndarray, list[int]]:
        arrays, kept = [], []
        for i, src in enumerate(items):
            try:
                arrays.append(self.array(src))
                kept.append(i)
            except ImageError:
                if on_error == "raise":
                    raise
        x = np.stack(arrays) if arrays else np.zeros((0, *self.spec.input_size), np.float32)
        return x, kept

    def run(self, x: np.ndarray) -> np.ndarray:
        """The network's output for a preprocessed float32 batch (N, C, H, W)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.spec.input_size:
            raise ValueError(f"expected a float32 batch (N, {', '.join(map(str, self.spec.input_size))}), "
                             f"got shape {x.shape}")
        return self.session.run(None, {self.input_name: x})[0]

    def batches(self, items: Sequence[Any]) -> Iterator[tuple[list[int], np.ndarray | None, list[tuple[int, str]]]]:
        """``(indices, outputs, failures)`` per batch of ``items``; a failure is ``(index, reason)``."""
        for start in range(0, len(items), self.batch_size):
            arrays, indices, failures = [], [], []
            for i in range(start, min(start + self.batch_size, len(items))):
                try:
                    arrays.append(self.array(items[i]))
                    indices.append(i)
                except ImageError as err:
                    failures.append((i, str(err)))
            yield indices, (self.run(np.stack(arrays)) if arrays else None), failures


class Classifier:
    """An exported classifier: images in, labels with probabilities out.

    Args:
        path: a folder written by ``zoo export MODEL --out DIR`` (ONNX).
        batch_size: images per run of the network.
        threads: onnxruntime's intra-op threads (None: one per physical core).
        providers: onnxruntime execution providers, in order (default: the CPU).

    Raises:
        ExportError: not an export folder, a TorchScript export, or a feature export.

    Example:
        >>> clf = Classifier("exports/lenet")                       # doctest: +SKIP
        >>> [r["top"][0]["label"] for r in clf.predict("shirts/")]  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 8, threads: int | None = None,
                 providers: Sequence[str] | None = None):
        self._model = _Model(path, batch_size=batch_size, threads=threads, providers=providers)
        spec = self._model.spec
        if spec.output_kind != "logits":
            raise ExportError(f"{path} is a feature export (layer {spec.layer!r}); use zoo.runtime.Features, or "
                              "export the classifier (zoo export MODEL without --layer).")
        classes = spec.output_shape[-1]
        labels = self._model.folder.read_labels()
        if labels is not None and len(labels) != classes:
            raise ExportError(f"{path}: labels.txt has {len(labels)} names for {classes} outputs; export again.")
        self.labels: tuple[str, ...] = labels or tuple(str(i) for i in range(classes))
        self.spec = spec

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.spec.input_size

    def __repr__(self) -> str:
        return f"Classifier({str(self._model.folder.path)!r}, classes={len(self.labels)})"

    def preprocess(self, images: Any, *, on_error: Literal["raise", "skip"] = "raise") -> tuple[np.ndarray, list[int]]:
        """The float32 batch (N, C, H, W) the network takes for ``images``, and the positions (in the
        input) of the images it holds: all of them, or with ``on_error="skip"`` the readable ones.

        Raises:
            ImageError: an unreadable image, with ``on_error="raise"``.
        """
        return self._model.preprocess(load_images(images), on_error)

    def logits(self, images: Any) -> np.ndarray:
        """Logits (N, classes) float32, one row per image in input order.

        Raises:
            ImageError: an image cannot be read (use ``predict`` to go on past such images).
        """
        items = load_images(images)
        rows = []
        for _indices, out, failures in self._model.batches(items):
            if failures:
                raise ImageError(failures[0][1], path=_name(items[failures[0][0]]))
            rows.append(out)
        return np.concatenate(rows) if rows else np.zeros((0, len(self.labels)), np.float32)

    def predict(self, images: Any, *, top_k: int = 5) -> list[dict[str, Any]]:
        """Top-k labels with probabilities for each image, as ``zoo predict --json`` prints them.

        Returns:
            One dict per image, in order: ``{"image": str, "top": [{"label", "index", "probability"}]}``,
            or ``{"image": str, "error": reason}`` for an image that cannot be read (never raised).
        """
        items = load_images(images)
        k = max(1, min(top_k, len(self.labels)))
        results: list[dict[str, Any]] = [{"image": _name(src)} for src in items]
        for indices, out, failures in self._model.batches(items):
            for i, reason in failures:
                results[i]["error"] = reason
            if out is None:
                continue
            probs = softmax(out)
            # argsort on the negated row: ties keep the lower index first, as torch.topk does on the CPU.
            order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
            for row, i in enumerate(indices):
                results[i]["top"] = [{"label": self.labels[j], "index": int(j), "probability": float(probs[row, j])}
                                     for j in order[row]]
        return results


class Features:
    """An exported feature extractor (``zoo export MODEL --layer NAME``): images in, one row each.

    Takes the same inputs as ``zoo.Extractor`` and gives the same rows (to float rounding).

    Args:
        path: a folder written by ``zoo export MODEL --layer NAME --out DIR``; a classifier export
            works too (its rows are the logits).
        batch_size: images per run of the network.
        on_error: ``"raise"`` (an unreadable image raises ``ImageError`` naming it) or ``"skip"``
            (rows only for the readable images; ``kept`` gives their positions in the input and
            ``failures`` the others with reasons).
        threads, providers: as for ``Classifier``.

    Example:
        >>> feats = Features("exports/resnet50-pool")(["a.jpg", "b.png"])   # doctest: +SKIP
        >>> feats.shape                                                     # doctest: +SKIP
        (2, 2048)
    """

    def __init__(self, path: str | os.PathLike, *, batch_size: int = 8, on_error: Literal["raise", "skip"] = "raise",
                 threads: int | None = None, providers: Sequence[str] | None = None):
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        self._model = _Model(path, batch_size=batch_size, threads=threads, providers=providers)
        self.spec = self._model.spec
        self.on_error = on_error
        self.kept: list[int] = []
        self.failures: list[tuple[str, str]] = []

    @property
    def layer(self) -> str:
        return self.spec.layer or "logits"

    def __repr__(self) -> str:
        return f"Features({str(self._model.folder.path)!r}, layer={self.layer!r})"

    def __call__(self, images: Any) -> np.ndarray:
        """Feature rows (N, ...) float32 for ``images``, in input order."""
        items = load_images(images)
        self.kept, self.failures = [], []
        rows = []
        for indices, out, failures in self._model.batches(items):
            for i, reason in failures:
                if self.on_error == "raise":
                    raise ImageError(reason, path=_name(items[i]))
                self.failures.append((_name(items[i]), reason))
            if out is not None:
                rows.append(out)
                self.kept += indices
        return np.concatenate(rows) if rows else np.zeros((0, *self.spec.output_shape[1:]), np.float32)

    def preprocess(self, images: Any, *, on_error: Literal["raise", "skip"] = "raise") -> tuple[np.ndarray, list[int]]:
        """The float32 batch (N, C, H, W) the network takes for ``images``, and the positions (in the
        input) of the images it holds: all of them, or with ``on_error="skip"`` the readable ones.

        Raises:
            ImageError: an unreadable image, with ``on_error="raise"``.
        """
        return self._model.preprocess(load_images(images), on_error)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Rows for a batch that is already preprocessed (N, C, H, W float32)."""
        return self._model.run(x)
