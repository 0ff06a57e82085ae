"""Image features from any zoo model: in an application (``Extractor``) and for whole folders on disk
(``extract_folder``, which ``zoo extract`` calls), plus nearest-neighbour search over the result
(``similar``, behind ``zoo similar``).

Owns: turning images (paths, folders, PIL images, arrays, tensors, bytes) into feature rows through the
one model contract (``ZooModel.forward_layers``) with the weights' own preprocessing; batching with
DataLoader workers (decode in workers, compute in the main process); the features file format
(``.npz`` + a ``.csv`` index); resumable, shardable (torchrun) folder extraction.

Imports torch, numpy, ``zoo.images``, ``zoo.model`` and (for names and run folders) ``zoo.factory``;
never ``zoo.finetune`` or ``zoo.cli``.

The features file, ``feats.npz`` (``np.load`` it; no pickle needed)::

    features        float32 (N, D), one row per image that could be read, in input order
    paths           str (N,), the image each row came from
    model, layer, pool   str scalars: what made the features (``zoo similar`` reuses them)
    model_ref       str: what ``zoo.load`` takes to rebuild the model ("" for an in-memory model)
    failed_paths, failed_reasons   str (F,): the files that were skipped and why

beside it ``feats.csv`` (``row,path``; ``pandas.read_csv``) and, when files were skipped,
``feats.failed.csv`` (``path,reason``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from ._io import atomic_write, write_json
from .device import resolve_device
from .errors import DataError, ImageError
from .images import (Batch, ImageDataset, Skipped, collate_skip, find_images, natural_key,
                     open_image)
from .model import LOGITS, POOL, ZooModel
from zoo.registry import env

__all__ = ["Extractor", "extract_folder", "ExtractSummary", "load_features", "similar", "collect_inputs",
           "FORMAT"]

FORMAT = "zoo-features"
_LIST_SUFFIXES = {".txt", ".lst"}


# ----------------------------------------------------------------------------------------------
# Devices and settings


def _auto_workers(device: torch.device) -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device.type == "cuda":
        # The GPU waits on decoding: give it every core but one for the main process.
        return max(1, min(cpus - 1, 16))
    # On the CPU the model is the bottleneck and uses the cores itself; one decoding worker per
    # four cores keeps the model fed (decode+resize costs ~5 ms a photo against 30-100 ms of model)
    # without stealing its threads.
    return max(1, min(cpus // 4, 4)) if cpus > 1 else 0


def _load_model(source: Any) -> ZooModel:
    if isinstance(source, ZooModel):
        return source
    if isinstance(source, (str, os.PathLike)):
        from .factory import load

        return load(source)
    raise TypeError(f"Extractor needs a model name, a saved-model folder or a ZooModel, got "
                    f"{type(source).__name__}; wrap other networks with zoo.model.ZooModel.")


def _split_transform(transform: Any) -> tuple[Callable, Callable | None]:
    """Split the weights' transform into a per-image part that ends in a uint8 tensor (run in the
    workers) and a per-batch part (to float, normalise) run where the model is: a quarter of the bytes
    cross from the workers (and to the GPU), and the normalisation runs once per batch, vectorised.
    Gives ``(transform, None)`` when the transform is not the zoo's own shape."""
    from torchvision.transforms import v2

    from .preprocess import Normalize

    steps = getattr(transform, "transforms", None)
    if (isinstance(steps, list) and len(steps) >= 3 and isinstance(steps[-1], Normalize)
            and isinstance(steps[-2], v2.ToDtype)):
        return v2.Compose(steps[:-2]), v2.Compose(steps[-2:])
    return transform, None


def _pool(t: torch.Tensor, pool: str | None) -> torch.Tensor:
    if pool is None or t.ndim <= 2:
        return t
    # N, C, H, W (and N, C, D, H, W): over positions; N, T, C (transformer tokens): over tokens.
    dims = (1,) if t.ndim == 3 else tuple(range(2, t.ndim))
    if pool == "avg":
        return t.mean(dim=dims)
    return t.amax(dim=dims)


# ----------------------------------------------------------------------------------------------
# Extractor


class Extractor:
    """Images in, feature rows out, for any zoo model.

    The model's own preprocessing is applied (resize, centre crop, mean/std, or Caffe's BGR 0-255 with
    its mean). The model runs in eval mode under ``torch.inference_mode``.

    Args:
        model: a registry name (``"resnet50"``), a folder written by ``zoo finetune`` / ``zoo train`` /
            ``zoo import-caffe`` / ``save_model``, or a ``ZooModel`` (used as it is: put in eval mode,
            moved to ``device`` and, with ``channels_last``, to that memory format, in place).
        layer: a layer name (``ex.layers()`` lists them; ``"pool"`` is the pooled pre-logits vector,
            ``"logits"`` the head's output), or several names, which makes every call return a dict.
        pool: how an intermediate layer's map is reduced to one row per image: ``"avg"`` or ``"max"``
            over the spatial positions (or over the tokens of a transformer), or None to keep its
            shape (N, C, H, W). ``pool`` and ``logits`` are vectors already.
        device: ``"auto"`` (the GPU when there is one), ``"cpu"``, ``"cuda"``, ``"cuda:1"``.
        batch_size: images per forward pass; None picks for the device: 64 on a GPU, 8 on the CPU
            (measured on the 2-core CPU, quiet: ResNet-50 37.7 img/s at 8 against 21.0 at 64, ResNet-18
            90.1 against 79.8; a batch that fits the caches beats a big one).
        num_workers: DataLoader processes that decode images; None picks for the device (1 per 4
            cores on the CPU, where the model is the bottleneck; all cores but one on a GPU).
        output: ``"numpy"`` (float32 arrays) or ``"torch"`` (CPU tensors).
        channels_last: run the model in NHWC memory format (None: on; faster on CPU and GPU alike).
        freeze: run the pooled-features path as a frozen TorchScript graph (BatchNorm folded into the
            convolutions, oneDNN fusions), traced on the first full batch. None: on for the CPU in fp32
            when only ``pool`` is asked for (measured on the 2-core CPU at batch 8: ResNet-50 36.0 ->
            48.3 img/s, ResNet-18 96.9 -> 113.0; outputs within 1e-7 of eager). A model that cannot be
            traced runs eagerly, with a warning that says why.
        amp: bfloat16 autocast (CUDA, or a CPU with bf16 instructions: ResNet-50 70 img/s against
            37.7 in fp32 on the 2-core CPU). Off by default so that features equal the fp32 forward;
            bf16 features differ by about 1e-2 relative.
        on_error: ``"raise"`` (an unreadable image raises ``ImageError`` naming it) or ``"skip"``
            (its row is NaN and ``ex.failures`` says why).
        draft: let libjpeg decode big JPEGs at 1/2, 1/4 or 1/8 scale, never below this many pixels
            a side (True: the weights' resize size; see ``open_image``). Measured on 2000x1500 photos
            for ResNet-18: decoding 1.5x faster, features within 0.3% (cosine > 0.99999) of the full
            decode. None (the default) decodes fully, so a feature depends only on the picture.
        progress: show a progress bar over the images.

    Inputs (``ex(images)``): a path, a folder (its images, naturally sorted), a PIL image, a numpy
    array (HxWxC uint8, or float in [0, 1]; NxHxWxC for several), bytes, or a torch tensor (CxHxW or
    NxCxHxW: uint8 0-255, or float taken as an image in [0, 1]); or a list mixing these. Tensors are
    images too: they get the model's preprocessing. To feed tensors that are already preprocessed,
    use ``ex.forward(x)``.

    Returns:
        One row per image, in input order: an (N, D) float32 array (or (N, C, H, W) with
        ``pool=None``), or a dict of them when several layers were asked for.

    Raises:
        UnknownLayerError: a layer the model does not have (with the nearest names).
        ImageError: an unreadable image, with ``on_error="raise"``.

    Example:
        >>> ex = zoo.Extractor("resnet50")                 # doctest: +SKIP
        >>> ex(["cat.jpg", "dog.png"]).shape               # doctest: +SKIP
        (2, 2048)
        >>> ex("photos/", ).shape                          # doctest: +SKIP
        (412, 2048)
        >>> zoo.Extractor("resnet50", layer=["layer3", "pool"])(img)["layer3"].shape   # doctest: +SKIP
        (1, 1024)
    """

    def __init__(self, model: str | os.PathLike | ZooModel, *, layer: str | Sequence[str] = POOL,
                 pool: Literal["avg", "max"] | None = "avg", device: str | torch.device = "auto",
                 batch_size: int | None = None, num_workers: int | None = None,
                 output: Literal["numpy", "torch"] = "numpy", channels_last: bool | None = None,
                 amp: bool = False, on_error: Literal["raise", "skip"] = "raise", draft: int | bool | None = None,
                 progress: bool = False, freeze: bool | None = None):
        if pool not in ("avg", "max", None):
            raise ValueError(f"pool must be 'avg', 'max' or None, got {pool!r}")
        if output not in ("numpy", "torch"):
            raise ValueError(f"output must be 'numpy' or 'torch', got {output!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
        if batch_size is None:
            batch_size = 64 if self.device.type == "cuda" else 8
        self.source = model if isinstance(model, (str, os.PathLike)) else None
        self.model = _load_model(model).eval().to(self.device)
        self.multi = not isinstance(layer, str)
        self.layer_names = [layer] if isinstance(layer, str) else list(layer)
        if not self.layer_names:
            raise ValueError("layer: give at least one layer name")
        for name in self.layer_names:
            self.model.resolve_layer(name)  # UnknownLayerError with the nearest names
        self.pool = pool
        self.batch_size = batch_size
        self.num_workers = _auto_workers(self.device) if num_workers is None else num_workers
        self.output = output
        # channels_last: oneDNN (CPU) and cuDNN both run NHWC convolutions faster; measured here on the
        # 2-core CPU: ResNet-50 1.7x, ResNet-18 1.6x. Results differ from NCHW only by float rounding.
        self.channels_last = True if channels_last is None else channels_last
        self.amp = bool(amp)
        self.freeze = (self.device.type == "cpu" and not self.amp and self.layer_names == [POOL]) \
            if freeze is None else bool(freeze and self.layer_names == [POOL])
        self._frozen: Any = None  # the traced body and the batch shape it was traced at
        self.on_error = on_error
        self.draft = None
        self.progress = progress
        self.failures: list[tuple[str, str]] = []
        pre = self.model.preprocessing
        if draft:
            self.draft = int(pre.resize if draft is True and pre is not None else 256 if draft is True else draft)
        self.mode = self.model.image_mode
        self.image_transform, self.batch_transform = _split_transform(self.model.transforms)
        if self.batch_transform is not None:
            self.batch_transform = self.batch_transform.to(self.device)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    # -- introspection -------------------------------------------------------------------------
    def layers(self) -> list[str]:
        """Every layer name this extractor accepts (module paths, aliases, ``pool``, ``logits``)."""
        return self.model.layer_names()

    @property
    def ref(self) -> str:
        """What ``zoo.load`` needs to rebuild the model: the registry name, or the model folder as an
        absolute path; empty for a model handed over in memory."""
        if self.source is None:
            return ""
        path = Path(self.source).expanduser()
        return str(path.resolve()) if path.is_dir() else str(self.source)

    @property
    def name(self) -> str:
        """What made the features: the name or folder given, else the model's name."""
        return self.ref or self.model.name

    def __repr__(self) -> str:
        return (f"Extractor({self.name!r}, layer={self.layer_names if self.multi else self.layer_names[0]!r}, "
                f"pool={self.pool!r}, device={str(self.device)!r}, batch_size={self.batch_size})")

    # -- compute -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of a batch that is already preprocessed (N, C, H, W float, normalised), by layer,
        as float32 tensors on the extractor's device. A uint8 batch (resized and cropped, not yet
        normalised, as ``batches`` makes them) gets the weights' normalisation first. The results are
        inference-mode tensors: ``clone()`` them before using them where autograd records."""
        x = x.to(self.device, non_blocking=True)
        if self.batch_transform is not None and x.dtype == torch.uint8:
            x = self.batch_transform(x)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                    enabled=self.amp):
            if self.layer_names == [POOL]:
                outs = {POOL: self._body(x)}
            else:
                outs = self.model.forward_layers(x, self.layer_names)
        return {name: _pool(t, self.pool).float() for name, t in outs.items()}

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features, through the frozen graph when it is on and fits this batch's shape."""
        if not self.freeze:
            return self.model.body(x)
        if self._frozen is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TorchScript's own deprecation chatter
                    graph = torch.jit.optimize_for_inference(torch.jit.freeze(
                        torch.jit.trace(self.model.body.eval(), x, check_trace=False)))
                    graph(x)
            except Exception as err:  # noqa: BLE001 (any tracing failure means: run eagerly)
                warnings.warn(f"{self.model.name or 'the model'} could not be frozen for faster CPU inference "
                              f"({type(err).__name__}: {err}); running it eagerly (same results).", stacklevel=3)
                self.freeze = False
                return self.model.body(x)
            self._frozen = (graph, tuple(x.shape))
        graph, shape = self._frozen
        # The trace is specialised to its input shape; a short last batch runs eagerly.
        return graph(x) if tuple(x.shape) == shape else self.model.body(x)

    def __call__(self, images: Any) -> np.ndarray | torch.Tensor | dict[str, np.ndarray | torch.Tensor]:
        items = _as_items(images, self.mode)
        self.failures = []
        rows: dict[str, list[torch.Tensor]] = {name: [] for name in self.layer_names}
        index: list[torch.Tensor] = []
        for batch in self.batches(items):
            for failure in batch.failures:
                if self.on_error == "raise":
                    raise ImageError(f"{failure.path}: {failure.reason}", path=failure.path)
                self.failures.append((failure.path, failure.reason))
            x, idx = batch
            if x is None:
                continue
            for name, t in self.forward(x).items():
                rows[name].append(t.cpu())
            index.append(idx)
        out = {name: _assemble(parts, index, len(items)) for name, parts in rows.items()}
        if self.output == "numpy":
            out = {name: t.numpy() for name, t in out.items()}
        return out if self.multi else out[self.layer_names[0]]

    def batches(self, items: Sequence[Any], *, batch_sampler: Iterable[list[int]] | None = None
                ) -> Iterable[Batch]:
        """Decoded, transformed batches of ``items`` in order: ``Batch((x, indices), failures)``.

        ``x`` is uint8 when the normalisation runs per batch (``forward`` finishes it). Used by
        ``__call__`` and ``extract_folder``; a DataLoader with workers when there are enough images.
        """
        from torch.utils.data import DataLoader

        # The per-image part ends in uint8 and ``forward`` finishes uint8 batches; float tensor
        # images would stay float, so a list holding any gets the whole transform per image.
        floats = any(isinstance(i, torch.Tensor) and i.is_floating_point() for i in items)
        transform = self.model.transforms if floats or self.batch_transform is None else self.image_transform
        dataset = _TensorAwareDataset(items, transform, mode=self.mode, draft=self.draft)
        workers = self.num_workers if len(items) > self.batch_size else 0
        kwargs: dict[str, Any] = {}
        if workers:
            kwargs.update(prefetch_factor=4, persistent_workers=False)
        if batch_sampler is None:
            loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False, num_workers=workers,
                                collate_fn=collate_skip, pin_memory=False, **kwargs)
        else:
            loader = DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers,
                                collate_fn=collate_skip, pin_memory=False, **kwargs)
        bar = _progress(len(items), self.progress and batch_sampler is None)
        for batch in loader:
            x, idx = batch
            if x is not None and self.device.type == "cuda":
                # Pinned here rather than by DataLoader(pin_memory=True), which rebuilds the batch and
                # would lose its failure list.
                batch = Batch((x.pin_memory(), idx), batch.failures)
            yield batch
            bar.update((0 if idx is None else len(idx)) + len(batch.failures))
        bar.close()


class _TensorAwareDataset(ImageDataset):
    """``ImageDataset`` that also takes tensors (images already in memory) as items."""

    def __getitem__(self, index: int):
        src = self.paths[index]
        if isinstance(src, torch.Tensor):
            return self.transform(src), index
        return super().__getitem__(index)


def _assemble(parts: list[torch.Tensor], index: list[torch.Tensor], n: int) -> torch.Tensor:
    """Rows back into input order; images that failed (with ``on_error="skip"``) get NaN rows."""
    if not parts:
        return torch.full((n, 0), float("nan"))
    values = torch.cat(parts)
    order = torch.cat(index)
    if len(order) == n:
        out = torch.empty_like(values)
    else:
        out = torch.full((n, *values.shape[1:]), float("nan"), dtype=values.dtype)
    out[order] = values
    return out


def _as_items(images: Any, mode: str) -> list[Any]:
    """The inputs as a flat list of single images."""
    if isinstance(images, (str, os.PathLike)):
        path = Path(images)
        if path.is_dir():
            found = find_images(path)
            if not found:
                raise ImageError(f"{path}: no images in this folder (JPEG, PNG, WebP, BMP, GIF, TIFF).",
                                 path=str(path))
            return list(found)
        return [images]
    if isinstance(images, (Image.Image, bytes, bytearray, memoryview)) or hasattr(images, "read"):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, torch.Tensor):
        if images.ndim == 4:
            return list(_check_tensor(t) for t in images)
        return [_check_tensor(images)]
    if isinstance(images, Iterable):
        out: list[Any] = []
        for item in images:
            if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
                out += find_images(item)
            elif isinstance(item, torch.Tensor):
                out.append(_check_tensor(item))
            else:
                out.append(item)
        return out
    raise TypeError(f"cannot extract features from a {type(images).__name__}: pass paths, a folder, PIL "
                    "images, numpy arrays, tensors or bytes.")


def _check_tensor(t: torch.Tensor) -> torch.Tensor:
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ImageError(f"a tensor image must be CxHxW (or NxCxHxW) with C = 1 or 3, got shape "
                         f"{tuple(t.shape)}; permute HxWxC tensors with t.permute(2, 0, 1).")
    if t.is_floating_point() and t.numel() and (float(t.min()) < -1e-3 or float(t.max()) > 1 + 1e-3):
        raise ImageError(f"a float tensor image must hold values in [0, 1], got [{float(t.min()):.3g}, "
                         f"{float(t.max()):.3g}]. For an already normalised batch use Extractor.forward(x).")
    return t.detach().cpu()


def _progress(total: int, enabled: bool, initial: int = 0, desc: str = "extract"):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="img", desc=desc, dynamic_ncols=True)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------
# Folders to a features file


@dataclass
class ExtractSummary:
    """What ``extract_folder`` did. ``failures`` lists ``(path, reason)`` for every skipped file."""

    out: Path
    index: Path
    failed_index: Path | None
    images: int  # files considered, skipped ones included
    extracted: int  # rows written
    failed: int
    resumed: int  # images whose results a previous, interrupted run had already written
    seconds: float
    dim: int = 0
    merged: bool = True  # False on torchrun ranks other than 0, which only write their shards
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_s(self) -> float:
        done = self.images - self.resumed
        return done / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(out=str(self.out), index=str(self.index),
                    failed_index=str(self.failed_index) if self.failed_index else None,
                    images_per_s=round(self.images_per_s, 2))
        data["failures"] = [{"path": p, "reason": r} for p, r in self.failures]
        return data


def collect_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike], *, recursive: bool = True
                   ) -> tuple[list[str], list[tuple[str, str]]]:
    """The image paths that ``inputs`` name, in order, and the files refused on sight.

    Each input is a folder (its images, naturally sorted; files with an image extension whose bytes
    are not an image are refused), a list file (``.txt`` / ``.lst``: one path a line, relative to the
    list's folder, ``#`` comments), or an image path (kept even if missing, so it is reported).
    Duplicates are kept: one row per input.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths: list[str] = []
    rejected: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found: list[tuple[Path, str]] = []
            paths += [str(p) for p in find_images(path, recursive=recursive, rejected=found)]
            rejected += [(str(p), reason) for p, reason in found]
        elif path.suffix.lower() in _LIST_SUFFIXES and path.is_file():
            for line in path.read_text("utf-8").splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    entry = Path(line).expanduser()
                    paths.append(str(entry if entry.is_absolute() else path.parent / entry))
        else:
            paths.append(str(path))
    return paths, rejected


def _world() -> tuple[int, int]:
    place = env.distributed()
    return place.rank, place.world


def _chunk_path(parts: Path, k: int) -> Path:
    return parts / f"chunk-{k:06d}.npz"


def _save_npz(path: Path, **arrays: Any) -> None:
    with atomic_write(path) as fh:
        np.savez(fh, **arrays)


def _str_array(values: Sequence[str]) -> np.ndarray:
    return np.array(list(values), dtype=str) if len(values) else np.zeros(0, dtype="<U1")


def extract_folder(model: str | os.PathLike | ZooModel | Extractor,
                   inputs: str | os.PathLike | Iterable[str | os.PathLike], out: str | os.PathLike, *,
                   layer: str = POOL, pool: Literal["avg", "max"] | None = "avg", device: str = "auto",
                   batch_size: int | None = None, num_workers: int | None = None, chunk_size: int = 1024,
                   resume: bool = True, progress: bool = True, recursive: bool = True,
                   draft: int | bool | None = None, amp: bool = False) -> ExtractSummary:
    """Extract features for every image in ``inputs`` into ``out`` (``.npz``), resumably.

    When ``out`` already holds the result of this same job (inputs, model, layer, pool), nothing is
    recomputed. Otherwise work is cut into chunks of ``chunk_size`` images; each finished chunk is written atomically to
    ``<out>.parts/`` beside a manifest, so an interrupted run, started again with the same inputs,
    model and layer, skips the chunks already done. When every chunk is there they are merged into
    ``out`` (see the module docstring for its keys), ``<out stem>.csv`` (``row,path``) and, if files
    were skipped, ``<out stem>.failed.csv`` (``path,reason``); the parts folder is then removed.
    Unreadable files are skipped and listed, never fatal. Memory stays flat in the number of images
    until the merge, which holds the features (N x D floats) once.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) rank r extracts chunks r, r + W, r + 2W, ...; rank 0
    waits for every chunk and merges them in input order.

    Args:
        model: a registry name, a saved-model folder, a ``ZooModel`` or an ``Extractor``.
        inputs: folders, image paths, or list files (``.txt``: one path a line).
        out: the features file to write; must end in ``.npz``.
        layer, pool, device, batch_size, num_workers, draft, amp: as for ``Extractor``.
        chunk_size: images per resumable chunk.
        resume: reuse the chunks of an interrupted run; False starts over.
        progress: show a progress bar.
        recursive: walk sub-folders of folder inputs.

    Returns:
        An ``ExtractSummary`` (counts, paths written, failures).

    Raises:
        DataError: no images at all, or ``<out>.parts`` belongs to a different job.
        UnknownLayerError: a layer the model does not have.

    Example:
        >>> s = extract_folder("resnet50", ["photos/"], "feats.npz")   # doctest: +SKIP
        >>> s.extracted, s.failed                                       # doctest: +SKIP
        (410, 2)
    """
    start = time.perf_counter()
    out = Path(out)
    if out.suffix != ".npz":
        raise DataError(f"{out}: the features file must end in .npz (it is a numpy archive), e.g. "
                        f"{out.with_suffix('.npz').name}.")
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    paths, rejected = collect_inputs(inputs, recursive=recursive)
    if not paths and not rejected:
        raise DataError(f"no images in {', '.join(map(str, inputs))}: "
                        "give folders of JPEG/PNG/WebP/BMP/GIF/TIFF files, image paths, or a .txt list.")
    ex = model if isinstance(model, Extractor) else Extractor(
        model, layer=layer, pool=pool, device=device, batch_size=batch_size, num_workers=num_workers, draft=draft,
        amp=amp)
    if ex.multi:
        raise DataError("extract_folder writes one layer per file; run it once per layer.")
    ex.on_error = "skip"
    rank, world = _world()
    parts = out.with_name(out.name + ".parts")
    manifest = {
        "format": FORMAT + "-parts", "version": 1, "model": ex.name, "layer": ex.layer_names[0],
        "pool": ex.pool or "none", "draft": ex.draft, "count": len(paths), "chunk_size": chunk_size,
        "inputs_sha256": hashlib.sha256("\n".join(paths).encode()).hexdigest(),
    }
    if resume and out.is_file():  # every rank sees a finished job and stops
        done = _finished(out, manifest, len(paths) + len(rejected))
        if done is not None:
            done.seconds = time.perf_counter() - start
            return done
    manifest_path = parts / "manifest.json"
    if manifest_path.is_file():
        try:
            old = json.loads(manifest_path.read_text("utf-8"))
        except json.JSONDecodeError:
            old = None
        if not resume or old is None:
            if rank == 0:
                shutil.rmtree(parts)
        elif old != manifest:
            diff = sorted(k for k in manifest if old.get(k) != manifest[k])
            raise DataError(f"{parts} holds the chunks of a different extraction (differs in {', '.join(diff)}). "
                            f"Delete that folder, pass another --out, or --restart to start over.")
    parts.mkdir(parents=True, exist_ok=True)
    if rank == 0 or not manifest_path.is_file():
        write_json(manifest_path, manifest)

    n_chunks = (len(paths) + chunk_size - 1) // chunk_size
    mine = [k for k in range(n_chunks) if k % world == rank]
    pending = [k for k in mine if not _chunk_path(parts, k).is_file()]
    bounds = {k: (k * chunk_size, min((k + 1) * chunk_size, len(paths))) for k in range(n_chunks)}
    resumed = sum(bounds[k][1] - bounds[k][0] for k in mine if k not in pending)
    sampler = [list(range(s, min(s + ex.batch_size, bounds[k][1])))
               for k in pending for s in range(bounds[k][0], bounds[k][1], ex.batch_size)]
    total_mine = sum(bounds[k][1] - bounds[k][0] for k in mine)
    bar = _progress(total_mine, progress, initial=resumed,
                    desc="extract" if world == 1 else f"extract rank {rank}/{world}")
    try:
        _run_chunks(ex, paths, sampler, bounds, chunk_size, parts, bar)
    finally:
        bar.close()

    if world > 1:
        _wait_for_chunks(parts, n_chunks, rank)
        if rank != 0:
            return ExtractSummary(out=out, index=out.with_suffix(".csv"), failed_index=None, images=len(paths),
                                  extracted=0, failed=0, resumed=resumed, seconds=time.perf_counter() - start,
                                  merged=False)
    summary = _merge(parts, n_chunks, paths, rejected, out, ex, manifest)
    summary.resumed = resumed
    summary.seconds = time.perf_counter() - start
    return summary


def _run_chunks(ex: Extractor, paths: list[str], sampler: list[list[int]], bounds: dict[int, tuple[int, int]],
                chunk_size: int, parts: Path, bar: Any) -> None:
    """Extract the batches in ``sampler`` and write each chunk as soon as its last image is done."""
    feats: list[torch.Tensor] = []
    rows: list[torch.Tensor] = []
    failed: list[Skipped] = []
    seen = 0

    def flush(k: int) -> None:
        values = torch.cat(feats).numpy() if feats else np.zeros((0, 0), dtype=np.float32)
        index = torch.cat(rows).numpy().astype(np.int64) if rows else np.zeros(0, dtype=np.int64)
        _save_npz(_chunk_path(parts, k), features=values.astype(np.float32, copy=False), index=index,
                  failed_index=np.array([f.index for f in failed], dtype=np.int64),
                  failed_reason=_str_array([f.reason for f in failed]))

    for batch in ex.batches(paths, batch_sampler=sampler):
        x, idx = batch
        first = int(idx[0]) if idx is not None and len(idx) else batch.failures[0].index
        k = first // chunk_size  # batches never straddle chunks (see the sampler)
        if x is not None:
            feats.append(ex.forward(x)[ex.layer_names[0]].flatten(1).cpu())
            rows.append(idx)
        failed.extend(batch.failures)
        n = (0 if idx is None else len(idx)) + len(batch.failures)
        seen += n
        bar.update(n)
        if seen == bounds[k][1] - bounds[k][0]:
            flush(k)
            feats, rows, failed, seen = [], [], [], 0


def _wait_for_chunks(parts: Path, n_chunks: int, rank: int) -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        return
    # Without a process group the ranks meet through the file system: rank 0 polls for the chunks,
    # the others are done once theirs are written.
    while rank == 0 and not all(_chunk_path(parts, k).is_file() for k in range(n_chunks)):
        time.sleep(0.5)


def _finished(out: Path, manifest: dict[str, Any], images: int) -> ExtractSummary | None:
    """The summary of ``out`` when it already holds exactly this job's result, else None."""
    try:
        with np.load(out, allow_pickle=False) as data:
            if "job" not in data or json.loads(str(data["job"])) != manifest:
                return None
            failed = list(zip(map(str, data["failed_paths"]), map(str, data["failed_reasons"])))
            n, dim = data["features"].shape if data["features"].ndim == 2 else (0, 0)
    except (OSError, ValueError, KeyError):
        return None
    failed_path = out.with_suffix(".failed.csv")
    return ExtractSummary(out=out, index=out.with_suffix(".csv"), failed_index=failed_path if failed else None,
                          images=images, extracted=int(n), failed=len(failed), resumed=images, seconds=0.0,
                          dim=int(dim), failures=failed)


def _merge(parts: Path, n_chunks: int, paths: list[str], rejected: list[tuple[str, str]], out: Path,
           ex: Extractor, manifest: dict[str, Any]) -> ExtractSummary:
    feats: list[np.ndarray] = []
    index: list[np.ndarray] = []
    failures: list[tuple[int, str, str]] = []
    for k in range(n_chunks):
        with np.load(_chunk_path(parts, k), allow_pickle=False) as chunk:
            if len(chunk["index"]):
                feats.append(chunk["features"])
                index.append(chunk["index"])
            failures += [(int(i), paths[int(i)], str(r))
                         for i, r in zip(chunk["failed_index"], chunk["failed_reason"])]
    features = np.concatenate(feats) if feats else np.zeros((0, 0), dtype=np.float32)
    rows = np.concatenate(index) if index else np.zeros(0, dtype=np.int64)
    # Chunks are already in input order; sorting keeps that true whatever wrote them.
    order = np.argsort(rows, kind="stable")
    features, rows = features[order], rows[order]
    row_paths = [paths[int(i)] for i in rows]
    failed = [(p, r) for _, p, r in sorted(failures)] + list(rejected)
    _save_npz(out, format=np.array(FORMAT), features=features, paths=_str_array(row_paths),
              model=np.array(ex.name), model_ref=np.array(ex.ref), layer=np.array(ex.layer_names[0]),
              pool=np.array(ex.pool or "none"),
              failed_paths=_str_array([p for p, _ in failed]), failed_reasons=_str_array([r for _, r in failed]),
              job=np.array(json.dumps(manifest)))
    index_path = out.with_suffix(".csv")
    with atomic_write(index_path, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["row", "path"])
        writer.writerows(enumerate(row_paths))
    failed_path = out.with_suffix(".failed.csv")
    if failed:
        with atomic_write(failed_path, "w") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["path", "reason"])
            writer.writerows(failed)
    else:
        with contextlib.suppress(FileNotFoundError):
            failed_path.unlink()
    shutil.rmtree(parts, ignore_errors=True)
    return ExtractSummary(out=out, index=index_path, failed_index=failed_path if failed else None,
                          images=len(paths) + len(rejected), extracted=len(row_paths), failed=len(failed),
                          resumed=0, seconds=0.0, dim=int(features.shape[1]) if features.ndim == 2 else 0,
                          failures=failed)


# ----------------------------------------------------------------------------------------------
# Using the features


def load_features(path: str | os.PathLike) -> dict[str, Any]:
    """Read a features file written by ``extract_folder`` / ``zoo extract``.

    Returns:
        ``{"features": (N, D) float32, "paths": list[str], "model": str, "model_ref": str, "layer": str,
        "pool": str | None, "failed": list[(path, reason)]}``.

    Raises:
        DataError: the file is missing or not a zoo features file.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "features" not in data or "paths" not in data:
                raise DataError(f"{path} is an .npz but not a zoo features file (no 'features'/'paths'); "
                                "make one with `zoo extract`.")
            pool = str(data["pool"]) if "pool" in data else "avg"
            return {
                "features": data["features"].astype(np.float32, copy=False),
                "paths": [str(p) for p in data["paths"]],
                "model": str(data["model"]) if "model" in data else "",
                "model_ref": str(data["model_ref"]) if "model_ref" in data else "",
                "layer": str(data["layer"]) if "layer" in data else POOL,
                "pool": None if pool == "none" else pool,
                "failed": list(zip(map(str, data["failed_paths"]), map(str, data["failed_reasons"])))
                if "failed_paths" in data else [],
            }
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such features file; make one with `zoo extract MODEL IMAGES --out {path}`."
                        ) from err
    except (OSError, ValueError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"{path} cannot be read as a features file ({err}); make one with `zoo extract`.") from err


def similar(index: str | os.PathLike | dict[str, Any], images: Any, *, top_k: int = 5,
            extractor: Extractor | None = None, device: str = "auto") -> list[list[tuple[str, float]]]:
    """The ``top_k`` images of an extracted index nearest to each query image, by cosine similarity.

    The query's features come from the model, layer and pooling the index was built with (stored in
    the file), unless ``extractor`` is given.

    Args:
        index: a features file (``zoo extract --out``) or what ``load_features`` returned.
        images: query images, anything ``Extractor`` takes.
        top_k: how many neighbours per query.
        extractor: reuse an existing extractor (it must match the index).
        device: for the extractor built here.

    Returns:
        For each query image, ``[(path, similarity), ...]`` best first (similarity in [-1, 1]).

    Raises:
        DataError: the index is empty, or was made from an unnamed in-memory model and no
            ``extractor`` is given, or its feature width does not match the extractor's.

    Example:
        >>> similar("feats.npz", "query.jpg", top_k=3)   # doctest: +SKIP
        [[('photos/cat7.jpg', 0.93), ('photos/cat2.jpg', 0.88), ('photos/cat1.jpg', 0.85)]]
    """
    data = index if isinstance(index, dict) else load_features(index)
    feats = data["features"]
    if feats.ndim != 2 or not len(feats):
        raise DataError(f"{index if not isinstance(index, dict) else 'the index'} holds no features to search.")
    if extractor is None:
        if not data["model_ref"]:
            raise DataError(f"the index was made from an in-memory model ({data['model'] or 'unnamed'}), which "
                            "cannot be loaded by name; pass extractor=Extractor(that_model, layer=...).")
        extractor = Extractor(data["model_ref"], layer=data["layer"], pool=data["pool"], device=device)
    query = np.asarray(extractor(images), dtype=np.float32)
    query = query.reshape(query.shape[0], -1)
    if query.shape[1] != feats.shape[1]:
        raise DataError(f"the query features have {query.shape[1]} values but the index has {feats.shape[1]}: "
                        "use the model and layer the index was built with.")
    eps = 1e-12
    q = query / (np.linalg.norm(query, axis=1, keepdims=True) + eps)
    f = feats / (np.linalg.norm(feats, axis=1, keepdims=True) + eps)
    scores = q @ f.T
    k = min(top_k, scores.shape[1])
    results = []
    for row in scores:
        top = np.argpartition(-row, k - 1)[:k]
        top = top[np.argsort(-row[top], kind="stable")]
        results.append([(data["paths"][i], float(row[i])) for i in top])
    return results
