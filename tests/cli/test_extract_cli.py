"""``zoo extract`` and ``zoo similar`` end to end on a folder the test makes, with a saved tiny model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clirun import zoo_cli  # noqa: E402


def save_tiny(directory, seed: int = 0):
    """A saved timm ``test_resnet`` (370k parameters) at 32 px: `zoo.load(directory)` gives it back."""
    import timm
    import torch

    from zoo.factory import save_model
    from zoo.model import BuildSpec, ZooModel, split_classifier
    from zoo.registry.schema import Preprocessing

    torch.manual_seed(seed)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    body, head = split_classifier(net, "fc")
    model = ZooModel(body, head, num_features=head.in_features, name="tiny-resnet", base="tiny-resnet",
                     preprocessing=Preprocessing(input_size=(3, 32, 32), resize=36),
                     build=BuildSpec(library="timm", builder="test_resnet", in_chans=3, num_classes=5))
    return save_model(model, directory)


@pytest.fixture
def model_dir(tmp_path):
    return save_tiny(tmp_path / "tiny-run")


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        colour = rng.integers(0, 255, 3)
        arr = (colour + rng.normal(0, 30, (40 + i, 50, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(arr).save(d / f"p{i}.jpg", quality=90)
    (d / "readme.txt").write_text("not an image")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return d


def test_extract_then_similar(capsys, tmp_path, model_dir, photos):
    out = tmp_path / "feats.npz"
    code, stdout, stderr = zoo_cli(capsys, "extract", str(model_dir), str(photos), "--out", str(out), "-q",
                                   "--batch-size", "4")
    assert code == 0, stderr
    assert "Extracted 10 of 11 images" in stdout
    assert "Skipped 1 unreadable file" in stderr and "broken.jpg" in stderr
    data = np.load(out)
    assert data["features"].shape[0] == 10 and str(data["model_ref"]) == str(model_dir.resolve())
    assert (tmp_path / "feats.csv").read_text().splitlines()[1].endswith("p0.jpg")

    # A rerun of the same job reuses the result.
    code, stdout, _ = zoo_cli(capsys, "extract", str(model_dir), str(photos), "--out", str(out), "-q")
    assert code == 0 and "11 from an earlier run" in stdout

    code, stdout, stderr = zoo_cli(capsys, "similar", str(out), str(photos / "p3.jpg"), "--top-k", "3", "--json")
    assert code == 0, stderr
    result = json.loads(stdout.splitlines()[0])
    assert result["results"][0]["path"].endswith("p3.jpg")
    assert result["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert len(result["results"]) == 3

    code, stdout, _ = zoo_cli(capsys, "similar", str(out), str(photos / "p5.jpg"))
    assert code == 0 and stdout.splitlines()[1].strip().split()[-1].endswith("p5.jpg")


def test_extract_errors_are_one_line(capsys, tmp_path, model_dir, photos):
    code, _, stderr = zoo_cli(capsys, "extract", str(model_dir), str(photos), "--out", str(tmp_path / "f.npz"),
                              "--layer", "layer9", "-q")
    assert code == 1 and "no layer 'layer9'" in stderr and "Traceback" not in stderr
    code, _, stderr = zoo_cli(capsys, "extract", str(model_dir), str(photos), "--out", str(tmp_path / "f.h5"), "-q")
    assert code == 1 and ".npz" in stderr
    code, _, stderr = zoo_cli(capsys, "similar", str(tmp_path / "missing.npz"), str(photos / "p1.jpg"))
    assert code == 1 and "zoo extract" in stderr


def test_extract_json_summary(capsys, tmp_path, model_dir, photos):
    code, stdout, _ = zoo_cli(capsys, "extract", str(model_dir), str(photos / "p1.jpg"), str(photos / "p2.jpg"),
                              "--out", str(tmp_path / "two.npz"), "--json", "--layer", "layer4", "--pool", "max")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["extracted"] == 2 and summary["failed"] == 0 and summary["dim"] > 0


def test_missing_or_special_inputs(capsys, tmp_path, model_dir, photos):
    import os
    import signal

    out = tmp_path / "x.npz"
    code, stdout, stderr = zoo_cli(capsys, "extract", str(model_dir), str(tmp_path / "nodir"), "--out", str(out))
    assert code == 1 and "nodir: no such file or folder" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1 and not out.exists()

    # A FIFO is never opened (opening one waits for a writer): refused as an input, skipped in a folder.
    os.mkfifo(tmp_path / "pipe.jpg")
    os.mkfifo(photos / "stream.jpg")
    signal.alarm(120)  # a hang fails the test instead of stalling the suite
    try:
        code, _, stderr = zoo_cli(capsys, "extract", str(model_dir), str(tmp_path / "pipe.jpg"), "--out", str(out))
        assert code == 1 and "not a regular file" in stderr
        code, stdout, stderr = zoo_cli(capsys, "extract", str(model_dir), str(photos), "--out", str(out), "-q",
                                       "--workers", "0")
    finally:
        signal.alarm(0)
    assert code == 0 and "Extracted 10 of 12 images" in stdout and "stream.jpg: a FIFO" in stderr


def test_similar_with_a_mismatched_or_damaged_index(capsys, tmp_path, model_dir, photos):
    out = tmp_path / "feats.npz"
    assert zoo_cli(capsys, "extract", str(model_dir), str(photos), "--out", str(out), "-q")[0] == 0
    query = str(photos / "p1.jpg")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(out.read_bytes()[:300])
    with np.load(out) as data:
        np.savez(tmp_path / "tampered.npz", **{**dict(data), "pool": np.array("median")})
    for index in (damaged, tmp_path / "tampered.npz"):
        code, _, stderr = zoo_cli(capsys, "similar", str(index), query)
        assert code == 1 and index.name in stderr and "Traceback" not in stderr
        assert len(stderr.strip().splitlines()) == 1

    save_tiny(model_dir, seed=1)  # other weights behind the same folder
    code, _, stderr = zoo_cli(capsys, "similar", str(out), query)
    assert code == 1 and "other weights" in stderr and len(stderr.strip().splitlines()) == 1
    code, stdout, stderr = zoo_cli(capsys, "extract", str(model_dir), str(photos), "--out", str(out), "-q")
    assert code == 0 and "other weights" in stderr and "earlier run" not in stdout
    code, stdout, _ = zoo_cli(capsys, "similar", str(out), query, "--json")
    assert code == 0 and json.loads(stdout.splitlines()[0])["results"][0]["path"].endswith("p1.jpg")
