"""``zoo predict`` and ``zoo validate`` through the real entry point (in process), with a registry name and a
saved model folder, on real image files, a built-in data set's files and an MNIST-style CSV."""

from __future__ import annotations

import csv
import gzip
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from ftdata import make_folder, pattern  # noqa: E402
from test_finetune_cli import zoo_cli  # noqa: E402

import zoo  # noqa: E402
from zoo.factory import save_model  # noqa: E402
from zoo.images import open_image  # noqa: E402

LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def write_entry(config_dir: Path, name: str, size: int, labels: list[str] | None) -> str:
    """A user registry entry for the zoo's own LeNet (random weights: no file) with ``labels``."""
    head: dict = {"num_classes": len(labels) if labels else 10}
    if labels:
        head["labels"] = labels
    entry = {"schema": 1, "entries": [{
        "name": name, "license": "MIT", "head": head,
        "architecture": {"library": "zoo", "builder": "lenet", "kwargs": {"channels": [8, 16], "hidden": 32}},
        "preprocessing": {"input_size": [1, size, size], "resize": size, "mean": [0.5], "std": [0.5],
                          "channel_order": "L"}}]}
    folder = config_dir / "registry"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps(entry))
    return name


@pytest.fixture
def saved(tmp_path):
    """A saved model folder (fixed weights) whose entry has Fashion-MNIST's labels, 16 px input."""
    torch.set_num_threads(2)
    name = write_entry(Path(os.environ["ZOO_CONFIG_DIR"]), "lenet.labelled", 16, LABELS)
    torch.manual_seed(0)
    return save_model(zoo.load(name), tmp_path / "model"), name


def test_predict_a_folder_with_bad_files_json_and_csv(tmp_path, capsys, saved):
    folder, name = saved
    data = make_folder(tmp_path / "photos", {"x": 3, "y": 2})
    (data / "y" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    code, out, err = zoo_cli(capsys, "predict", folder, data, "--top-k", "3", "--csv", tmp_path / "p.csv", "-q")
    assert code == 0, err
    assert "could not read" in err and "cut.png" in err and "classified 5 of 6 image(s)" in err
    good = sorted(data.glob("*/*_*.png"))
    model = zoo.load(folder)
    with torch.no_grad():
        probs = torch.softmax(model(torch.stack([model.transforms(open_image(p, mode="L")) for p in good])), 1)
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    for path, p in zip(good, probs, strict=True):
        value, index = p.max(0)
        assert lines[str(path)].startswith(f"{LABELS[int(index)]} {float(value):.3f}, ")
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 6 and sum(1 for r in rows if r["error"]) == 1
    assert all(r["label_3"] in LABELS for r in rows if not r["error"])

    code, out, err = zoo_cli(capsys, "predict", name, good[0], "--json", "-k", "2")  # by registry name
    assert code == 0, err
    (result,) = map(json.loads, out.splitlines())
    assert result["image"] == str(good[0]) and [t["label"] in LABELS for t in result["top"]] == [True, True]


def test_predict_exits_1_when_nothing_is_classified_or_a_path_is_missing(tmp_path, capsys, saved):
    folder, _ = saved
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 nothing")
    code, out, err = zoo_cli(capsys, "predict", folder, bad)
    assert code == 1 and "bad.jpg" in err and "none of the 1 image(s) could be read" in err
    code, out, err = zoo_cli(capsys, "predict", folder, tmp_path / "nowhere.jpg")
    assert code == 1 and "nowhere.jpg: no such file or folder" in err
    (tmp_path / "empty").mkdir()
    code, out, err = zoo_cli(capsys, "predict", folder, tmp_path / "empty")
    assert code == 1 and "no image files" in err


def test_validate_a_folder_text_json_and_unknown_names(tmp_path, capsys, saved):
    folder, _ = saved
    data = make_folder(tmp_path / "val", {"ankle_boot": 4, "trouser": 4, "bag": 4})
    code, out, err = zoo_cli(capsys, "validate", folder, data, "-q")
    assert code == 0, err
    assert f"on {data.resolve()}: 12 images, 3 classes" in out and "top-1 " in out and "top-5 " in out
    assert "Ankle boot" in out and "confusion" in out
    code, out, err = zoo_cli(capsys, "validate", folder, data, "--json")
    report = json.loads(out)
    assert code == 0 and report["n"] == 12 and report["per_class"]["Ankle boot"]["support"] == 4
    assert 0 <= report["top1"] <= report["top5"] <= 100 and report["loss"] > 0
    make_folder(data, {"socks": 2, "hats": 2})
    code, out, err = zoo_cli(capsys, "validate", folder, data)
    assert code == 1 and "'socks'" in err and "'hats'" in err and "--known-only" in err
    code, out, err = zoo_cli(capsys, "validate", folder, data, "--known-only", "--limit", "8", "--json")
    report = json.loads(out)
    # hats and socks left out, then 8 of the 12 known images spread evenly over them
    assert code == 0 and report["data"]["total"] == 16 and report["data"]["unknown_class_images"] == 4
    assert report["n"] == 8 and report["per_class"]["Trouser"]["support"] == 3


def test_validate_mnist_files_and_a_csv(tmp_path, capsys, monkeypatch):
    """torchvision's MNIST files (written here, uncompressed IDX) and the same digits as a gzip CSV give
    the same figures; a model without labels maps the digit classes to its outputs."""
    torch.set_num_threads(2)
    name = write_entry(Path(os.environ["ZOO_CONFIG_DIR"]), "lenet.digits", 28, None)
    torch.manual_seed(1)
    folder = save_model(zoo.load(name), tmp_path / "model")
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 10
    images = np.stack([pattern(int(y), rng, 28)[..., int(y) % 3] for y in labels])
    raw = Path(os.environ["ZOO_HOME"]) / "datasets" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, array in (("t10k-images-idx3-ubyte", images), ("t10k-labels-idx1-ubyte", labels.astype(np.uint8)),
                        ("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels.astype(np.uint8))):
        dims = b"".join(struct.pack(">I", d) for d in array.shape)  # IDX: magic, dims, bytes
        (raw / stem).write_bytes(struct.pack(">I", 0x800 + array.ndim) + dims + array.astype(np.uint8).tobytes())
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    code, out, err = zoo_cli(capsys, "validate", folder, "mnist", "--json")
    assert code == 0, err
    from_files = json.loads(out)
    assert from_files["n"] == 40 and from_files["data"]["name"] == "mnist test"

    with gzip.open(tmp_path / "digits.csv.gz", "wt", newline="") as fh:
        csv.writer(fh).writerows([[*img.ravel().tolist(), int(y)] for img, y in zip(images, labels, strict=True)])
    code, out, err = zoo_cli(capsys, "validate", folder, tmp_path / "digits.csv.gz", "--json")
    assert code == 0, err
    from_csv = json.loads(out)
    assert from_csv["data"]["kind"] == "csv" and from_csv["labels"] == [str(i) for i in range(10)]
    for key in ("n", "top1", "top5", "confusion"):
        assert from_csv[key] == from_files[key]
    assert abs(from_csv["loss"] - from_files["loss"]) < 1e-6
    code, out, err = zoo_cli(capsys, "validate", folder, tmp_path / "digits.csv.gz", "--limit", "10", "--json")
    limited = json.loads(out)
    assert code == 0 and limited["n"] == 10 and limited["data"]["total"] == 40
