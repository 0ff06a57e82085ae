"""An image to the array the weights expect, with numpy and Pillow only (no torch).

Owns: the geometry of an entry's ``Preprocessing`` (``resized_size``: the size an image is resized to
under each ``crop_mode``; ``crop_or_pad``: the centre crop, padded where the image is smaller) and the
whole inference pipeline on a PIL image (``to_array``: mode, resize, crop, channel order, scale,
mean/std or a Caffe mean image, to a float32 C,H,W array). ``zoo.preprocess`` runs this same code for
PIL input, so the torch path and a torch-free runtime give identical arrays.

The numbers follow the libraries' own eval transforms on PIL images, step for step, so a zoo entry
made from a library's metadata is fed exactly as the library feeds it:

* ``center``: the shorter side to ``resize`` (the longer one truncated as torchvision's ``Resize(int)``
  does), then a centre crop (torchvision's ``CenterCrop`` offsets, zero padding if ever needed).
* ``squash``: both sides to ``resize`` (aspect not kept), then the centre crop (timm's ``squash``).
* ``border``: the longer side to ``resize`` (timm's ``ResizeKeepRatio(longest=1)``), then padded to
  the input size with the mean colour (timm's ``CenterCropOrPad``).

A non-square input size scales ``resize`` to the crop's shape (``resize`` is then the longer side's
target), as timm's ``ResizeKeepRatio`` does for such sizes.

Imports numpy, PIL and ``zoo.registry`` only: no torch, torchvision or timm.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image

from zoo.registry.schema import Preprocessing

__all__ = ["RESAMPLE", "image_mode", "resized_size", "crop_or_pad", "fill_value", "geometry", "normalise",
           "centre_of", "to_array"]

# Pillow's filters for the schema's interpolation names (what torchvision passes to PIL for each).
RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def image_mode(pre: Preprocessing) -> str:
    """The PIL mode the weights take: ``L`` for one input channel, else ``RGB``."""
    return "L" if pre.input_size[0] == 1 else "RGB"


def _scale_size(pre: Preprocessing) -> tuple[int, int]:
    """The (height, width) that ``resize`` stands for: square crops give (resize, resize); other crops
    keep their shape with the longer side at ``resize``."""
    crop_h, crop_w = pre.crop
    if crop_h == crop_w:
        return pre.resize, pre.resize
    longer = max(crop_h, crop_w)
    return math.floor(crop_h * pre.resize / longer), math.floor(crop_w * pre.resize / longer)


def resized_size(height: int, width: int, pre: Preprocessing) -> tuple[int, int]:
    """The (height, width) an image of ``height`` x ``width`` is resized to before the crop.

    Example:
        >>> from zoo.registry.schema import Preprocessing
        >>> resized_size(480, 640, Preprocessing(input_size=(3, 224, 224), resize=256))
        (256, 341)
    """
    scale_h, scale_w = _scale_size(pre)
    if pre.crop_mode == "squash":
        return scale_h, scale_w
    if pre.crop_mode == "center" and scale_h == scale_w:
        # torchvision's Resize(int): the shorter side exactly, the longer one truncated (not rounded).
        if width <= height:
            return int(scale_h * height / width), scale_h
        return scale_h, int(scale_h * width / height)
    # timm's ResizeKeepRatio: one ratio for both sides, from the shorter side (center) or the longer
    # side (border), each side rounded.
    ratio_h, ratio_w = height / scale_h, width / scale_w
    ratio = max(ratio_h, ratio_w) if pre.crop_mode == "border" else min(ratio_h, ratio_w)
    return round(height / ratio), round(width / ratio)


def crop_or_pad(height: int, width: int, crop: tuple[int, int]) -> tuple[tuple[int, int, int, int], int, int]:
    """Where the centre crop of a ``height`` x ``width`` image lies: ``((left, top, right, bottom)
    padding, top, left)``, with the padding applied first (torchvision's ``center_crop``)."""
    crop_h, crop_w = crop
    pad = ((crop_w - width) // 2 if crop_w > width else 0, (crop_h - height) // 2 if crop_h > height else 0,
           (crop_w - width + 1) // 2 if crop_w > width else 0, (crop_h - height + 1) // 2 if crop_h > height else 0)
    height, width = height + pad[1] + pad[3], width + pad[0] + pad[2]
    # int(round(...)): Python's round, half to even, exactly as torchvision computes the offsets.
    return pad, int(round((height - crop_h) / 2.0)), int(round((width - crop_w) / 2.0))


def fill_value(pre: Preprocessing) -> tuple[int, ...]:
    """The pixel value (0-255, in the image's channel order) that ``border`` pads with: the mean colour,
    as timm fills (``round(255 * mean)``); 0 for the other modes, as torchvision pads."""
    if pre.crop_mode != "border":
        return (0,) * pre.input_size[0]
    mean = pre.mean[::-1] if pre.channel_order == "BGR" else pre.mean
    return tuple(round(255 * m / pre.scale) for m in mean)


def geometry(image: Image.Image, pre: Preprocessing) -> np.ndarray:
    """``image`` in the weights' mode, resized and cropped (or padded) to the input size: uint8 H,W,C.

    Raises:
        ValueError: an image with no pixels.
    """
    if image.width < 1 or image.height < 1:
        raise ValueError(f"an image of {image.width}x{image.height} pixels has nothing to resize")
    mode = image_mode(pre)
    if image.mode != mode:
        image = image.convert(mode)
    height, width = resized_size(image.height, image.width, pre)
    if (height, width) != (image.height, image.width):
        image = image.resize((width, height), RESAMPLE[pre.interpolation])
    array = np.array(image, dtype=np.uint8)  # a writable copy: callers may hand it to torch
    if array.ndim == 2:
        array = array[:, :, None]
    (left, top, right, bottom), y, x = crop_or_pad(height, width, pre.crop)
    if left or top or right or bottom:
        fill = fill_value(pre)
        padded = np.empty((height + top + bottom, width + left + right, array.shape[2]), dtype=np.uint8)
        padded[...] = np.asarray(fill, dtype=np.uint8)
        padded[top:top + height, left:left + width] = array
        array = padded
    crop_h, crop_w = pre.crop
    return np.ascontiguousarray(array[y:y + crop_h, x:x + crop_w])


def centre_of(mean_image: Any, crop: tuple[int, int]) -> np.ndarray:
    """The centre ``crop`` of a C,H,W per-pixel mean image (where Caffe subtracts it in TEST).

    Raises:
        ValueError: the mean image is smaller than the crop.
    """
    mean_image = np.asarray(mean_image, dtype=np.float32)
    crop_h, crop_w = crop
    top, left = (mean_image.shape[1] - crop_h) // 2, (mean_image.shape[2] - crop_w) // 2
    if top < 0 or left < 0:
        raise ValueError(f"mean image {tuple(mean_image.shape)} is smaller than the crop {(crop_h, crop_w)}")
    return np.ascontiguousarray(mean_image[:, top:top + crop_h, left:left + crop_w])


def normalise(pixels: np.ndarray, pre: Preprocessing, *, mean_image: Any = None) -> np.ndarray:
    """uint8 H,W,C pixels -> float32 C,H,W in the weights' convention.

    The same float32 operations, in the same order, as torchvision's ``to_tensor`` / ``normalize``
    (divide by 255, subtract, divide) and the zoo's ``Normalize``: channel order, ``scale``, then the
    mean pixel (or the centre of ``mean_image``) and ``std``.
    """
    x = pixels.astype(np.float32).transpose(2, 0, 1) / np.float32(255)
    if pre.channel_order == "BGR":
        x = x[::-1]
    if pre.scale != 1.0:
        x = x * np.float32(pre.scale)
    if mean_image is not None:
        x = x - centre_of(mean_image, pre.crop)
    else:
        x = x - np.asarray(pre.mean, dtype=np.float32).reshape(-1, 1, 1)
    x = x / np.asarray(pre.std, dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray(x, dtype=np.float32)


def to_array(image: Image.Image | np.ndarray, pre: Preprocessing, *, mean_image: Any = None) -> np.ndarray:
    """The whole inference preprocessing: an image -> float32 C,H,W of ``pre.input_size``.

    Args:
        image: a PIL image (any mode Pillow converts to RGB or L), or a uint8 H,W,C / H,W array.
        pre: the entry's preprocessing.
        mean_image: a Caffe per-pixel mean image (C,H,W, at least the crop's size), used instead of
            the mean pixel.

    Returns:
        A float32 array of shape ``pre.input_size``.

    Example:
        >>> from zoo.registry.schema import Preprocessing
        >>> pre = Preprocessing(input_size=(3, 224, 224), resize=256)
        >>> to_array(Image.new("RGB", (640, 480)), pre).shape
        (3, 224, 224)
    """
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    return normalise(geometry(image, pre), pre, mean_image=mean_image)
