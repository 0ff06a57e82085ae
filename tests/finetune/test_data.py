"""Image-folder scanning, the stratified split and its manifest, the skip list, and every bad-input case."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from ftdata import make_folder
from PIL import Image

from zoo.errors import DataError, RunError
from zoo.finetune.data import balance_table, load_split, scan, scan_labelled, skipped_tsv
from zoo.finetune.metrics import classification_report, format_report


def test_class_folders_split_stratified_and_reproducible(tmp_path):
    make_folder(tmp_path, {"ants": 10, "bees": 20, "cats": 5})
    a = scan(tmp_path, valid_pct=0.2, seed=1)
    b = scan(tmp_path, valid_pct=0.2, seed=1)
    c = scan(tmp_path, valid_pct=0.2, seed=2)
    assert a.classes == ["ants", "bees", "cats"]
    counts = a.counts()
    assert counts == {"ants": {"train": 8, "val": 2}, "bees": {"train": 16, "val": 4}, "cats": {"train": 4, "val": 1}}
    assert a.to_json()["parts"] == b.to_json()["parts"]
    assert a.to_json()["parts"] != c.to_json()["parts"]
    every = [s.path for s in a.train + a.val]
    assert len(every) == len(set(every)) == 35
    assert all(len(s.sha256) == 64 for s in a.train)
    assert "ants" in balance_table(a)


def test_manifest_round_trip_and_verify(tmp_path):
    data = make_folder(tmp_path / "data", {"a": 4, "b": 4})
    split = scan(data, seed=3)
    path = split.save(tmp_path / "split.json")
    again = load_split(path, verify=True)
    assert again.to_json() == split.to_json()
    manifest = json.loads(path.read_text())
    assert manifest["seed"] == 3 and manifest["classes"] == ["a", "b"]
    assert {"path", "label", "sha256"} <= set(manifest["parts"]["train"][0])
    # A changed file is caught by verify.
    changed = data / split.train[0].path
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(changed)
    with pytest.raises(DataError, match="changed"):
        load_split(path, verify=True)
    with pytest.raises(RunError, match="no split manifest"):
        load_split(tmp_path / "nowhere")


def test_train_val_test_folders_used_as_given(tmp_path):
    make_folder(tmp_path / "train", {"x": 6, "y": 6})
    make_folder(tmp_path / "val", {"x": 2, "y": 3}, seed=1)
    make_folder(tmp_path / "test", {"x": 1, "y": 1}, seed=2)
    split = scan(tmp_path)
    assert split.layout == "split" and split.valid_pct is None
    assert (len(split.train), len(split.val), len(split.test)) == (12, 5, 2)
    assert all(s.path.startswith("val/") for s in split.val)


def test_val_folder_with_unknown_class(tmp_path):
    make_folder(tmp_path / "train", {"x": 3, "y": 3})
    make_folder(tmp_path / "val", {"x": 1, "z": 1})
    with pytest.raises(DataError, match=r"\['z'\]"):
        scan(tmp_path)


def _bad_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    good = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(good, format="JPEG")
    (folder / "truncated.jpg").write_bytes(good.getvalue()[:200])
    (folder / "text.png").write_text("hello")
    (folder / "notes.txt").write_text("ignored: not an image extension")


def test_corrupt_and_odd_mode_images_are_skipped_or_used(tmp_path):
    make_folder(tmp_path, {"a": 4, "b": 4})
    _bad_files(tmp_path / "a")
    # Odd modes a user folder may hold: all usable.
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), "L").save(tmp_path / "b" / "grey.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 4), dtype=np.uint8), "RGBA").save(tmp_path / "b" / "alpha.png")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).convert("P").save(tmp_path / "b" / "pal.gif")
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).convert("CMYK").save(tmp_path / "b" / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 65535, (16, 16), dtype=np.uint16)).save(tmp_path / "b" / "deep.png")
    split = scan(tmp_path, valid_pct=0.25)
    skipped = dict(split.skipped)
    assert set(skipped) == {"a/corrupt.jpg", "a/truncated.jpg", "a/text.png"}
    assert all(reason for reason in skipped.values())
    assert split.counts()["b"]["train"] + split.counts()["b"]["val"] == 9
    tsv = skipped_tsv(split.skipped)
    assert tsv.startswith("path\treason\n") and "a/truncated.jpg\t" in tsv


@pytest.mark.parametrize("case, match", [
    ("missing", "does not exist"),
    ("file", "is a file"),
    ("no_classes", "no class folders"),
    ("loose_images", "directly"),
    ("one_class", "one class folder"),
    ("empty_class", r"'b'.*no usable image"),
    ("only_bad_class", r"'b'.*corrupt\.jpg"),
])
def test_bad_folders(tmp_path, case, match):
    root = tmp_path / "data"
    if case == "file":
        root.write_text("x")
    elif case == "no_classes":
        root.mkdir()
    elif case == "loose_images":
        root.mkdir()
        Image.new("RGB", (8, 8)).save(root / "x.png")
    elif case == "one_class":
        make_folder(root, {"a": 3})
    elif case == "empty_class":
        make_folder(root, {"a": 3})
        (root / "b").mkdir()
    elif case == "only_bad_class":
        make_folder(root, {"a": 3})
        _bad_files(root / "b")
    with pytest.raises(DataError, match=match):
        scan(root)


def test_bad_valid_pct(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3})
    with pytest.raises(DataError, match="valid_pct"):
        scan(tmp_path, valid_pct=1.5)


def test_scan_labelled_for_evaluation(tmp_path):
    make_folder(tmp_path / "test", {"b": 2, "a": 3})
    split, folder = scan_labelled(tmp_path, ["a", "b", "c"])
    assert folder.endswith("test")
    assert sorted(split.labels("test")) == [0, 0, 0, 1, 1]
    make_folder(tmp_path / "other", {"zzz": 1})
    with pytest.raises(DataError, match="zzz"):
        scan_labelled(tmp_path / "other", ["a", "b"])


def test_classification_report():
    r = classification_report([0, 0, 1, 1, 2], [0, 1, 1, 1, 0], ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(0.6)
    assert r["per_class"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    assert r["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert r["per_class"]["c"]["recall"] == 0.0
    assert r["confusion"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert "confusion" in format_report(r)
