"""Helpers for the fine-tuning tests: class folders of real image files, and a tiny ZooModel.

Imported by tests/finetune/test_*.py and tests/cli/test_finetune_cli.py (by path); not a test module.
"""

from __future__ import annotations

import gzip
import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image
from torch import nn

from zoo.model import ZooModel
from zoo.registry.schema import Preprocessing

SIZE = 16
# ../shared/real beside the repository (ZOO_REAL_DIR points elsewhere); never copied into the project.
REAL = Path(os.environ.get("ZOO_REAL_DIR") or Path(__file__).resolve().parents[2] / ".." / "shared" / "real")
PRE = Preprocessing(input_size=(3, SIZE, SIZE), resize=SIZE, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def pattern(label: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """An RGB uint8 image whose class is easy to learn but not trivial: a bright band whose position
    and colour depend on the class, under noise."""
    img = rng.integers(0, 90, size=(size, size, 3)).astype(np.int16)
    band = slice((label % 4) * size // 4, (label % 4 + 1) * size // 4)
    if label % 2 == 0:
        img[band, :, label % 3] += 150
    else:
        img[:, band, label % 3] += 150
    return np.clip(img, 0, 255).astype(np.uint8)


def make_folder(root: Path, counts: dict[str, int], *, seed: int = 0, fmt: str = "png", size: int = SIZE) -> Path:
    """``root/<class>/<class>_<i>.<fmt>`` with ``counts[class]`` real image files each."""
    rng = np.random.default_rng(seed)
    for label, (name, n) in enumerate(counts.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(pattern(label, rng, size)).save(d / f"{name}_{i}.{fmt}")
    return root


def tiny_network(num_classes: int = 10, channels: int = 3) -> tuple[nn.Module, nn.Module]:
    body = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(channels, 8, 3, padding=1), bn1=nn.BatchNorm2d(8), relu1=nn.ReLU(),
        conv2=nn.Conv2d(8, 16, 3, padding=1, stride=2), bn2=nn.BatchNorm2d(16), relu2=nn.ReLU(),
        conv3=nn.Conv2d(16, 16, 3, padding=1), bn3=nn.BatchNorm2d(16), relu3=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten()))
    return body, nn.Linear(16, num_classes)


def tiny_model(num_classes: int = 10) -> ZooModel:
    """A small conv net with BatchNorm, as a ZooModel (no registry entry)."""
    body, head = tiny_network(num_classes)
    return ZooModel(body, head, num_features=16, name="tiny.test", preprocessing=PRE)


def write_lenet_entry(config_dir: Path, name: str = "lenet.tinytest", size: int = SIZE) -> str:
    """A user registry entry for the zoo's own LeNet, without weights (tests build it with
    pretrained=False), so runs made from it reload with ``zoo.load``."""
    entry = {"schema": 1, "entries": [{
        "name": name, "architecture": {"library": "zoo", "builder": "lenet",
                         "kwargs": {"channels": [8, 16], "hidden": 32}},
        "license": "MIT",
        "preprocessing": {"input_size": [1, size, size], "resize": size, "mean": [0.5], "std": [0.5],
                          "channel_order": "L"},
        "head": {"num_classes": 5},
    }]}
    folder = config_dir / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tinytest.json").write_text(json.dumps(entry))
    return name


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` as a gzipped IDX file of unsigned bytes (the format of the MNIST files)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def fmnist_subset(root: Path, train: int, test: int | None) -> Path:
    """``root/fashion-mnist/``: the first ``train`` training and ``test`` test images (and labels) of
    the real Fashion-MNIST as IDX files; ``test=None`` writes test files that are not IDX files, so a
    run that read the test split would fail. Skips the calling test when the files are absent."""
    import pytest

    from zoo.errors import DataError
    from zoo.finetune.datasets import find_fashion_mnist, read_idx

    try:
        source = find_fashion_mnist()
    except DataError:
        pytest.skip("Fashion-MNIST files absent (apt-get install dataset-fashion-mnist)")
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    for stem in ("images-idx3-ubyte", "labels-idx1-ubyte"):
        write_idx(folder / f"train-{stem}.gz", read_idx(source / f"train-{stem}.gz")[:train])
        if test is None:
            with gzip.open(folder / f"t10k-{stem}.gz", "wb") as fh:
                fh.write(b"not an IDX file: the test split must not be read")
        else:
            write_idx(folder / f"t10k-{stem}.gz", read_idx(source / f"t10k-{stem}.gz")[:test])
    return root


def real_digits(root: Path, per_class: int, test_per_class: int) -> Path:
    """root/train and root/test of real MNIST digits (28 px PNGs) from ../shared/real; skips without it."""
    import pytest

    source = REAL / "datasets" / "mnist_5k.csv.gz"
    if not source.is_file():
        pytest.skip(f"{source} is absent: the real files live in ../shared/real beside the repository "
                    "(ZOO_REAL_DIR=DIR points elsewhere)")
    table = np.loadtxt(source, delimiter=",", dtype=np.uint8)
    pixels, labels = table[:, :784].reshape(-1, 28, 28), table[:, 784]
    for cls in range(10):
        members = np.flatnonzero(labels == cls)
        for part, chosen in (("train", members[:per_class]), ("test", members[per_class:per_class + test_per_class])):
            (root / part / str(cls)).mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(pixels[i], "L").save(root / part / str(cls) / f"{i}.png")
    return root
