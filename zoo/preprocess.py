"""Preprocessing that belongs to the weights: an entry's ``Preprocessing`` turned into a transform.

Owns: ``build_transform`` (inference: resize as the entry's ``crop_mode`` says, crop or pad to the input
size, channel order, scale, mean and std; Caffe's BGR 0-255 with a mean pixel or a per-pixel mean
image) and ``train_transform`` (augmentation with torchvision transforms v2 for fine-tuning). Inputs may
be PIL images, numpy arrays or uint8/float tensors (C,H,W).

A PIL image goes through ``zoo.pixels``, the torch-free pipeline, so the array equals what a torch-free
runtime computes and what torchvision's ``weights.transforms()`` and timm's eval transform compute for
PIL input (Pillow resizes). Tensors are resized by torch with the same geometry. Imports
torch/torchvision; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image
from torch import nn
from torchvision.transforms import v2

from zoo.registry.schema import Preprocessing

from . import pixels

__all__ = ["build_transform", "train_transform", "Geometry", "ToFloat", "Normalize"]

_INTERP = {
    "nearest": v2.InterpolationMode.NEAREST,
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
}


class Normalize(nn.Module):
    """Float (C,H,W) in [0, 1] (C = 1 or 3, RGB) -> the weights' convention.

    Reorders channels (RGB -> BGR for Caffe), multiplies by ``scale`` (255 for Caffe), subtracts the
    mean pixel or the centre crop of a per-pixel mean image, divides by ``std``: the operations of
    ``zoo.pixels.normalise``, in the same order.
    """

    def __init__(self, pre: Preprocessing, mean_image: Any = None):
        super().__init__()
        self.bgr = pre.channel_order == "BGR"
        self.scale = float(pre.scale)
        channels = pre.input_size[0]
        self.register_buffer("mean", torch.tensor(pre.mean, dtype=torch.float32).view(channels, 1, 1))
        self.register_buffer("std", torch.tensor(pre.std, dtype=torch.float32).view(channels, 1, 1))
        if mean_image is not None:
            # Caffe subtracts the mean at the crop offset: the centre of the mean image in TEST.
            self.register_buffer("mean_image", torch.from_numpy(pixels.centre_of(mean_image, pre.crop)))
        else:
            self.mean_image = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(-3)
        if self.scale != 1.0:
            x = x * self.scale
        if self.mean_image is not None and self.mean_image.shape[-2:] == x.shape[-2:]:
            x = x - self.mean_image
        else:
            x = x - self.mean
        return x / self.std


class ToFloat(v2.ToDtype):
    """uint8 -> float32 in [0, 1], dividing by 255 as torchvision's weights transforms and timm's
    ``ToTensor`` do (``v2.ToDtype`` multiplies by 1/255, which can differ in the last bit); float
    input stays as it is."""

    def __init__(self) -> None:
        super().__init__(torch.float32, scale=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            return x.to(torch.float32).div(255)
        return x.to(torch.float32)


def _channels(x: torch.Tensor, want: int) -> torch.Tensor:
    """Make the channel count match the weights: grayscale weights get L, colour weights get RGB."""
    if x.shape[-3] == want:
        return x
    if want == 1:
        return v2.functional.rgb_to_grayscale(x[..., :3, :, :])
    if x.shape[-3] == 1:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:])
    return x[..., :3, :, :]


class _Channels(nn.Module):
    def __init__(self, want: int):
        super().__init__()
        self.want = want

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _channels(x, self.want)


class Geometry(nn.Module):
    """An image at the weights' input size and channels: PIL images through ``zoo.pixels`` (uint8
    C,H,W out), arrays and tensors through torch with the same sizes and offsets (dtype kept)."""

    def __init__(self, pre: Preprocessing):
        super().__init__()
        self.pre = pre

    def forward(self, image: Any) -> torch.Tensor:
        pre = self.pre
        if isinstance(image, Image.Image):
            return torch.from_numpy(pixels.geometry(image, pre)).permute(2, 0, 1).contiguous()
        x = _channels(v2.functional.to_image(image).as_subclass(torch.Tensor), pre.input_size[0])
        height, width = x.shape[-2:]
        size = pixels.resized_size(height, width, pre)
        if size != (height, width):
            x = v2.functional.resize(x, list(size), interpolation=_INTERP[pre.interpolation],
                                     antialias=pre.antialias)
        pad, top, left = pixels.crop_or_pad(*size, pre.crop)
        if any(pad):
            fill = pixels.fill_value(pre)
            x = v2.functional.pad(x, list(pad), fill=[float(v) if x.dtype == torch.uint8 else v / 255 for v in fill])
        return x[..., top:top + pre.crop[0], left:left + pre.crop[1]]

    def extra_repr(self) -> str:
        p = self.pre
        return f"crop_mode={p.crop_mode}, resize={p.resize}, size={p.crop}, interpolation={p.interpolation}"


def build_transform(pre: Preprocessing, *, mean_image: Any = None) -> v2.Compose:
    """The inference transform: PIL image, array or tensor (C,H,W) -> float tensor of ``pre.input_size``.

    Its last two steps (``ToFloat``, ``Normalize``) also work on a uint8 batch, so a caller may run the
    first step per image and the rest per batch.

    Example:
        >>> t = build_transform(zoo.get_entry("resnet50").preprocessing)   # doctest: +SKIP
        >>> t(PIL.Image.open("cat.jpg")).shape                             # doctest: +SKIP
        torch.Size([3, 224, 224])
    """
    return v2.Compose([Geometry(pre), ToFloat(), Normalize(pre, mean_image)])


def train_transform(pre: Preprocessing, *, mean_image: Any = None, flip: bool = True,
                    scale: tuple[float, float] = (0.35, 1.0)) -> v2.Compose:
    """Augmentation for fine-tuning: random resized crop (and horizontal flip), then the weights'
    normalisation."""
    h, w = pre.crop
    steps: list[nn.Module] = [
        v2.ToImage(),
        _Channels(pre.input_size[0]),
        v2.RandomResizedCrop((h, w), scale=scale, interpolation=_INTERP[pre.interpolation], antialias=True),
    ]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [ToFloat(), Normalize(pre, mean_image)]
    return v2.Compose(steps)
