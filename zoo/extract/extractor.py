"""The Extractor: images in, feature rows out, for any zoo model.

Owns: ``Extractor`` (the weights' own preprocessing, batching with DataLoader workers that decode
while the main process computes, pooling, numpy or torch output) and ``Features`` (what
``Extractor.extract`` returns: rows for the images that could be read, the path of each row, and the
files skipped with the reason). The network itself runs in ``runner.TorchRunner``. Imports torch,
torchvision, numpy, ``zoo.images``, ``zoo.model`` and ``zoo.factory``; never ``zoo.finetune`` or
``zoo.cli``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader
from torchvision.transforms import v2
from tqdm.auto import tqdm

from ..device import cpu_batch_cap, resolve_device
from ..errors import DataError, ImageError
from ..factory import load
from ..images import Batch, Skipped, collate_skip
from ..model import POOL, ZooModel
from ..preprocess import Normalize
from .inputs import TensorAwareDataset, as_items, describe, names_folder
from .runner import TorchRunner

__all__ = ["Extractor", "Features", "progress_bar"]

Array = np.ndarray | torch.Tensor


@dataclass(frozen=True, slots=True)
class Features:
    """What ``Extractor.extract`` returns.

    Attributes:
        features: one row per image that could be read, in input order: an (N, D) float32 array
            (a tensor with ``output="torch"``; (N, C, H, W) with ``pool=None``), or a dict of them by
            layer when several layers were asked for. (0, 0) when no image could be read.
        paths: for each row, the file it came from (as given), or ``<Image 3>``-style names for
            images passed in memory (the kind and the position among the inputs).
        failed: ``(path, reason)`` for every input that was skipped, in input order, then the files
            in folders that claim to be images but are not.
    """

    features: Array | dict[str, Array]
    paths: list[str]
    failed: list[tuple[str, str]]

    def __len__(self) -> int:
        return len(self.paths)


class Extractor:
    """Images in, feature rows out, for any zoo model.

    The model's own preprocessing is applied (resize, centre crop, mean/std, or Caffe's BGR 0-255 with
    its mean). The model runs in eval mode under ``torch.inference_mode``. The defaults are the
    fastest settings measured for each device (BENCHMARKS.md has the figures).

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
        batch_size: images per forward pass; None picks for the device: 64 on a GPU, on the CPU
            ``zoo.device.cpu_batch_cap`` of the input size (8 at 224 px: a batch that fits the CPU's
            caches beats a big one).
        num_workers: DataLoader processes that decode images; None picks for the device (1 per 4
            cores on the CPU, where the model is the bottleneck; all cores but one on a GPU).
        output: ``"numpy"`` (float32 arrays) or ``"torch"`` (CPU tensors).
        channels_last: run the model in NHWC memory format (None: on; faster on CPU and GPU alike).
        amp: bfloat16 autocast (CUDA, or a CPU with bf16 instructions). Off by default so that
            features equal the fp32 forward; bf16 features differ by about 1e-2 relative.
        on_error: what ``ex(images)`` does with an unreadable image: ``"raise"`` (``ImageError``
            naming it) or ``"skip"`` (its row is NaN and ``ex.failures`` says why).
            ``ex.extract(images)`` always skips and reports.
        draft: let libjpeg decode big JPEGs at 1/2, 1/4 or 1/8 scale, never below this many pixels
            a side (True: the weights' resize size; see ``open_image``): faster, features within
            about 0.3%. None (the default) decodes fully, so a feature depends only on the picture.
        backend: what runs the network. ``"auto"`` (the default): ``"torchscript"`` on the CPU in
            fp32 when only ``pool`` is asked for, else ``"torch"``. ``"torch"``: eager PyTorch.
            ``"torchscript"``: the pooled-features path as a frozen TorchScript graph (BatchNorm
            folded into the convolutions, traced on the first full batch; outputs within 1e-7 of
            eager; a model that cannot be traced runs eagerly, with a warning that says why).
            ``"onnxruntime"``: the asked layers are exported to ONNX when the extractor is made
            (through ``zoo export``'s path, parity checked to 1e-4 of each output's scale; a few
            seconds) and every batch runs in onnxruntime on the CPU. Decoding, preprocessing and
            pooling are the same, so are the features (to float rounding); ``channels_last`` and
            ``amp`` are torch's and do not apply.

    Inputs: a path, a folder (its images, naturally sorted), a PIL image, a numpy array (HxWxC uint8,
    or float in [0, 1]; NxHxWxC for several), bytes, or a torch tensor (CxHxW or NxCxHxW: uint8 0-255,
    or float taken as an image in [0, 1]); or a list mixing these. Tensors are images too: they get
    the model's preprocessing. To feed tensors that are already preprocessed, use ``ex.forward(x)``.

    ``ex(images)`` gives one row per image given, in order, like a model's forward or scikit-learn's
    ``transform``. ``ex.extract(images)`` is for folders and lists that may hold bad files: it never
    stops on one, and returns ``Features`` (the rows of the readable images, their paths, and the
    skipped files with the reason).

    Raises:
        UnknownLayerError: a layer the model does not have (with the nearest names).

    Example:
        >>> ex = zoo.Extractor("resnet50")                 # doctest: +SKIP
        >>> ex(["cat.jpg", "dog.png"]).shape               # doctest: +SKIP
        (2, 2048)
        >>> found = ex.extract("photos/")                  # doctest: +SKIP
        >>> found.features.shape, found.paths[0], found.failed   # doctest: +SKIP
        ((411, 2048), 'photos/IMG_0001.jpg', [('photos/cut.jpg', 'cannot be decoded: truncated ...')])
        >>> zoo.Extractor("resnet50", layer=["layer3", "pool"])(img)["layer3"].shape   # doctest: +SKIP
        (1, 1024)
    """

    def __init__(self, model: str | os.PathLike | ZooModel, *, layer: str | Sequence[str] = POOL,
                 pool: Literal["avg", "max"] | None = "avg", device: str | torch.device = "auto",
                 batch_size: int | None = None, num_workers: int | None = None,
                 output: Literal["numpy", "torch"] = "numpy", channels_last: bool | None = None,
                 amp: bool = False, on_error: Literal["raise", "skip"] = "raise", draft: int | bool | None = None,
                 backend: Literal["auto", "torch", "torchscript", "onnxruntime"] = "auto"):
        _check_choice("pool", pool, ("avg", "max", None))
        _check_choice("output", output, ("numpy", "torch"))
        _check_choice("on_error", on_error, ("raise", "skip"))
        _check_choice("backend", backend, ("auto", "torch", "torchscript", "onnxruntime"))
        if backend == "onnxruntime":
            if amp:
                raise ValueError("amp is an option of the torch backends; backend='onnxruntime' runs the exported "
                                 "fp32 graph")
            if str(device) not in ("auto", "cpu"):
                raise ValueError(f"backend='onnxruntime' runs on the CPU; got device={str(device)!r}")
            device = "cpu"
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = resolve_device(device)
        self.backend = backend
        self.source = model if isinstance(model, (str, os.PathLike)) else None
        self.model = _load_model(model).eval().to(self.device)
        self.multi = not isinstance(layer, str)
        self.layer_names = [layer] if isinstance(layer, str) else list(layer)
        if not self.layer_names:
            raise ValueError("layer: give at least one layer name")
        for name in self.layer_names:
            self.model.resolve_layer(name)  # UnknownLayerError with the nearest names
        self.pool = pool
        height, width = self.model.input_size[-2:]
        self.batch_size = batch_size or (64 if self.device.type == "cuda" else cpu_batch_cap(height * width))
        self.num_workers = _auto_workers(self.device) if num_workers is None else num_workers
        self.output = output
        self.on_error = on_error
        self.failures: list[tuple[str, str]] = []
        pre = self.model.preprocessing
        self.draft = None
        if draft:
            self.draft = int(pre.resize if draft is True and pre is not None else 256 if draft is True else draft)
        self.mode = self.model.image_mode
        self.image_transform, self.batch_transform = _split_transform(self.model.transforms)
        if self.batch_transform is not None:
            self.batch_transform = self.batch_transform.to(self.device)
        amp = bool(amp)
        freeze = (self.device.type == "cpu" and not amp) if backend == "auto" else backend == "torchscript"
        if backend == "onnxruntime":
            from .onnx_runner import OnnxRunner

            self.runner = OnnxRunner(self.model, self.layer_names)
            return
        self.runner = TorchRunner(self.model, self.layer_names, device=self.device,
                                  channels_last=True if channels_last is None else channels_last, amp=amp,
                                  freeze=freeze)

    # -- settings and introspection ------------------------------------------------------------
    @property
    def amp(self) -> bool:
        """bfloat16 autocast is on."""
        return self.runner.amp

    @property
    def channels_last(self) -> bool:
        """The model runs in NHWC memory format."""
        return self.runner.channels_last

    @property
    def freeze(self) -> bool:
        """The pooled path runs as a frozen TorchScript graph (False after a model failed to trace)."""
        return self.runner.freeze

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
        backend = f", backend={self.backend!r}" if self.backend != "auto" else ""
        return (f"Extractor({self.name!r}, layer={self.layer_names if self.multi else self.layer_names[0]!r}, "
                f"pool={self.pool!r}, device={str(self.device)!r}, batch_size={self.batch_size}{backend})")

    # -- compute -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of a batch that is already preprocessed (N, C, H, W float, normalised), by layer,
        as float32 tensors on the extractor's device. A uint8 batch (resized and cropped, not yet
        normalised, as ``batches`` makes them) gets the weights' normalisation first. The results are
        inference-mode tensors: ``clone()`` them before using them where autograd records."""
        x = x.to(self.device, non_blocking=True)
        if self.batch_transform is not None and x.dtype == torch.uint8:
            x = self.batch_transform(x)
        return {name: _pool(t, self.pool).float() for name, t in self.runner(x).items()}

    def __call__(self, images: Any, *, progress: bool = False) -> Array | dict[str, Array]:
        """One row per image in ``images``, in input order (see the class docstring for inputs).

        Args:
            images: what to extract from.
            progress: show a progress bar (on a terminal).

        Returns:
            An (N, D) float32 array (or (N, C, H, W) with ``pool=None``; a tensor with
            ``output="torch"``), or a dict of them by layer when several layers were asked for.

        Raises:
            ImageError: an unreadable image (with ``on_error="raise"``), naming it.
        """
        items = as_items(images)
        self.failures = []
        # A folder's files are not the caller's list: say how to get the rows with their paths.
        hint = " (Extractor.extract skips unreadable images and says which row is which file)" \
            if names_folder(images) else ""
        values, index, failures = self._run(items, progress, stop_on_error=self.on_error == "raise", hint=hint)
        self.failures = [(describe(items[f.index], f.index), f.reason) for f in failures]
        out = {name: _assemble(v, index, len(items)) for name, v in values.items()}
        return self._output(out)

    def extract(self, images: Any, *, progress: bool = False) -> Features:
        """Features of every image in ``images`` that can be read; never stops on a bad file.

        Args:
            images: a folder, a list of paths, or anything ``ex(images)`` takes.
            progress: show a progress bar (on a terminal).

        Returns:
            ``Features``: ``features`` (rows of the readable images, in input order), ``paths`` (the
            file of each row) and ``failed`` (``(path, reason)`` of each skipped file).

        Raises:
            DataError: ``images`` is one path that does not exist.

        Example:
            >>> found = zoo.Extractor("resnet50").extract("photos/")     # doctest: +SKIP
            >>> dict(zip(found.paths, found.features))["photos/cat.jpg"].shape   # doctest: +SKIP
            (2048,)
        """
        if isinstance(images, (str, os.PathLike)) and not os.path.lexists(images):
            raise DataError(f"{images}: no such file or folder. Give a folder of images, image files, or a "
                            "list of them.")
        rejected: list[tuple[str, str]] = []
        items = as_items(images, rejected=rejected)
        values, index, failures = self._run(items, progress, stop_on_error=False, hint="")
        rows = index.tolist()
        features = {name: v if v is not None else torch.zeros(0, 0) for name, v in values.items()}
        return Features(features=self._output(features), paths=[describe(items[i], i) for i in rows],
                        failed=[(describe(items[f.index], f.index), f.reason) for f in failures] + rejected)

    def _output(self, out: dict[str, torch.Tensor]) -> Array | dict[str, Array]:
        if self.output == "numpy":
            out = {name: t.numpy() for name, t in out.items()}
        return out if self.multi else out[self.layer_names[0]]

    def _run(self, items: Sequence[Any], progress: bool, *, stop_on_error: bool, hint: str
             ) -> tuple[dict[str, torch.Tensor | None], torch.Tensor, list[Skipped]]:
        """Rows of the readable items by layer (None when there are none), the input positions of the
        rows, and the items skipped (or, with ``stop_on_error``, ``ImageError`` at the first, plus ``hint``)."""
        rows: dict[str, list[torch.Tensor]] = {name: [] for name in self.layer_names}
        index: list[torch.Tensor] = []
        failures: list[Skipped] = []
        for batch in self.batches(items, progress=progress):
            if stop_on_error and batch.failures:
                first = batch.failures[0]
                path = describe(items[first.index], first.index)
                raise ImageError(f"{path}: {first.reason}{hint}", path=path)
            failures.extend(batch.failures)
            x, idx = batch
            if x is None:
                continue
            for name, t in self.forward(x).items():
                rows[name].append(t.cpu())
            index.append(idx)
        order = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
        return {name: torch.cat(parts) if parts else None for name, parts in rows.items()}, order, failures

    def batches(self, items: Sequence[Any], *, batch_sampler: Iterable[list[int]] | None = None,
                progress: bool = False) -> Iterable[Batch]:
        """Decoded, transformed batches of ``items`` in order: ``Batch((x, indices), failures)``.

        ``x`` is uint8 when the normalisation runs per batch (``forward`` finishes it). Used by
        ``__call__``, ``extract`` and ``extract_folder``; a DataLoader with workers when there are
        enough images.
        """
        # The per-image part ends in uint8 and ``forward`` finishes uint8 batches; float tensor
        # images would stay float, so a list holding any gets the whole transform per image.
        floats = any(isinstance(i, torch.Tensor) and i.is_floating_point() for i in items)
        transform = self.model.transforms if floats or self.batch_transform is None else self.image_transform
        dataset = TensorAwareDataset(items, transform, mode=self.mode, draft=self.draft)
        workers = self.num_workers if len(items) > self.batch_size else 0
        kwargs: dict[str, Any] = {"prefetch_factor": 4, "persistent_workers": False} if workers else {}
        if batch_sampler is None:
            kwargs.update(batch_size=self.batch_size, shuffle=False)
        else:
            kwargs.update(batch_sampler=batch_sampler)
        loader = DataLoader(dataset, num_workers=workers, collate_fn=collate_skip, pin_memory=False, **kwargs)
        bar = progress_bar(len(items), progress)
        try:
            for batch in loader:
                x, idx = batch
                if x is not None and self.device.type == "cuda":
                    # Pinned here rather than by DataLoader(pin_memory=True), which rebuilds the batch
                    # and would lose its failure list.
                    batch = Batch((x.pin_memory(), idx), batch.failures)
                yield batch
                bar.update((0 if idx is None else len(idx)) + len(batch.failures))
        finally:
            bar.close()


def progress_bar(total: int, enabled: bool, *, initial: int = 0, desc: str = "extract") -> Any:
    """A tqdm bar over images, shown only when ``enabled`` and stderr is a terminal (tqdm's own
    ``disable=None`` rule), so logs get no carriage-return frames."""
    return tqdm(total=total, initial=initial, unit="img", desc=desc, dynamic_ncols=True,
                disable=None if enabled else True)


def _check_choice(what: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


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
        return load(source)
    raise TypeError(f"Extractor needs a model name, a saved-model folder or a ZooModel, got "
                    f"{type(source).__name__}; wrap other networks with zoo.model.ZooModel.")


def _split_transform(transform: Any) -> tuple[Callable, Callable | None]:
    """Split the weights' transform into a per-image part that ends in a uint8 tensor (run in the
    workers) and a per-batch part (to float, normalise) run where the model is: a quarter of the bytes
    cross from the workers (and to the GPU), and the normalisation runs once per batch, vectorised.
    Gives ``(transform, None)`` when the transform is not the zoo's own shape."""
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


def _assemble(values: torch.Tensor | None, index: torch.Tensor, n: int) -> torch.Tensor:
    """Rows back into input order; images that failed (with ``on_error="skip"``) get NaN rows."""
    if values is None:
        return torch.full((n, 0), float("nan"))
    if len(index) == n:
        out = torch.empty_like(values)
    else:
        out = torch.full((n, *values.shape[1:]), float("nan"), dtype=values.dtype)
    out[index] = values
    return out
