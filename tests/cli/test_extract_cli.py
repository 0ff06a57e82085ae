"""``zoo extract`` and ``zoo similar`` end to end on a folder the test makes, with a saved tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from zoo.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = 0
    try:
        main(list(argv))
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def model_dir(tmp_path):
    """A saved timm ``test_resnet`` (370k parameters) at 32 px: `zoo.load(dir)` gives it back."""
    import timm
    import torch

    from zoo.factory import save_model
    from zoo.model import BuildSpec, ZooModel, split_classifier
    from zoo.registry.schema import Preprocessing

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    body, head = split_classifier(net, "fc")
    model = ZooModel(body, head, num_features=head.in_features, name="tiny-resnet", base="tiny-resnet",
                     preprocessing=Preprocessing(input_size=(3, 32, 32), resize=36),
                     build=BuildSpec(library="timm", builder="test_resnet", in_chans=3, num_classes=5))
    return save_model(model, tmp_path / "tiny-run")


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
    code, stdout, stderr = run(capsys, "extract", str(model_dir), str(photos), "--out", str(out), "-q",
                               "--batch-size", "4")
    assert code == 0, stderr
    assert "Extracted 10 of 11 images" in stdout
    assert "Skipped 1 unreadable file" in stderr and "broken.jpg" in stderr
    data = np.load(out)
    assert data["features"].shape[0] == 10 and str(data["model_ref"]) == str(model_dir.resolve())
    assert (tmp_path / "feats.csv").read_text().splitlines()[1].endswith("p0.jpg")

    # A rerun of the same job reuses the result.
    code, stdout, _ = run(capsys, "extract", str(model_dir), str(photos), "--out", str(out), "-q")
    assert code == 0 and "11 from an earlier run" in stdout

    code, stdout, stderr = run(capsys, "similar", str(out), str(photos / "p3.jpg"), "--top-k", "3", "--json")
    assert code == 0, stderr
    result = json.loads(stdout.splitlines()[0])
    assert result["results"][0]["path"].endswith("p3.jpg")
    assert result["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)
    assert len(result["results"]) == 3

    code, stdout, _ = run(capsys, "similar", str(out), str(photos / "p5.jpg"))
    assert code == 0 and stdout.splitlines()[1].strip().split()[-1].endswith("p5.jpg")


def test_extract_errors_are_one_line(capsys, tmp_path, model_dir, photos):
    code, _, stderr = run(capsys, "extract", str(model_dir), str(photos), "--out", str(tmp_path / "f.npz"),
                          "--layer", "layer9", "-q")
    assert code == 1 and "no layer 'layer9'" in stderr and "Traceback" not in stderr
    code, _, stderr = run(capsys, "extract", str(model_dir), str(photos), "--out", str(tmp_path / "f.h5"), "-q")
    assert code == 1 and ".npz" in stderr
    code, _, stderr = run(capsys, "similar", str(tmp_path / "missing.npz"), str(photos / "p1.jpg"))
    assert code == 1 and "zoo extract" in stderr


def test_extract_json_summary(capsys, tmp_path, model_dir, photos):
    code, stdout, _ = run(capsys, "extract", str(model_dir), str(photos / "p1.jpg"), str(photos / "p2.jpg"),
                          "--out", str(tmp_path / "two.npz"), "--json", "--layer", "layer4", "--pool", "max")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["extracted"] == 2 and summary["failed"] == 0 and summary["dim"] > 0
