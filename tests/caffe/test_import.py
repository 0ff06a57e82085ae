"""``zoo import-caffe`` as a Caffe user expects it: the data layer's conventions read from the files
(a snapshot's training net or a train_val file), options that override them, the result saved like
every other zoo model (``model.json``) and loaded, fine-tuned and reloaded as one, and the Caffe name
of the classifier layer naming the logits."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import zoo
from zoo.caffe import import_caffe, load_dir
from zoo.caffe.convert import convert, load_converted, materialize, model_from_plan, save_converted
from zoo.errors import CaffeError, UnknownLayerError
from zoo.factory import save_model


def _snapshot(pb2, folder, *, transform):
    """A solver snapshot: the training net (a TRAIN-phase data layer with ``transform``, a convolution,
    a classifier, a loss) with its weights; and a mean file beside it."""
    rng = np.random.default_rng(0)
    net = pb2.NetParameter(name="snap")
    data = net.layer.add(name="data", type="Data")
    data.top.extend(["data", "label"])
    data.include.add().phase = pb2.TRAIN
    transform(data.transform_param)
    conv = net.layer.add(name="conv1", type="Convolution", bottom=["data"], top=["conv1"])
    conv.convolution_param.num_output = 4
    conv.convolution_param.kernel_size.append(3)
    for shape in ((4, 3, 3, 3), (4,)):
        conv.blobs.add(shape=pb2.BlobShape(dim=shape), data=rng.standard_normal(int(np.prod(shape))).tolist())
    ip = net.layer.add(name="fc8", type="InnerProduct", bottom=["conv1"], top=["fc8"])
    ip.inner_product_param.num_output = 5
    for shape in ((5, 64), (5,)):
        ip.blobs.add(shape=pb2.BlobShape(dim=shape), data=rng.standard_normal(int(np.prod(shape))).tolist())
    net.layer.add(name="loss", type="SoftmaxWithLoss", bottom=["fc8", "label"], top=["loss"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "snap.caffemodel").write_bytes(net.SerializeToString())
    mean = pb2.BlobProto(num=1, channels=3, height=8, width=8)
    mean.data.extend((np.arange(192) % 50 + 100).astype(np.float32).tolist())
    (folder / "mean.binaryproto").write_bytes(mean.SerializeToString())
    return folder / "snap.caffemodel"


def _with_mean_file(t):
    t.scale, t.crop_size, t.mean_file, t.mirror = 0.5, 6, "data/ilsvrc12/mean.binaryproto", True


def test_snapshot_conventions_become_the_preprocessing(pb2, tmp_path):
    weights = _snapshot(pb2, tmp_path / "files", transform=_with_mean_file)
    out = import_caffe(weights, out_dir=tmp_path / "net")  # the input size comes from crop_size
    model = zoo.load(out)
    p = model.preprocessing
    assert p.input_size == (3, 6, 6) and (p.crop_mode, p.resize) == ("squash", 8)  # the mean file's size
    assert p.std == (2.0, 2.0, 2.0) and p.scale == 255.0 and p.mean_file == "mean" and p.channel_order == "BGR"
    assert "scale 0.5 from the data layer 'data' of" in model.entry.description
    assert "mean file data/ilsvrc12/mean.binaryproto from" in model.entry.description
    assert (out / "mean.binaryproto").is_file()
    # Caffe's arithmetic: (BGR 0-255 minus the mean image at the centre crop's offset) times the scale.
    rgb = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    got = model.transforms(Image.fromarray(rgb)).numpy()
    mean = (np.arange(192) % 50 + 100).astype(np.float32).reshape(3, 8, 8)[:, 1:7, 1:7]
    want = (rgb[1:7, 1:7, ::-1].transpose(2, 0, 1).astype(np.float32) - mean) * 0.5
    np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.parametrize("options, expect", [
    (dict(crop=False), dict(crop_mode="squash", resize=6, std=(2.0,) * 3, mean_file="mean")),
    (dict(crop=12), dict(resize=12)),
    (dict(scale=1.0, mean=[1.0, 2.0, 3.0]), dict(std=(1.0,) * 3, mean=(1.0, 2.0, 3.0), mean_file=None)),
    (dict(mean=[7.0]), dict(mean=(7.0, 7.0, 7.0), mean_file=None)),
])
def test_options_override_the_files(pb2, tmp_path, options, expect):
    weights = _snapshot(pb2, tmp_path / "files", transform=_with_mean_file)
    p = zoo.load(import_caffe(weights, out_dir=tmp_path / "net", **options)).preprocessing
    assert {k: getattr(p, k) for k in expect} == expect


def test_a_mean_file_that_is_not_there_is_named(pb2, tmp_path):
    weights = _snapshot(pb2, tmp_path / "files", transform=_with_mean_file)
    (tmp_path / "files" / "mean.binaryproto").unlink()
    with pytest.raises(CaffeError, match=r"subtracts the mean file 'data/ilsvrc12/mean\.binaryproto', which is "
                                         r"not at .*pass --mean-file PATH, or --mean B,G,R"):
        import_caffe(weights, out_dir=tmp_path / "net")


def test_without_a_crop_the_whole_image_is_the_input(pb2, tmp_path):
    weights = _snapshot(pb2, tmp_path / "files", transform=lambda t: setattr(t, "scale", 0.00390625))
    model = zoo.load(import_caffe(weights, out_dir=tmp_path / "net", input_shape=(3, 6, 6)))
    p = model.preprocessing
    assert (p.crop_mode, p.resize, p.std, p.mean, p.mean_file) == ("squash", 6, (256.0,) * 3, (0.0,) * 3, None)
    assert "no mean in the files" in model.entry.description


def test_cli_options_print_and_zoo_info_shows_them(pb2, tmp_path, monkeypatch):
    from zoo.cli.main import cli

    weights = _snapshot(pb2, tmp_path / "files", transform=_with_mean_file)
    runner = CliRunner()
    result = runner.invoke(cli, ["import-caffe", str(weights), "--out", str(tmp_path / "net"), "--scale", "0.25",
                                 "--mean", "10,20,30", "--no-crop", "--name", "snap.mine"])
    assert result.exit_code == 0, result.output
    assert "input     : 3x6x6, whole image resized to 6x6" in result.output
    assert "0-255 minus mean [10.0, 20.0, 30.0], x0.25" in result.output
    assert "the crop_size 6 of the data layer 'data' of snap.caffemodel is ignored (--no-crop)" in result.output
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "net" / "entry.json"))
    info = runner.invoke(cli, ["info", "snap.mine"])
    assert info.exit_code == 0, info.output
    assert "input        : 3x6x6, whole image resized to 6x6 (bilinear, no antialias)" in info.output
    assert "normalise    : BGR, x255, mean [10.0, 20.0, 30.0], std [4.0, 4.0, 4.0]" in info.output
    both = runner.invoke(cli, ["import-caffe", str(weights), "--out", str(tmp_path / "x"), "--crop", "8", "--no-crop"])
    assert both.exit_code == 2 and "contradict" in both.output


def test_the_classifier_layer_name_is_the_logits(write_net, tmp_path):
    deploy, weights = write_net("alexnet")
    out = import_caffe(weights, deploy, out_dir=tmp_path / "net")
    model = zoo.load(out)
    x = torch.randn(2, 3, 75, 75) * 50
    with torch.no_grad():
        got = model.forward_layers(x, ["fc8", "logits", "fc7"])
        torch.testing.assert_close(got["fc8"], model(x))
    torch.testing.assert_close(got["fc8"], got["logits"])
    assert got["fc7"].shape == (2, 32)  # a blob name still names its layer in the body
    from zoo.extract import Extractor

    images = [Image.fromarray(np.random.default_rng(i).integers(0, 256, (80, 90, 3), dtype=np.uint8)) for i in range(3)]
    by_caffe_name = Extractor(out, layer="fc8", device="cpu")(images)
    np.testing.assert_allclose(by_caffe_name, Extractor(out, layer="logits", device="cpu")(images), rtol=1e-6)
    model.reset_classifier(3)
    with pytest.raises(UnknownLayerError):
        model.resolve_layer("fc8")  # the Caffe classifier is gone with the old head


def test_an_import_is_a_saved_model_and_fine_tunes_like_one(write_net, tmp_path, monkeypatch):
    deploy, weights = write_net("alexnet")
    labels = [f"class{i}" for i in range(10)]
    out = import_caffe(weights, deploy, out_dir=tmp_path / "net", name="tiny.caffe", labels=labels)
    info = json.loads((out / "model.json").read_text())
    assert (info["format"], info["base"], info["labels"]) == ("zoo-model", "tiny.caffe", labels)
    assert info["build"]["library"] == "caffe" and info["preprocessing"]["crop_mode"] == "squash"
    assert (out / "graph.json").is_file() and (out / "entry.json").is_file()
    model = zoo.load(out)
    x = torch.randn(2, 3, 75, 75) * 50
    plan = convert(weights, deploy)
    reference = model_from_plan(plan, materialize(plan))
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    assert model.labels == tuple(labels) and load_dir(out).labels == tuple(labels)
    # A fine-tuned copy: its own head and weights, saved and loaded like any model.
    model.reset_classifier(3)
    torch.nn.init.normal_(model.head.weight)
    run = save_model(model, tmp_path / "run")
    with pytest.raises(CaffeError, match="holds no graph.json, and its base model is not in the registry"):
        zoo.load(run)
    monkeypatch.setenv("ZOO_REGISTRY", str(out / "entry.json"))  # registered: rebuilt from its entry
    with torch.no_grad():
        torch.testing.assert_close(zoo.load(run)(x), model(x))
    monkeypatch.delenv("ZOO_REGISTRY")
    shutil.copyfile(out / "graph.json", run / "graph.json")  # or the graph beside it
    with torch.no_grad():
        torch.testing.assert_close(zoo.load(run)(x), model(x))


def test_folders_from_before_model_json_still_load(write_net, tmp_path):
    deploy, weights = write_net("squeezenet")
    out = import_caffe(weights, deploy, out_dir=tmp_path / "new")
    legacy = tmp_path / "legacy"
    plan = convert(weights, deploy)
    save_converted(plan, materialize(plan), legacy, {"converter": 1})
    shutil.copyfile(out / "entry.json", legacy / "entry.json")
    x = torch.randn(1, 3, 63, 63) * 50
    with torch.no_grad():
        torch.testing.assert_close(zoo.load(legacy)(x), zoo.load(out)(x))
    assert load_converted(legacy)[0].ops[0].name == "conv1"
