"""Preprocessing that belongs to the weights: an entry's ``Preprocessing`` turned into a transform.

Owns: ``build_transform`` (inference: resize shorter side, centre crop, channel order, scale, mean and
std; Caffe's BGR 0-255 with a mean pixel or a per-pixel mean image). Inputs may be PIL images, uint8 or
float tensors (C,H,W). Training augmentation is fine-tuning's concern (``zoo.finetune.augment``).
Imports torch/torchvision; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchvision.transforms import v2

from zoo.registry.schema import Preprocessing

__all__ = ["build_transform", "Normalize"]

_INTERP = {
    "nearest": v2.InterpolationMode.NEAREST,
    "bilinear": v2.InterpolationMode.BILINEAR,
    "bicubic": v2.InterpolationMode.BICUBIC,
}


class Normalize(nn.Module):
    """Float (C,H,W) in [0, 1] (C = 1 or 3, RGB) -> the weights' convention.

    Reorders channels (RGB -> BGR for Caffe), multiplies by ``scale`` (255 for Caffe), subtracts the
    mean pixel or the centre crop of a per-pixel mean image, divides by ``std``.
    """

    def __init__(self, pre: Preprocessing, mean_image: Any = None):
        super().__init__()
        self.bgr = pre.channel_order == "BGR"
        self.scale = float(pre.scale)
        channels = pre.input_size[0]
        self.register_buffer("mean", torch.tensor(pre.mean, dtype=torch.float32).view(channels, 1, 1))
        self.register_buffer("std", torch.tensor(pre.std, dtype=torch.float32).view(channels, 1, 1))
        if mean_image is not None:
            mi = torch.as_tensor(mean_image, dtype=torch.float32)
            h, w = pre.crop
            top, left = (mi.shape[1] - h) // 2, (mi.shape[2] - w) // 2
            if top < 0 or left < 0:
                raise ValueError(f"mean image {tuple(mi.shape)} is smaller than the crop {(h, w)}")
            # Caffe subtracts the mean at the crop offset: the centre of the mean image in TEST.
            mi = mi[:, top:top + h, left:left + w].contiguous()
            self.register_buffer("mean_image", mi)
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


def _to_mode(pre: Preprocessing) -> nn.Module:
    """Make the channel count match the weights: grayscale weights get L, colour weights get RGB."""
    want = pre.input_size[0]

    def convert(x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3] == want:
            return x
        if want == 1:
            return v2.functional.rgb_to_grayscale(x[..., :3, :, :])
        if x.shape[-3] == 1:
            return x.expand(*x.shape[:-3], 3, *x.shape[-2:])
        return x[..., :3, :, :]

    return v2.Lambda(convert)


def build_transform(pre: Preprocessing, *, mean_image: Any = None) -> v2.Compose:
    """The inference transform: PIL image or tensor (C,H,W) -> float tensor of ``pre.input_size``.

    Example:
        >>> t = build_transform(zoo.get_entry("resnet50").preprocessing)   # doctest: +SKIP
        >>> t(PIL.Image.open("cat.jpg")).shape                             # doctest: +SKIP
        torch.Size([3, 224, 224])
    """
    h, w = pre.crop
    return v2.Compose([
        v2.ToImage(),
        _to_mode(pre),
        v2.Resize(pre.resize, interpolation=_INTERP[pre.interpolation], antialias=True),
        v2.CenterCrop((h, w)),
        v2.ToDtype(torch.float32, scale=True),
        Normalize(pre, mean_image),
    ])

