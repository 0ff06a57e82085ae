"""How Caffe fed a net, read from its files: the data layer's transform, turned into the zoo's preprocessing.

Owns: ``read_conventions`` (the ``transform_param`` of a train_val prototxt's data layer, or of the
training net a solver snapshot ``.caffemodel`` carries: ``scale``, ``mean_file``/``mean_value`` and
``crop_size``; ``mirror`` is a training-time augmentation and is ignored; options override each
value), ``Conventions`` (the values and where each came from) and ``preprocessing_record`` (the
registry's preprocessing block for them).

Caffe's rule, which the record follows: the data layer subtracts the mean (a mean pixel, or a per-pixel
mean image at the crop's offset) from 0-255 pixels in BGR order, then multiplies by ``scale``. Without a
``crop_size`` the whole image, at the net's input size, is the input (``crop_mode: squash`` with
``resize`` equal to the input size); with one, the net saw centre crops of images resized to the mean
file's size (or the size given). Imports numpy and this package's readers and graph; never
``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CaffeError
from .graph import data_layers
from .proto import Layer, NetSpec

__all__ = ["Conventions", "read_conventions", "preprocessing_record", "MEAN_ROLE"]

MEAN_ROLE = "mean"  # the registry file role of a per-pixel mean file


@dataclass(frozen=True)
class Conventions:
    """Caffe's input conventions for one net, and a note on where each value came from."""

    scale: float = 1.0  # Caffe's transform scale, applied after the mean (LeNet: 1/256)
    mean: tuple[float, ...] | None = None  # a mean pixel, BGR
    mean_file: Path | None = None  # a per-pixel mean image (.binaryproto)
    crop: bool = False  # the net saw centre crops (else the whole image at its input size)
    resize: int | None = None  # with ``crop``: the size images were resized to before cropping
    notes: tuple[str, ...] = ()


def _transform_layer(nets: list[NetSpec]) -> tuple[Layer, NetSpec] | None:
    """The first data layer (TEST phase first, structure before weights) that says how it transforms."""
    for net in nets:
        for layer in data_layers(net):
            t, d = layer.param("transform_param"), layer.param("data_param")
            if any(t.has(k) for k in ("scale", "mean_file", "mean_value", "crop_size")) or \
                    any(d.has(k) for k in ("scale", "mean_file", "crop_size")):
                return layer, net
    return None


def _find_mean_file(name: str, where: str, dirs: list[Path]) -> Path:
    """A mean file named by a data layer: as written, or beside the files, by path or by file name."""
    path = Path(name)
    candidates = [path] if path.is_absolute() else [Path.cwd() / path]
    candidates += [d / path for d in dirs] + [d / path.name for d in dirs]
    found = next((c for c in dict.fromkeys(candidates) if c.is_file()), None)
    if found is None:
        raise CaffeError(f"{where} subtracts the mean file {name!r}, which is not at "
                         f"{', '.join(str(c) for c in dict.fromkeys(candidates))}; pass --mean-file PATH, or "
                         "--mean B,G,R to use a mean pixel instead.")
    return found


def read_conventions(structure: NetSpec, weights: NetSpec, *, scale: float | None = None,
                     mean: list[float] | None = None, mean_file: str | Path | None = None,
                     crop: int | None = None, no_crop: bool = False) -> Conventions:
    """Caffe's input conventions for a net: from the options, else the files' data layer, else none.

    Args:
        structure: the net as given (a train_val prototxt carries its data layers; a deploy file none).
        weights: the ``.caffemodel`` (a solver snapshot carries the training net's data layers).
        scale: Caffe's transform scale (overrides the files').
        mean: a mean pixel, BGR (overrides the files' mean).
        mean_file: a per-pixel mean ``.binaryproto`` (overrides the files' mean).
        crop: the net saw centre crops of images resized to this size (overrides the files' crop).
        no_crop: feed the whole image even though the files name a ``crop_size``.

    Raises:
        CaffeError: the files name a mean file that cannot be found, or the options contradict.
    """
    if crop is not None and no_crop:
        raise CaffeError("--crop and --no-crop contradict each other; give one.")
    found = _transform_layer([structure, weights])
    t = found[0].param("transform_param") if found else None
    d = found[0].param("data_param") if found else None
    where = f"the data layer {found[0].name!r} of {Path(found[1].path).name}" if found else ""
    notes: list[str] = []
    if scale is None and found and (t.has("scale") or d.has("scale")):
        scale = float(t.get("scale") if t.has("scale") else d.get("scale"))
        notes.append(f"scale {scale:g} from {where}")
    elif scale is not None:
        notes.append(f"scale {scale:g} (given)")
    if scale is not None and scale <= 0:
        raise CaffeError(f"the scale must be positive, got {scale:g}.")
    mean_px, mean_path = _mean(structure, weights, t, d, where, mean, mean_file, notes)
    crop_size = int((t.get("crop_size") if t is not None and t.has("crop_size") else d.get("crop_size", 0))
                    if found else 0)
    is_crop = not no_crop and (crop is not None or crop_size > 0)
    if no_crop and crop_size:
        notes.append(f"the crop_size {crop_size} of {where} is ignored (--no-crop): the whole image is the input")
    elif crop is not None:
        notes.append(f"centre crop of images resized to {crop} (given)")
    elif crop_size:
        notes.append(f"crop_size {crop_size} from {where}: centre crops")
    return Conventions(scale=1.0 if scale is None else scale, mean=mean_px, mean_file=mean_path, crop=is_crop,
                       resize=crop, notes=tuple(notes))


def _mean(structure, weights, t, d, where, mean, mean_file, notes) -> tuple[tuple[float, ...] | None, Path | None]:
    """The mean pixel or mean file: given, else the files' ``mean_value``, else their ``mean_file``."""
    if mean is not None:
        notes.append(f"mean pixel {', '.join(f'{v:g}' for v in mean)} (given)")
        return tuple(float(v) for v in mean), None
    if mean_file is not None:
        notes.append(f"mean file {Path(mean_file).name} (given)")
        return None, Path(mean_file)
    if t is not None and t.all("mean_value"):
        values = tuple(float(v) for v in t.all("mean_value"))
        notes.append(f"mean pixel {', '.join(f'{v:g}' for v in values)} from {where}")
        return values, None
    named = (t.get("mean_file") if t is not None and t.has("mean_file") else d.get("mean_file")) if t else None
    if named:
        dirs = [Path(n.path).resolve().parent for n in (structure, weights) if n.path]
        path = _find_mean_file(named, where, dirs)
        notes.append(f"mean file {named} from {where}")
        return None, path
    notes.append("no mean in the files (mean 0; pass --mean or --mean-file to set one)")
    return None, None


def preprocessing_record(conv: Conventions, input_shape: list[int], mean_image: np.ndarray | None) -> dict[str, Any]:
    """The registry's preprocessing block for ``conv`` and a net taking ``input_shape`` (C, H, W).

    Pixels are 0-255 (``scale`` 255 on [0, 1] images) in BGR order (grey for one channel), the mean
    pixel is subtracted (or the mean image, by ``mean_file``), then Caffe's scale is applied as a
    division by ``std = 1 / scale`` (so the mean keeps its 0-255 meaning, as in Caffe).

    Raises:
        CaffeError: a mean that does not fit the channels, or a resize smaller than the input.
    """
    c, h, w = input_shape
    pixel = list(conv.mean) if conv.mean is not None else None
    if pixel is not None and len(pixel) == 1:
        pixel = pixel * c  # Caffe: one mean value stands for every channel
    if pixel is None and mean_image is not None:
        pixel = [float(v) for v in mean_image.reshape(c, -1).mean(axis=1)]
    if pixel is not None and len(pixel) != c:
        raise CaffeError(f"the mean has {len(pixel)} values; the net takes {c} channels (give one per channel).")
    side = max(h, w)
    if not conv.crop:
        resize = side
    elif conv.resize is not None:
        resize = conv.resize
    elif mean_image is not None and min(mean_image.shape[1:]) >= side:
        resize = int(mean_image.shape[1])
    else:  # Caffe's ImageNet habit: 256 for 224-227 crops, the same ratio for other sizes
        resize = 256 if 224 <= side <= 256 else round(side * 8 / 7)
    if resize < side:
        raise CaffeError(f"images cannot be resized to {resize} and centre-cropped to {h}x{w}; give a size of "
                         f"at least {side}.")
    pre: dict[str, Any] = {
        "input_size": [c, h, w], "resize": resize, "crop_mode": "squash", "interpolation": "bilinear",
        # Caffe's tools resize with OpenCV's INTER_LINEAR, which does not antialias.
        "antialias": False, "channel_order": "BGR" if c == 3 else "L" if c == 1 else "RGB",
        "scale": 255.0, "mean": pixel or [0.0] * c, "std": [1.0 / conv.scale] * c,
    }
    if mean_image is not None:
        pre["mean_file"] = MEAN_ROLE
    return pre
