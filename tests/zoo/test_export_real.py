"""Exports of real Caffe nets trained by other people (../shared/real), run by ``zoo.runtime`` on real
inputs: its predictions equal the torch model's, its inner-layer features equal the Extractor's, and
its accuracy on real MNIST digits equals the torch model's.

CIFAR-10 'full' has Caffe's AVE pooling and LRN and is fed BGR 0-255 less the mean pixel; LeNet is grey,
scaled by 1/256 as its data layer says. Both stress the preprocessing the runtime reads from
``preprocessing.json`` (channel order, pixel scale, mean, grey).
"""

from __future__ import annotations

import csv
import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.caffe import import_caffe
from zoo.export_dir import ExportDir
from zoo.images import open_image

for _module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_module, reason="the export extra is not installed: pip install 'zoo[export]'")

from zoo.runtime import Classifier, Features  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_export import TOLERANCE, independent_check  # noqa: E402

# ../shared/real beside the repository (ZOO_REAL_DIR points elsewhere); never copied into the project.
REAL = Path(os.environ.get("ZOO_REAL_DIR") or Path(__file__).resolve().parents[2] / ".." / "shared" / "real")
CIFAR_MEAN_BGR = [113.9, 123.0, 125.3]  # ../shared/real/README.md; the mean file the files name is absent


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def real() -> Path:
    if not (REAL / "caffe").is_dir():
        pytest.skip(f"the real files are not at {REAL} (../shared/real beside the repository; "
                    "ZOO_REAL_DIR=DIR points elsewhere)")
    return REAL


def photos(real: Path) -> list[Path]:
    return sorted(p for p in (real / "photos").iterdir() if p.suffix in (".jpg", ".png"))


def digit_files(real: Path, folder: Path, n: int) -> tuple[list[Path], np.ndarray]:
    """The first ``n`` real MNIST digits (784 pixel columns then the label) written as PNG files."""
    with gzip.open(real / "datasets" / "mnist_5k.csv.gz", "rt", newline="") as fh:
        rows = [row for _, row in zip(range(n), csv.reader(fh), strict=False)]
    folder.mkdir()
    paths = []
    for i, row in enumerate(rows):
        paths.append(folder / f"{i:04d}.png")
        Image.fromarray(np.array(row[:784], dtype=np.uint8).reshape(28, 28)).save(paths[-1])
    return paths, np.array([int(row[784]) for row in rows])


def torch_top(model, images: list[Path], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The torch model's top-k indices and probabilities through the zoo's own loader and transform
    (``zoo predict`` takes run folders only; an imported net is a saved model)."""
    with torch.inference_mode():
        x = torch.stack([model.transforms(open_image(p, mode=model.image_mode)) for p in images])
        top = model(x).softmax(1).topk(k)
    return top.indices.numpy(), top.values.numpy()


def test_caffe_cifar10_full_runtime_equals_torch_and_the_extractor(real, tmp_path):
    base = real / "caffe" / "cifar10_everpeace"
    imported = import_caffe(base / "cifar10_full_iter_70000.caffemodel", base / "cifar10_full.prototxt",
                            out_dir=tmp_path / "imported", mean=CIFAR_MEAN_BGR,
                            labels=["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                                    "ship", "truck"])
    model = zoo.load(imported)
    exported = zoo.export(imported, tmp_path / "export")
    print(f"cifar10_full: {exported.parity.describe()}")
    assert exported.parity.passed
    spec = ExportDir(exported.path).read_spec()
    assert (spec.preprocessing.channel_order, spec.preprocessing.scale) == ("BGR", 255.0)
    images = photos(real)
    assert independent_check(model, exported.path, images) <= TOLERANCE
    indices, probabilities = torch_top(model, images, 3)
    got = Classifier(exported.path).predict(images, top_k=3)
    assert [r["image"] for r in got] == [str(p) for p in images]
    assert [[t["index"] for t in r["top"]] for r in got] == indices.tolist()
    assert [[t["label"] for t in r["top"]] for r in got] == [[model.labels[i] for i in row] for row in indices]
    assert np.allclose([[t["probability"] for t in r["top"]] for r in got], probabilities, atol=1e-5)
    layer = model.layer_names()[len(model.layer_names()) // 2]  # an inner layer, whatever Caffe named it
    inner = zoo.export(imported, tmp_path / "inner", layer=layer)
    assert inner.parity.passed
    mine = Features(inner.path)(images)
    theirs = zoo.Extractor(model, layer=layer, freeze=False, num_workers=0)(images)
    assert mine.shape == theirs.shape
    assert np.abs(mine - theirs).max() <= 1e-4 * np.abs(theirs).max()


def test_caffe_lenet_runtime_scores_like_torch_on_real_digits(real, tmp_path):
    base = real / "caffe" / "lenet_everpeace"
    imported = import_caffe(base / "lenet_iter_10000.caffemodel", base / "lenet_train_test.prototxt",
                            out_dir=tmp_path / "imported", input_shape=(1, 28, 28),
                            labels=[str(d) for d in range(10)])
    model = zoo.load(imported)
    exported = zoo.export(imported, tmp_path / "export")
    print(f"lenet_everpeace: {exported.parity.describe()}")
    assert exported.parity.passed
    paths, labels = digit_files(real, tmp_path / "digits", 500)
    with torch.inference_mode():
        batch = torch.stack([model.transforms(Image.open(p)) for p in paths])
        theirs = model(batch).argmax(1).numpy()
    mine = Classifier(exported.path, batch_size=64).logits(paths).argmax(1)
    assert (mine == theirs).all()
    accuracy = float((mine == labels).mean())
    print(f"lenet_everpeace through zoo.runtime: {accuracy:.1%} on {len(labels)} real MNIST digits")
    assert accuracy >= 0.98
