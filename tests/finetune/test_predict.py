"""Prediction and validation with any model (``zoo.finetune.predict``, ``zoo.finetune.validate``): figures
checked against the model's own forward pass on real image files, class names mapped to labels, the
MNIST-style CSV reader, and bad files reported instead of raised."""

from __future__ import annotations

import csv
import gzip
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftdata import make_folder, tiny_network  # noqa: E402

from zoo.errors import ConfigError, DataError  # noqa: E402
from zoo.finetune.predict import class_labels, predict, write_predictions_csv  # noqa: E402
from zoo.finetune.validate import (  # noqa: E402
    map_classes,
    normalise_name,
    read_digits_csv,
    read_labelled,
    validate,
)
from zoo.images import open_image  # noqa: E402
from zoo.model import ZooModel  # noqa: E402
from zoo.registry.schema import Preprocessing  # noqa: E402

PRE = Preprocessing(input_size=(3, 16, 16), resize=16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
FASHION = ("T-shirt/top", "Trouser", "Pullover", "Ankle boot", "Bag")


def labelled_model(labels=FASHION) -> ZooModel:
    torch.manual_seed(0)
    body, head = tiny_network(len(labels))
    return ZooModel(body, head, num_features=16, name="tiny.labelled", preprocessing=PRE, labels=labels).eval()


def logits_of(model: ZooModel, paths) -> torch.Tensor:
    x = torch.stack([model.transforms(open_image(p)) for p in paths])
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("names, labels, expected", [
    (["Trouser", "ankle_boot", "T_SHIRT_TOP", "bag"], FASHION, [1, 3, 0, 4]),
    (["Ankle  Boot", "pull-over"], FASHION, [3, 2]),
    (["3", "0"], ("0", "1", "2", "3"), [3, 0]),
    (["3", "0"], None, [3, 0]),  # no labels: output indices
])
def test_class_names_map_to_labels_loosely(names, labels, expected):
    assert map_classes(names, labels, num_outputs=5) == expected
    assert normalise_name("Ankle boot") == normalise_name("ankle_boot") == "ankleboot"


def test_names_that_do_not_map_are_listed_or_left_out():
    with pytest.raises(DataError, match=r"2 of the data's 3 class names.*'socks'.*'trousers' \(nearest: 'Trouser'\)"):
        map_classes(["socks", "Bag", "trousers"], FASHION)
    with pytest.raises(DataError, match=r"'socks'\. Pass --known-only") as refused:  # a data set's names are fixed
        map_classes(["socks", "Bag"], FASHION, folders=False)
    assert "Rename" not in str(refused.value)
    assert map_classes(["socks", "Bag"], FASHION, known_only=True) == [None, 4]
    with pytest.raises(DataError, match="output indices 0..4; '7' is not"):
        map_classes(["1", "7"], None, num_outputs=5)
    with pytest.raises(DataError, match="match none"):  # two labels the same once normalised: no guess
        map_classes(["ab"], ("a b", "a_b"))


def test_predict_ranks_like_the_forward_pass_and_reports_bad_files(tmp_path):
    model = labelled_model()
    data = make_folder(tmp_path / "data", {"a": 3, "b": 3})
    (data / "a" / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (data / "b" / "notes.jpg").write_text("not an image")  # refused on sight by the folder walk
    good = sorted(data.glob("*/*_*.png"))
    results = predict(model, [data], top_k=3, device="cpu")
    by_name = {Path(r["image"]).name: r for r in results}
    assert set(by_name) == {p.name for p in good} | {"cut.png", "notes.jpg"}
    assert "error" in by_name["cut.png"] and "not an image" in by_name["notes.jpg"]["error"]
    probs = torch.softmax(logits_of(model, good), dim=1)
    for path, p in zip(good, probs, strict=True):
        top = by_name[path.name]["top"]
        assert [t["index"] for t in top] == p.topk(3).indices.tolist()
        assert [t["label"] for t in top] == [FASHION[i] for i in p.topk(3).indices.tolist()]
        assert all(math.isclose(t["probability"], float(p[t["index"]]), abs_tol=1e-5) for t in top)
    # In memory and in order; k is capped at the number of classes.
    again = predict(model, [Image.open(good[0]), good[1]], top_k=50, device="cpu")
    assert len(again[0]["top"]) == 5 and again[1]["top"] == by_name[good[1].name]["top"][:1] + again[1]["top"][1:]

    out = write_predictions_csv(results, tmp_path / "p.csv", top_k=3)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == len(results) and rows[0].keys() >= {"path", "label_1", "probability_3", "error"}
    row = next(r for r in rows if r["path"].endswith(good[0].name))
    assert row["label_1"] == by_name[good[0].name]["top"][0]["label"] and row["error"] == ""
    assert next(r for r in rows if r["path"].endswith("cut.png"))["label_1"] == ""


def test_a_feature_backbone_has_no_classes():
    body, _ = tiny_network(3)
    backbone = ZooModel(body, torch.nn.Identity(), num_features=16, name="tiny.features", preprocessing=PRE)
    with pytest.raises(ConfigError, match="no classifier.*zoo extract"):
        class_labels(backbone)
    unlabelled = ZooModel(*tiny_network(4), num_features=16, name="tiny.plain", preprocessing=PRE)
    assert class_labels(unlabelled) == ["0", "1", "2", "3"]
    # A classifier inside the body (Caffe's NIN, SqueezeNet): its entry's classes are the body's width.
    from zoo.registry.schema import Architecture, Entry, Head

    entry = Entry(name="tiny.nin", architecture=Architecture("zoo", "tiny"), files=(), license="MIT",
                  preprocessing=PRE, head=Head(num_classes=16))
    in_body = ZooModel(body, torch.nn.Identity(), num_features=16, name="tiny.nin", preprocessing=PRE, entry=entry)
    assert class_labels(in_body) == [str(i) for i in range(16)]


def test_validate_a_folder_equals_the_forward_pass(tmp_path):
    labels = (*FASHION, "Coat", "Sandal", "Shirt")  # eight: the top 5 is not every class
    model = labelled_model(labels)
    data = make_folder(tmp_path / "data", {"ankle_boot": 4, "trouser": 3, "T-shirt top": 3}, seed=3)
    (data / "trouser" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    report = validate(model, data, device="cpu")
    paths = sorted(p for p in data.glob("*/*.png"))
    targets = torch.tensor([{"ankle_boot": 3, "trouser": 1, "T-shirt top": 0}[p.parent.name] for p in paths])
    logits = logits_of(model, paths)
    assert report["n"] == 10 and report["skipped"] == [["trouser/broken.jpg", report["skipped"][0][1]]]
    assert report["top1"] == 100 * int((logits.argmax(1) == targets).sum()) / 10
    top5 = int((logits.topk(5, dim=1).indices == targets[:, None]).any(1).sum())
    assert report["top_k"] == 5 and report["top5"] == 100 * top5 / 10
    assert math.isclose(report["loss"], float(torch.nn.functional.cross_entropy(logits, targets)), rel_tol=1e-5)
    assert report["labels"] == list(labels) and report["per_class"]["Ankle boot"]["support"] == 4
    assert report["data"]["classes"] == ["ankle_boot", "T-shirt top", "trouser"] and report["reported"] == []


def test_validate_limit_known_only_and_nothing_readable(tmp_path):
    model = labelled_model()
    data = make_folder(tmp_path / "data", {"bag": 10, "socks": 10, "trouser": 10})
    with pytest.raises(DataError, match="'socks'"):
        validate(model, data, device="cpu")
    report = validate(model, data, device="cpu", known_only=True, limit=9)
    # 9 of the 20 known images, spread evenly over them; the 10 socks left out
    assert report["data"]["total"] == 30 and report["data"]["unknown_class_images"] == 10 and report["n"] == 9
    assert report["data"]["unknown_classes"] == ["socks"]
    assert {c: v["support"] for c, v in report["per_class"].items() if v["support"]} == {"Bag": 4, "Trouser": 5}
    bad = tmp_path / "bad"
    for name in ("bag", "trouser"):
        (bad / name).mkdir(parents=True)
        (bad / name / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n nothing")
    with pytest.raises(DataError, match="none of its 2 images could be read"):
        validate(model, bad, device="cpu")
    with pytest.raises(DataError, match="no such folder"):
        validate(model, tmp_path / "nowhere", device="cpu")


def test_a_big_label_set_reports_the_classes_that_occur(tmp_path):
    labels = tuple(f"class {i}" for i in range(150))
    model = labelled_model(labels)
    data = make_folder(tmp_path / "data", {"class_7": 3, "class_120": 3})
    report = validate(model, data, device="cpu")
    predicted = set(logits_of(model, sorted(data.glob("*/*.png"))).argmax(1).tolist())
    assert set(report["labels"]) == {"class 7", "class 120"} | {labels[i] for i in predicted}
    assert sum(map(sum, report["confusion"])) == 6


def _write_csv(path: Path, rows: list[list[int]], header: list[str] | None = None) -> Path:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", newline="") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def test_read_digits_csv(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(6, 16), dtype=np.int64)
    labels = np.array([3, 1, 3, 0, 1, 3])
    rows = [[*p, y] for p, y in zip(pixels.tolist(), labels.tolist(), strict=True)]
    images, got = read_digits_csv(_write_csv(tmp_path / "d.csv.gz", rows))
    assert images.shape == (6, 4, 4) and images.dtype == np.uint8
    assert (images.reshape(6, -1) == pixels).all() and got.tolist() == labels.tolist()
    first = _write_csv(tmp_path / "k.csv", [[y, *p] for *p, y in rows], header=["label"] + [f"p{i}" for i in range(16)])
    images2, got2 = read_digits_csv(first, label_column="first")
    assert (images2 == images).all() and (got2 == got).all()
    data = read_labelled(tmp_path / "d.csv.gz")
    assert data.kind == "csv" and data.classes == ["0", "1", "3"] and data.targets == [2, 1, 2, 0, 1, 2]
    with pytest.raises(DataError, match="square image"):
        read_digits_csv(_write_csv(tmp_path / "odd.csv", [[1, 2, 3, 4]]))
    with pytest.raises(DataError, match="0-255"):
        read_digits_csv(_write_csv(tmp_path / "big.csv", [[300, 0, 0, 0, 1]]))
    with pytest.raises(DataError, match="no such CSV"):
        read_digits_csv(tmp_path / "missing.csv")


def test_imagenet_wordnet_id_folders_map_to_an_imagenet_model(tmp_path):
    """ILSVRC-2012's val/n01440764/ layout (what timm's validate.py reads) maps through the WordNet ids."""
    import json
    import os

    import zoo

    entry = {"schema": 1, "entries": [{
        "name": "lenet.in1k_test", "architecture": {"library": "zoo", "builder": "lenet",
                                                    "kwargs": {"channels": [4, 8], "hidden": 16}},
        "license": "MIT", "head": {"num_classes": 1000, "labels": "imagenet-1k"},
        "preprocessing": {"input_size": [3, 16, 16], "resize": 16, "mean": [0.5] * 3, "std": [0.5] * 3}}]}
    folder = Path(os.environ["ZOO_CONFIG_DIR"]) / "registry"
    folder.mkdir(parents=True)
    (folder / "in1k.json").write_text(json.dumps(entry))
    model = zoo.load("lenet.in1k_test")
    data = make_folder(tmp_path / "imagenet" / "val", {"n01440764": 2, "n02123045": 2, "n04579432": 1})
    report = validate(model, tmp_path / "imagenet", device="cpu")
    supports = {c: v["support"] for c, v in report["per_class"].items() if v["support"]}
    assert supports == {"tench": 2, "tabby": 2, "whistle": 1} and report["data"]["name"] == str(data.resolve())
    with pytest.raises(DataError, match="'n99999999'"):
        validate(model, make_folder(tmp_path / "other", {"n99999999": 1}), device="cpu")
