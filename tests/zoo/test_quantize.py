"""int8 exports through onnxruntime's quantization tools, measured on real labelled images: the
embedded LeNet (trained on Fashion-MNIST) on Fashion-MNIST test images written as class folders."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

import zoo
from zoo.errors import DataError, ExportError
from zoo.finetune.datasets import find_fashion_mnist, read_idx
from zoo.runtime import Classifier

for _module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_module, reason="the export extra is not installed: pip install 'zoo[export]'")

FMNIST = find_fashion_mnist()
needs_fmnist = pytest.mark.skipif(FMNIST is None, reason="Fashion-MNIST files absent "
                                  "(apt-get install dataset-fashion-mnist)")
# lenet.fmnist5's classes; "T-shirt/top" cannot be a folder name, so its folder is "T-shirt_top".
FOLDERS = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat")


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


def _write_images(root, split: str, per_class: int, *, class_folders: bool):
    """``per_class`` images of each of the five classes from Fashion-MNIST's ``split`` (``t10k`` or
    ``train``) as PNG files under ``root``, in class folders or all in ``root``."""
    if FMNIST is None:
        pytest.skip("Fashion-MNIST files absent (apt-get install dataset-fashion-mnist)")
    images = read_idx(FMNIST / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(FMNIST / f"{split}-labels-idx1-ubyte.gz")
    for label, name in enumerate(FOLDERS):
        folder = root / name if class_folders else root
        folder.mkdir(exist_ok=True)
        for i in [i for i, y in enumerate(labels) if y == label][:per_class]:
            Image.fromarray(images[i]).save(folder / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """60 test-split images of each of the five classes, as PNG files in class folders."""
    return _write_images(tmp_path_factory.mktemp("fmnist"), "t10k", 60, class_folders=True)


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """20 training-split images of each class: calibration data like the images the model will see, and
    none of the ones it is evaluated on."""
    return _write_images(tmp_path_factory.mktemp("calibration"), "train", 20, class_folders=False)


def _ops(path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path)).graph.node}


@needs_fmnist
@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_accuracy_change_on_a_labelled_folder(tmp_path, labelled, calibration, mode):
    out = tmp_path / mode
    result = zoo.export("lenet.fmnist5", out, quantize=mode, evaluate=labelled,
                        calibration=calibration if mode == "static" else None)
    ops = _ops(out / "model.onnx")
    assert ({"MatMulInteger", "DynamicQuantizeLinear"} <= ops) if mode == "dynamic" else ("QuantizeLinear" in ops)
    quant, accuracy = result.quantization, result.accuracy
    assert quant["bytes_int8"] < quant["bytes_fp32"] / 2
    assert accuracy["images"] == 300 and accuracy["top1_fp32"] > 0.85
    assert abs(accuracy["change_points"]) <= 2.0, accuracy["summary"]
    assert "fp32" in accuracy["summary"] and "int8" in accuracy["summary"]
    # The int8 folder is what an app gets: same labels and preprocessing, and it predicts.
    clf = Classifier(out)
    assert clf.labels[0] == "T-shirt/top"
    top = clf.predict(labelled / "Trouser", top_k=1)
    assert sum(r["top"][0]["label"] == "Trouser" for r in top) >= 50
    assert out.joinpath("export.json").read_text().count('"mode": "' + mode + '"') == 1


@needs_fmnist
def test_eval_alone_reports_the_export_accuracy(tmp_path, labelled):
    result = zoo.export("lenet.fmnist5", tmp_path / "out", evaluate=labelled)
    assert result.quantization is None and "top1_int8" not in result.accuracy
    assert result.accuracy["top1_fp32"] > 0.85


def test_option_mistakes_are_refused_before_any_work(tmp_path):
    with pytest.raises(ExportError, match="needs --calibrate"):
        zoo.export("lenet.fmnist5", tmp_path / "a", quantize="static")
    with pytest.raises(ExportError, match="only with --quantize static"):
        zoo.export("lenet.fmnist5", tmp_path / "a", quantize="dynamic", calibration=tmp_path)
    with pytest.raises(ExportError, match="needs --format onnx"):
        zoo.export("lenet.fmnist5", tmp_path / "a", quantize="dynamic", format="torchscript")
    assert list(tmp_path.iterdir()) == []


def test_eval_folder_names_that_match_no_label(tmp_path):
    data = tmp_path / "data"
    for name in ("Trouser", "Shoes"):
        (data / name).mkdir(parents=True)
        Image.new("L", (28, 28)).save(data / name / "a.png")
    with pytest.raises(DataError, match=r"class folders \['Shoes'\] match none of the model's 5 labels"):
        zoo.export("lenet.fmnist5", tmp_path / "out", evaluate=data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
