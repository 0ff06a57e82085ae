"""``zoo.export``: every kind of zoo model leaves as an ONNX or TorchScript file whose outputs match the
model's (fp32, within 1e-4 of the output's scale), in a folder written whole or not at all.

Each parity test checks twice: the export's own check must pass, and a fresh onnxruntime session on
other images (real files of several sizes, through the model's own transform) must agree with the
torch model. Big models run with random weights (no network in tests) and, where the architecture
allows, at a smaller input size.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import zoo
from zoo.errors import ExportError, RunError, UnknownLayerError, UnknownModelError
from zoo.export_dir import ExportDir
from zoo.model import ZooModel
from zoo.registry.schema import Preprocessing

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exportdata import photos, settle_batchnorm, shrink  # noqa: E402

for _module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_module, reason="the export extra is not installed: pip install 'zoo[export]'")

TESTS = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


def independent_check(model: ZooModel, folder: Path, images: list[Path], *, layer: str | None = None) -> float:
    """A fresh onnxruntime session on ``images`` against the torch model: the largest difference
    relative to the output's scale."""
    import onnxruntime as ort

    x = torch.stack([model.transforms(Image.open(p).convert(model.image_mode)) for p in images])
    with torch.inference_mode():
        if layer is None:
            ref = model(x)
        elif layer == "pool":
            ref = model.forward_features(x)
        else:
            ref = model.forward_layers(x, [layer])[layer].mean(dim=(2, 3))
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0]
    assert got.shape == tuple(ref.shape)
    return float(np.abs(got - ref.numpy()).max() / np.abs(ref.numpy()).max())


def assert_parity(model: ZooModel, tmp_path: Path, **options) -> zoo.exporter.ExportResult:
    result = zoo.export(model, tmp_path / "export", **options)
    print(f"{model.name} {options}: {result.parity.describe()}")  # the figures, shown with pytest -rP
    assert result.parity.passed and result.parity.max_rel <= TOLERANCE, result.parity.describe()
    assert result.parity.batches == (1, 3)  # neither is the traced batch: the batch dimension is free
    if result.format == "onnx":
        images = photos(tmp_path / "photos", 3, seed=7)
        assert independent_check(model, tmp_path / "export", images, layer=options.get("layer")) <= TOLERANCE
    return result


# ----------------------------------------------------------------------------------------------
# Parity, model by model


def test_lenet_fmnist5_real_weights_folder_and_metadata(tmp_path):
    import onnx

    model = zoo.load("lenet.fmnist5")
    result = assert_parity(model, tmp_path)
    folder = ExportDir(result.path)
    assert sorted(result.files) == sorted(["model.onnx", "preprocessing.json", "labels.txt", "LICENSE",
                                           "README.md", "export.json"])
    assert folder.read_labels() == model.labels and len(model.labels) == 5
    spec = folder.read_spec()
    assert spec.preprocessing == model.preprocessing and spec.image_mode == "L"
    assert spec.output_kind == "logits" and spec.output_shape == (None, 5)
    graph = onnx.load(str(folder.model_file()))
    props = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(props["zoo.labels"]) == list(model.labels)
    assert json.loads(props["zoo.preprocessing"]) == json.loads(folder.file("preprocessing.json").read_text())
    assert props["zoo.license"] == "MIT" and "MIT" in folder.file("LICENSE").read_text()
    card = folder.file("README.md").read_text()
    assert card.startswith("---\n") and "license: mit" in card and "max abs diff" in card
    manifest = folder.read_manifest()
    assert manifest["parity"]["passed"] and manifest["bytes"] == folder.model_file().stat().st_size
    assert graph.graph.input[0].name == "input" and graph.graph.output[0].name == "logits"
    assert not graph.graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value")  # dynamic batch


def test_torchvision_resnet18_logits_pool_and_inner_layer(tmp_path):
    model = shrink(zoo.load("resnet18", pretrained=False), 112)
    assert_parity(model, tmp_path / "logits")
    pool = assert_parity(model, tmp_path / "pool", layer="pool")
    assert pool.output == "features" and pool.output_shape == (None, 512)
    inner = assert_parity(model, tmp_path / "layer3", layer="layer3")
    assert inner.output_shape == (None, 256)
    spec = ExportDir(inner.path).read_spec()
    assert (spec.layer, spec.pool) == ("layer3", "avg") and not ExportDir(inner.path).file("labels.txt").exists()


def test_torchvision_mobilenet_v3(tmp_path):
    model = settle_batchnorm(shrink(zoo.load("mobilenet_v3_large", pretrained=False), 128))
    assert assert_parity(model, tmp_path).parity.scale > 1e-3


@pytest.mark.slow
def test_torchvision_vit(tmp_path):
    model = zoo.load("vit_b_16", pretrained=False)  # torchvision's ViT takes its one input size
    nn.init.normal_(model.head.weight, std=0.05)  # torchvision starts the head at zero
    result = assert_parity(model, tmp_path)
    assert result.parity.scale > 0.1


def test_timm_efficientnet(tmp_path):
    model = settle_batchnorm(shrink(zoo.load("efficientnet_b0.ra_in1k", pretrained=False), 128))
    assert assert_parity(model, tmp_path).parity.scale > 1e-3


@pytest.mark.slow
def test_timm_convnext(tmp_path):
    assert_parity(shrink(zoo.load("convnext_tiny.in12k_ft_in1k", pretrained=False), 96), tmp_path)


def _caffe_net(name: str, tmp_path: Path) -> Path:
    """An imported Caffe net written by caffe-onnx's independent ``caffe_pb2`` (tests/caffe/nets.py)."""
    if importlib.util.find_spec("proto") is None:
        pytest.skip("caffe-onnx is not installed (test-only writer of .caffemodel files): "
                    "pip install --no-deps caffe-onnx")
    files = tmp_path / f"{name}_files"
    files.mkdir()
    subprocess.run([sys.executable, str(TESTS / "caffe" / "nets.py"), name, "0", str(files)], check=True,
                   env={**__import__("os").environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"})
    from zoo.caffe import import_caffe

    # SqueezeNet keeps its classifier in the body (conv10, global pooling): its labels make it one.
    labels = [f"class {i}" for i in range(10)] if name == "squeezenet" else None
    return import_caffe(files / "model.caffemodel", files / "deploy.prototxt", out_dir=tmp_path / name,
                        name=f"{name}.test", labels=labels)


@pytest.mark.parametrize("net", ["googlenet", "squeezenet"])
def test_imported_caffe_nets(tmp_path, net):
    folder = _caffe_net(net, tmp_path)
    model = zoo.load(folder)
    result = assert_parity(model, tmp_path)
    spec = ExportDir(result.path).read_spec()
    assert spec.preprocessing.channel_order == "BGR" and spec.preprocessing.scale == 255.0
    assert spec.output_kind == "logits" and result.parity.top1_agreement == 1.0
    assert result.parity.scale > 0
    if net == "squeezenet":
        assert ExportDir(result.path).read_labels() == model.labels


def test_finetuned_run_with_cut_and_mlp_head(tmp_path):
    from zoo.factory import save_model

    model = zoo.load("lenet.fmnist5").cut("features.pool1").reset_classifier(3, kind="mlp", hidden=16)
    model.labels = ("ankle boot", "bag", "sneaker")
    run = save_model(model, tmp_path / "run")
    result = zoo.export(run, tmp_path / "export")
    print(f"run (cut features.pool1, mlp head): {result.parity.describe()}")
    assert result.parity.passed and result.output_shape == (None, 3)
    assert ExportDir(result.path).read_labels() == model.labels
    images = photos(tmp_path / "photos", 3)
    assert independent_check(zoo.load(run), result.path, images) <= TOLERANCE


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_torchscript_export_carries_preprocessing_and_labels(tmp_path):
    model = zoo.load("lenet.fmnist5")
    result = assert_parity(model, tmp_path, format="torchscript")
    extra = {"preprocessing.json": "", "labels.txt": ""}
    loaded = torch.jit.load(str(result.path / "model.pt"), _extra_files=extra)
    assert json.loads(extra["preprocessing.json"])["preprocessing"]["input_size"] == [1, 28, 28]
    assert extra["labels.txt"].decode().splitlines() == list(model.labels)
    x = torch.randn(5, 1, 28, 28)
    with torch.inference_mode():
        assert torch.allclose(loaded(x), model(x), atol=1e-5)


# ----------------------------------------------------------------------------------------------
# Failures: one line, nothing left behind


def _only(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


def test_unknown_name_and_unknown_layer_write_nothing(tmp_path):
    with pytest.raises(UnknownModelError, match="lenett"):
        zoo.export("lenett.fmnist5", tmp_path / "a")
    with pytest.raises(UnknownLayerError, match="Did you mean features.pool2, features.pool1") as err:
        zoo.export("lenet.fmnist5", tmp_path / "b", layer="features.pool")
    assert "\n" not in str(err.value)
    assert _only(tmp_path) == []


def test_existing_folder_needs_force_and_force_replaces_only_exports(tmp_path):
    out = tmp_path / "out"
    zoo.export("lenet.fmnist5", out)
    before = (out / "model.onnx").read_bytes()
    with pytest.raises(ExportError, match="already exists; pass --force"):
        zoo.export("lenet.fmnist5", out, layer="pool")
    assert (out / "model.onnx").read_bytes() == before and not (out / "labels.txt").read_text() == ""
    zoo.export("lenet.fmnist5", out, layer="pool", force=True)
    assert ExportDir(out).read_spec().output_kind == "features" and not (out / "labels.txt").exists()
    assert _only(tmp_path) == ["out"]  # no temporary or old folder left beside it
    mine = tmp_path / "documents"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(ExportError, match="not a zoo export"):
        zoo.export("lenet.fmnist5", mine, force=True)
    assert (mine / "thesis.tex").read_text() == "years of work"


def test_run_folder_without_weights(tmp_path):
    from zoo.factory import save_model

    run = save_model(zoo.load("lenet.fmnist5"), tmp_path / "run")
    (run / "model.safetensors").unlink()
    with pytest.raises(RunError, match="no model.safetensors"):
        zoo.export(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_parity_failure_refuses_and_writes_nothing(tmp_path):
    with pytest.raises(ExportError, match="does not match the model") as err:
        zoo.export("lenet.fmnist5", tmp_path / "out", tolerance=1e-12)
    assert "max abs diff" in str(err.value) and "\n" not in str(err.value)
    assert _only(tmp_path) == []


class _Sorted(nn.Module):
    """A layer whose operator (kthvalue) torch's ONNX exporter cannot translate."""

    def forward(self, x):
        return x.kthvalue(2, dim=-1).values.flatten(1)


def test_unsupported_operator_names_the_layer_and_the_model(tmp_path):
    body = nn.Sequential()
    body.add_module("conv", nn.Conv2d(3, 4, 3))
    body.add_module("odd", _Sorted())
    pre = Preprocessing(input_size=(3, 8, 8), resize=8)
    model = ZooModel(body, nn.Linear(24, 2), num_features=24, name="odd.test", preprocessing=pre)
    with pytest.raises(ExportError) as err:
        zoo.export(model, tmp_path / "out")
    message = str(err.value)
    assert "odd.test" in message and "'odd'" in message and "kthvalue" in message and "\n" not in message
    assert _only(tmp_path) == []
    result = zoo.export(model, tmp_path / "ts", format="torchscript")  # what the message suggests works
    assert result.parity.passed


def test_a_model_without_a_classifier_exports_its_features(tmp_path):
    model = zoo.load("lenet.fmnist5").cut("features.pool1")  # no head until reset_classifier
    result = assert_parity(model, tmp_path, layer=None)
    spec = ExportDir(result.path).read_spec()
    assert (spec.output_kind, spec.layer, spec.output_shape) == ("features", "pool", (None, 32))
