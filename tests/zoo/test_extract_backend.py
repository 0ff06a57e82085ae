"""``Extractor(..., backend="onnxruntime")`` and ``zoo extract --backend onnxruntime``: the same
features, computed by the exported graph."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import zoo
from zoo.cli.main import main
from zoo.errors import ExportError
from zoo.extract import load_features
from zoo.model import ZooModel
from zoo.registry.schema import Preprocessing

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exportdata import photos, shrink  # noqa: E402

for _module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_module, reason="the export extra is not installed: pip install 'zoo[export]'")


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


def test_onnxruntime_backend_gives_the_torch_features(tmp_path):
    torch.manual_seed(0)
    model = shrink(zoo.load("resnet18", pretrained=False), 96)
    images = photos(tmp_path, 5)
    layers = ["layer2", "layer3", "pool", "logits"]
    ort_ex = zoo.Extractor(model, layer=layers, backend="onnxruntime", num_workers=0)
    torch_ex = zoo.Extractor(model, layer=layers, num_workers=0)
    assert "backend='onnxruntime'" in repr(ort_ex) and ort_ex.runner.parity.passed
    mine, theirs = ort_ex(images), torch_ex(images)
    for layer in layers:
        assert mine[layer].shape == theirs[layer].shape
        assert np.abs(mine[layer] - theirs[layer]).max() <= 1e-4 * np.abs(theirs[layer]).max(), layer
    maps = zoo.Extractor(model, layer="layer2", pool=None, backend="onnxruntime")(images[:2])
    assert maps.shape == (2, 128, 12, 12)
    found = ort_ex.extract([*images[:2], tmp_path / "missing.jpg"])
    assert found.paths == [str(p) for p in images[:2]] and found.failed[0][0].endswith("missing.jpg")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = 0
    try:
        main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code or 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_zoo_extract_backend_onnxruntime_writes_the_same_file(tmp_path, capsys):
    folder = tmp_path / "images"
    photos(folder, 6)
    (folder / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    files = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.npz"
        code, _, err = run(capsys, "extract", "lenet.fmnist5", folder, "--out", out, "--layer", "features.pool1",
                           "--backend", backend, "-q")
        assert code == 0, err
        files[backend] = load_features(out)
    a, b = files["onnxruntime"], files["torch"]
    assert a["paths"] == b["paths"] and len(a["paths"]) == 6 and a["failed"] == b["failed"] != []
    assert (a["model"], a["layer"], a["weights"]) == (b["model"], b["layer"], b["weights"])
    assert np.abs(a["features"] - b["features"]).max() <= 1e-4 * np.abs(b["features"]).max()


class _Sorted(nn.Module):
    def forward(self, x):
        return x.kthvalue(2, dim=-1).values.flatten(1)


def test_bad_backend_options_and_a_graph_that_cannot_be_exported():
    with pytest.raises(ValueError, match="backend must be one of"):
        zoo.Extractor("lenet.fmnist5", backend="tensorrt")
    with pytest.raises(ValueError, match="amp and freeze are options of the torch backend"):
        zoo.Extractor("lenet.fmnist5", backend="onnxruntime", amp=True)
    with pytest.raises(ValueError, match="runs on the CPU"):
        zoo.Extractor("lenet.fmnist5", backend="onnxruntime", device="cuda")
    body = nn.Sequential()
    body.add_module("conv", nn.Conv2d(3, 4, 3))
    body.add_module("odd", _Sorted())
    model = ZooModel(body, nn.Linear(24, 2), num_features=24, name="odd.test",
                     preprocessing=Preprocessing(input_size=(3, 8, 8), resize=8))
    with pytest.raises(ExportError, match="odd.test: the ONNX exporter cannot translate .*kthvalue.* in layer 'odd'"):
        zoo.Extractor(model, backend="onnxruntime")
