"""Conversion into the cache (once, then reused), the entry's Caffe preprocessing, and imported model
folders: ``import_caffe``/``zoo import-caffe`` -> ``zoo.load(DIR)`` and ``zoo list --source local``."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zoo.caffe import convert, import_caffe, load_dir, load_entry, materialize, model_from_plan
from zoo.registry.schema import parse_entry


def _entry(classifier="fc8", *, mean_file=None, input_size=(3, 75, 75), num_classes=10, deploy=True):
    files = [{"role": "weights", "filename": "model.caffemodel", "format": "caffemodel",
              "checksum": {"sha1": "0" * 40}, "sources": ["https://example.invalid/model.caffemodel"]}]
    if deploy:
        files.append({"role": "deploy", "filename": "deploy.prototxt", "format": "prototxt",
                      "checksum": {"sha1": "0" * 40}, "sources": ["https://example.invalid/deploy.prototxt"]})
    pre = {"input_size": list(input_size), "resize": 86, "channel_order": "BGR", "scale": 255.0,
           "mean": [104.0, 117.0, 123.0], "std": [1.0, 1.0, 1.0]}
    if mean_file:
        files.append({"role": "mean", "filename": "mean.binaryproto", "format": "binaryproto",
                      "checksum": {"sha1": "0" * 40}, "sources": ["https://example.invalid/mean.binaryproto"]})
        pre["mean_file"] = "mean"
    head = {"num_classes": num_classes}
    if classifier:
        head["classifier"] = classifier
    return parse_entry({"name": "tiny_alexnet.caffe_test", "architecture": {
        "library": "caffe", "builder": "caffemodel", "kwargs": {"input": list(input_size)}},
        "files": files, "license": "unknown", "preprocessing": pre, "head": head}, path="test", index=0)


def _mean_file(pb2, path, shape=(3, 80, 80)):
    blob = pb2.BlobProto()
    blob.num, blob.channels, blob.height, blob.width = 1, *shape
    rng = np.random.default_rng(5)
    blob.data.extend((rng.random(int(np.prod(shape))) * 40 + 100).astype(np.float32).tolist())
    path.write_bytes(blob.SerializeToString())
    return path


def test_load_entry_converts_once_and_reuses_the_cache(write_net, tmp_path, pb2):
    deploy, model = write_net("alexnet")
    folder = tmp_path / "files" / "tiny_alexnet.caffe_test"
    folder.mkdir(parents=True)
    files = {"weights": shutil.copy(model, folder / "model.caffemodel"),
             "deploy": shutil.copy(deploy, folder / "deploy.prototxt"),
             "mean": _mean_file(pb2, folder / "mean.binaryproto")}
    files = {k: folder / v.name if not hasattr(v, "name") else v for k, v in files.items()}
    entry = _entry(mean_file=True)
    first = load_entry(entry, files)
    converted = folder / "converted"
    graph_json = converted / "graph.json"
    assert graph_json.is_file() and (converted / "model.safetensors").is_file()
    stamp = graph_json.stat().st_mtime_ns
    second = load_entry(entry, files)
    assert graph_json.stat().st_mtime_ns == stamp  # reused, not converted again
    x = torch.randn(2, 3, 75, 75) * 50
    with torch.no_grad():
        torch.testing.assert_close(first(x), second(x))
    assert first.entry is entry and not first.training
    # The entry's preprocessing: BGR, 0-255, the centre of the per-pixel mean image.
    img = Image.new("RGB", (86, 86), (10, 20, 30))  # resize 86 is a no-op; centre crop 75
    t = first.transforms(img)
    mean = np.asarray(first.mean_image)[:, 2:77, 2:77]
    expected = np.array([30.0, 20.0, 10.0])[:, None, None] - mean  # BGR, 0-255, minus the mean's centre
    np.testing.assert_allclose(t.numpy(), expected, atol=1e-3)
    # A changed weights file is converted again.
    model_bytes = files["weights"].read_bytes()
    files["weights"].write_bytes(model_bytes)
    import os

    os.utime(files["weights"], ns=(stamp + 10**9, stamp + 10**9))
    load_entry(entry, files)
    assert graph_json.stat().st_mtime_ns != stamp


def test_load_entry_without_deploy_and_class_count_check(write_net, tmp_path):
    _deploy, model = write_net("alexnet")
    files = {"weights": shutil.copy(model, tmp_path / "model.caffemodel")}
    m = load_entry(_entry(deploy=False), files)
    assert m(torch.zeros(1, 3, 75, 75)).shape == (1, 10)
    from zoo.errors import CaffeError

    with pytest.raises(CaffeError, match="says 1000 classes but the converted net outputs 10"):
        load_entry(_entry(deploy=False, num_classes=1000, input_size=(3, 75, 75)),
                   {"weights": shutil.copy(model, tmp_path / "other.caffemodel")})


def test_import_dir_loads_with_zoo_load_and_fine_tunes(write_net, tmp_path):
    deploy, model = write_net("googlenet")
    out = import_caffe(model, deploy, out_dir=tmp_path / "gnet", name="gnet.mine")
    entry = json.loads((out / "entry.json").read_text())["entries"][0]
    assert entry["name"] == "gnet.mine" and entry["head"]["classifier"] == "loss3/classifier"
    assert entry["preprocessing"]["mean"] == [104.0, 117.0, 123.0]  # from the data layer's mean_value
    plan = convert(model, deploy)
    reference = model_from_plan(plan, materialize(plan))
    import zoo

    loaded = zoo.load(out)
    again = load_dir(out)
    x = torch.randn(2, 3, 64, 64) * 50
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(x))
        torch.testing.assert_close(again(x), reference(x))
        feats = loaded.forward_layers(x, ["pool5/7x7_s1", "inception_4e/output", "pool"])
    assert feats["pool5/7x7_s1"].shape == (2, 44, 1, 1) and feats["pool"].shape == (2, 44)
    # The contract: swap the head, train it on the body's features, the loss goes down.
    loaded.reset_classifier(3)
    xs, ys = torch.randn(12, 3, 64, 64) * 50, torch.arange(12) % 3
    with torch.no_grad():
        feats = loaded.body(xs)
    opt = torch.optim.Adam(loaded.head.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(loaded.head(feats), ys)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_cli_import_caffe_and_list_local(write_net, tmp_path, monkeypatch):
    from zoo.cli.main import cli

    deploy, model = write_net("squeezenet")
    runner = CliRunner()
    out = tmp_path / "sq"
    result = runner.invoke(cli, ["import-caffe", str(deploy), str(model), "--out", str(out), "--mean", "1,2,3"])
    assert result.exit_code == 0, result.output
    assert "Imported model.caffemodel as model.caffe" in result.output
    m = load_dir(out)
    assert isinstance(m.head, torch.nn.Identity) and m.num_features == 10
    assert m.preprocessing.mean == (1.0, 2.0, 3.0) and m.preprocessing.channel_order == "BGR"
    monkeypatch.setenv("ZOO_REGISTRY", str(out / "entry.json"))
    listed = runner.invoke(cli, ["list", "--source", "local"])
    assert listed.exit_code == 0, listed.output
    assert "model.caffe" in listed.output
    # --register copies the entry into the user registry folder
    result = runner.invoke(cli, ["import-caffe", str(model), "--out", str(tmp_path / "sq2"), "--input", "3,63,63",
                                 "--name", "sq2", "--register"])
    assert result.exit_code == 0, result.output
    assert "Registered" in result.output
    listed = runner.invoke(cli, ["list", "--source", "local"])
    assert "sq2.caffe" in listed.output
    # The registered entry loads by name: its weights source is the original file (file://, sha1-checked).
    import zoo

    by_name = zoo.load("sq2.caffe")
    x = torch.randn(1, 3, 63, 63) * 50
    with torch.no_grad():
        torch.testing.assert_close(by_name(x), m(x))


def test_cli_errors_are_one_line(write_net, tmp_path):
    from zoo.cli.main import main

    _deploy, model = write_net("alexnet")
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(SystemExit) as exit_info:
        main(["import-caffe", str(bad), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 1
