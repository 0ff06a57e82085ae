"""``zoo predict`` and ``zoo validate`` on real weights made by other people (../shared/real): torchvision's
ImageNet MobileNetV2 served through a user registry entry and a mirror folder, and Caffe's LeNet on real
MNIST digits against OpenCV's Caffe runtime. Skipped, with the reason, where the files are absent.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_finetune_cli import zoo_cli  # noqa: E402

import zoo  # noqa: E402

# ../shared/real beside the repository (ZOO_REAL_DIR points elsewhere); never copied into the project.
REAL = Path(os.environ.get("ZOO_REAL_DIR") or Path(__file__).resolve().parents[2] / ".." / "shared" / "real")
MOBILENET = "mobilenet_v2-b0353104.pth"
# The photos torchvision's own mobilenet_v2 with these weights gets right (the class in its top 5).
CLEAR_PHOTOS = {"chelsea.png": "tabby", "coffee.png": "espresso", "rocket.jpg": "missile",
                "motorcycle_left.png": "moped", "orange.jpg": "orange", "squirrel_cls.jpg": "fox squirrel",
                "grace_hopper.jpg": "military uniform", "china.jpg": "palace"}
# Each LeNet with the file that carries its data layer's convention (scale 1/256): everpeace's train_test
# prototxt; ethereon's has only a deploy file, and its snapshot stores the training net.
LENETS = {"lenet_everpeace": ("lenet_train_test.prototxt", "--input", "1,28,28"), "lenet_ethereon": ("lenet.prototxt",)}


def need(*parts: str) -> Path:
    path = REAL.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent: the real files live in ../shared/real beside the repository "
                    "(ZOO_REAL_DIR=DIR points elsewhere)")
    return path


@pytest.fixture
def mobilenet(tmp_path, monkeypatch):
    """The real weights as a user registry entry, served only by a mirror folder (offline)."""
    weights = need("torch", MOBILENET)
    name = "mobilenet_v2.real_in1k"
    entry = {"schema": 1, "entries": [{
        "name": name, "architecture": {"library": "torchvision", "builder": "mobilenet_v2", "kwargs": {}},
        "files": [{"role": "weights", "filename": MOBILENET, "format": "pth",
                   "checksum": {"sha256-prefix": "b0353104"},
                   "sources": [{"url": f"https://download.pytorch.org/models/{MOBILENET}"}]}],
        "license": "BSD-3-Clause",
        "preprocessing": {"input_size": [3, 224, 224], "resize": 256, "interpolation": "bilinear",
                          "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "channel_order": "RGB"},
        "head": {"num_classes": 1000, "labels": "imagenet-1k", "classifier": "classifier.1"}}]}
    (tmp_path / "entries.json").write_text(json.dumps(entry))
    mirror = tmp_path / "mirror" / name
    mirror.mkdir(parents=True)
    (mirror / MOBILENET).symlink_to(weights)
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "entries.json"))
    monkeypatch.setenv("ZOO_MIRROR", str(tmp_path / "mirror"))
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    return name, weights


@pytest.mark.slow
def test_real_mobilenet_equals_torchvision_and_predicts_the_clear_photos(mobilenet, capsys):
    import torchvision
    from torchvision.models import MobileNet_V2_Weights

    from zoo.images import open_image

    name, weights = mobilenet
    torch.set_num_threads(2)
    theirs = torchvision.models.mobilenet_v2()
    theirs.load_state_dict(torch.load(weights, weights_only=True))
    theirs.eval()
    ours = zoo.load(name)
    assert ours.labels == tuple(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"])
    photos = sorted(need("photos").iterdir())
    tv_transform = MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    x = torch.stack([tv_transform(open_image(p)) for p in photos])
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert torch.allclose(got, expected, rtol=0, atol=1e-5 * float(expected.abs().max()))

    code, out, err = zoo_cli(capsys, "predict", name, *[need("photos", p) for p in CLEAR_PHOTOS], "--json")
    assert code == 0, err
    top5 = {Path(r["image"]).name: [t["label"] for t in r["top"]] for r in map(json.loads, out.splitlines())}
    assert set(top5) == set(CLEAR_PHOTOS) and all(len(v) == 5 for v in top5.values())
    missed = {photo: top5[photo] for photo, label in CLEAR_PHOTOS.items() if label not in top5[photo]}
    assert not missed, f"not in the top 5: {missed}"
    # The zoo's own preprocessing ranks like torchvision's: the same top-1 on every clear photo.
    tv_top1 = {p.name: ours.labels[int(i)] for p, i in zip(photos, expected.argmax(1), strict=True)}
    assert all(top5[photo][0] == tv_top1[photo] for photo in CLEAR_PHOTOS)


def _opencv_lenet_accuracy(lenet: Path, images: np.ndarray, labels: np.ndarray) -> float:
    """LeNet run by OpenCV's Caffe runtime, fed Caffe's way: the 28x28 digit scaled by 1/256."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV is not installed: pip install 'opencv-python-headless<5'")
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
        pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer (removed in 5.x)")
    net = cv2.dnn.readNetFromCaffe(str(lenet / "lenet.prototxt"), str(lenet / "lenet_iter_10000.caffemodel"))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    correct = 0
    for start in range(0, len(images), 500):
        batch = images[start:start + 500]
        net.setInput(cv2.dnn.blobFromImages(list(batch), scalefactor=1 / 256))
        correct += int((net.forward().reshape(len(batch), -1).argmax(1) == labels[start:start + 500]).sum())
    return 100.0 * correct / len(images)


@pytest.mark.slow
@pytest.mark.parametrize("folder", sorted(LENETS))
def test_validate_imported_lenet_on_real_digits_matches_opencv(folder, tmp_path, capsys):
    from zoo.finetune.validate import read_digits_csv

    digits = need("datasets", "mnist_5k.csv.gz")
    prototxt, *options = LENETS[folder]
    lenet = need("caffe", folder, prototxt).parent
    torch.set_num_threads(2)
    out = tmp_path / "lenet"
    # No --scale: the import reads the data layer's convention from the files.
    code, _, err = zoo_cli(capsys, "import-caffe", lenet / prototxt, lenet / "lenet_iter_10000.caffemodel",
                           *options, "--out", out)
    assert code == 0, err
    code, text, err = zoo_cli(capsys, "validate", out, digits, "--json")
    assert code == 0, err
    report = json.loads(text)
    assert report["n"] == 5000 and report["data"]["kind"] == "csv" and not report["skipped"]
    assert report["labels"] == [str(i) for i in range(10)]
    assert report["top1"] >= 99.7
    images, labels = read_digits_csv(digits)
    reference = _opencv_lenet_accuracy(lenet, images, labels)
    print(f"{folder} on 5,000 real MNIST digits: zoo validate {report['top1']:.2f}%, OpenCV {reference:.2f}%")
    assert abs(report["top1"] - reference) <= 0.05
