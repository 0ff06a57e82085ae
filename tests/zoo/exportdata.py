"""Helpers for the export and runtime tests: real image files, and a model fed at a smaller size.

Imported by tests/zoo/test_export.py and test_runtime.py (by path); not a test module.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zoo.model import ZooModel


def photos(folder: Path, n: int = 4, *, seed: int = 0) -> list[Path]:
    """``n`` real image files of different sizes and formats: smooth gradients under noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        h, w = int(rng.integers(40, 300)), int(rng.integers(40, 300))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], axis=-1)
        pixels = np.clip(base + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"photo{i}.{'png' if i % 2 else 'jpg'}"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def shrink(model: ZooModel, size: int) -> ZooModel:
    """The model fed at ``size`` x ``size`` (convolutional nets take any size): a faster test."""
    pre = model.preprocessing
    model.preprocessing = dataclasses.replace(pre, input_size=(pre.input_size[0], size, size),
                                              resize=max(size, round(size * pre.resize / pre.input_size[1])))
    return model


def settle_batchnorm(model: ZooModel, seed: int = 0) -> ZooModel:
    """Random weights with batch-norm statistics measured on a batch of noise images, as training
    would leave them: without this, deep random nets (MobileNetV3, EfficientNet) give logits near
    1e-10 and a parity check against them means little."""
    torch.manual_seed(seed)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches seen
    model.train()
    with torch.no_grad():
        model(torch.randn(8, *model.input_size))
    return model.eval()
