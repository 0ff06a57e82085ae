"""The Extractor and folder extraction: features equal the model's own forward, in input order, for
every input kind; folders resume, shard and report unreadable files."""

from __future__ import annotations

import csv
import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from extracthelp import photo, reference, tiny_model
from zoo.errors import DataError, ImageError, UnknownLayerError
from zoo.extract import Extractor, collect_inputs, extract_folder, load_features, similar
from zoo.model import ZooModel, split_classifier
from zoo.registry.schema import Preprocessing

torch.set_num_threads(2)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(12):
        photo(i).save(d / f"img{i}.png")
    return d


def _timm(name: str, classifier: str, size: int, **kw) -> ZooModel:
    import timm

    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False, num_classes=10, **kw)
    body, head = split_classifier(net, classifier)
    nf = head.in_features
    return ZooModel(body, head, num_features=nf, name=name,
                    preprocessing=Preprocessing(input_size=(3, size, size), resize=size + 8)).eval()


def _mobilenet() -> ZooModel:
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(num_classes=10)
    body, head = split_classifier(net, "classifier.3")
    return ZooModel(body, head, num_features=1024, name="mobilenet_v3_small",
                    preprocessing=Preprocessing(input_size=(3, 64, 64), resize=72, interpolation="bicubic")).eval()


FAMILIES = {
    "timm-resnet18": (lambda: _timm("resnet18", "fc", 64), ["pool", "layer3", "logits"]),
    "torchvision-mobilenet": (_mobilenet, ["pool", "features.6", "logits"]),
    "timm-vit-tiny": (lambda: _timm("vit_tiny_patch16_224", "head", 32, img_size=32), ["pool", "blocks.5"]),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_features_equal_the_models_own_forward(family, tmp_path):
    build, layers = FAMILIES[family]
    model = build()
    images = [photo(i, (50 + 7 * i, 40 + 5 * i)) for i in range(5)]
    for i, im in enumerate(images):
        im.save(tmp_path / f"{i}.png")
    ex = Extractor(model, layer=layers, device="cpu", batch_size=2)
    got = ex(sorted(tmp_path.glob("*.png")))
    for layer in layers:
        want = reference(model, images, layer)
        assert got[layer].shape == want.shape
        np.testing.assert_allclose(got[layer], want, rtol=1e-4, atol=1e-5)


def test_caffe_import_features_equal_forward(tmp_path):
    """A Caffe model (written by an independent writer, imported with zoo.caffe) through the Extractor:
    its BGR 0-255 mean-subtracted preprocessing, its blob names as layers."""
    import importlib.util
    import subprocess
    import sys
    from pathlib import Path

    if importlib.util.find_spec("proto") is None or importlib.util.find_spec("google.protobuf") is None:
        pytest.skip("caffe-onnx (test-only .caffemodel writer) is not installed")
    caffe = pytest.importorskip("zoo.caffe")
    nets = Path(__file__).parents[1] / "caffe" / "nets.py"
    # A fresh process: the writer needs protobuf's pure-python backend, chosen before its first import.
    subprocess.run([sys.executable, str(nets), "googlenet", "0", str(tmp_path / "net")], check=True,
                   env={**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"})
    deploy, weights = tmp_path / "net" / "deploy.prototxt", tmp_path / "net" / "model.caffemodel"
    out = caffe.import_caffe(weights, deploy, out_dir=tmp_path / "gnet", name="gnet.mine")
    import zoo

    model = zoo.load(out)
    images = [photo(i, (90 + 9 * i, 80)) for i in range(3)]
    layers = ["pool", "pool5/7x7_s1", "inception_4e/output"]
    got = Extractor(out, layer=layers, device="cpu", batch_size=2)(images)
    for layer in layers:
        np.testing.assert_allclose(got[layer], reference(model, images, layer), rtol=1e-4, atol=1e-3)


def test_every_input_kind_gives_the_same_row(tmp_path):
    model = tiny_model()
    im = photo(3)
    path = tmp_path / "a.png"
    im.save(path)
    arr = np.asarray(im)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    ex = Extractor(model, device="cpu")
    want = reference(model, [im], "pool")
    chw = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    inputs = {
        "path": path, "str": str(path), "folder": tmp_path, "pil": im, "uint8 array": arr,
        "float array": arr.astype(np.float32) / 255, "bytes": buf.getvalue(), "file": open(path, "rb"),
        "uint8 CHW": chw, "NCHW": chw[None], "NHWC array": arr[None],
    }
    for kind, value in inputs.items():
        got = ex(value)
        assert got.shape == (1, 16), kind
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=kind)
    mixed = ex([path, im, chw])
    np.testing.assert_allclose(mixed, np.repeat(want, 3, axis=0), rtol=1e-4, atol=1e-4)
    # A float tensor is resized as floats (no rounding to 0-255 between steps): compare with the
    # model's transform on that same tensor.
    fchw = chw.float() / 255
    with torch.no_grad():
        want_f = model.body(model.transforms(fchw)[None]).numpy()
    np.testing.assert_allclose(ex(fchw), want_f, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ex([fchw, path]), np.concatenate([want_f, want]), rtol=1e-4, atol=1e-4)
    assert isinstance(Extractor(model, device="cpu", output="torch")(im), torch.Tensor)
    np.testing.assert_allclose(ex.forward(model.transforms(im)[None])["pool"].numpy(), want, rtol=1e-5)


def test_input_order_is_kept_with_workers(tmp_path):
    model = tiny_model()
    paths = []
    for i in range(70):
        # Varied sizes and an expensive few, so workers finish out of order.
        p = tmp_path / f"{i}.jpg"
        photo(i, (40 + (i % 7) * 30, 40 + (i % 5) * 20)).save(p, quality=90)
        paths.append(p)
    rng = np.random.default_rng(0)
    shuffled = [paths[i] for i in rng.permutation(len(paths))]
    parallel = Extractor(model, device="cpu", batch_size=8, num_workers=2)(shuffled)
    serial = Extractor(model, device="cpu", batch_size=8, num_workers=0)(shuffled)
    np.testing.assert_allclose(parallel, serial, rtol=1e-5, atol=1e-6)
    one = Extractor(model, device="cpu")(shuffled[17])
    np.testing.assert_allclose(parallel[17:18], one, rtol=1e-4, atol=1e-5)


def test_layers_pooling_and_unknown_layer():
    model = tiny_model()
    ex = Extractor(model, device="cpu")
    assert {"stem", "stage.0", "pool", "logits"} <= set(ex.layers())
    with pytest.raises(UnknownLayerError, match="stage") as info:
        Extractor(model, layer="stge", device="cpu")
    assert "stage" in str(info.value)
    im = photo(1)
    raw = Extractor(model, layer="stage.0", pool=None, device="cpu")(im)
    assert raw.shape == (1, 16, 16, 16)
    mx = Extractor(model, layer="stage.0", pool="max", device="cpu")(im)
    np.testing.assert_allclose(mx, raw.max(axis=(2, 3)), rtol=1e-6)
    logits = Extractor(model, layer="logits", device="cpu")(im)
    assert logits.shape == (1, 5)


def test_unreadable_images_raise_or_skip(tmp_path):
    model = tiny_model()
    good = tmp_path / "good.png"
    photo(0).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    with pytest.raises(ImageError, match="bad.jpg"):
        Extractor(model, device="cpu")([good, bad])
    ex = Extractor(model, device="cpu", on_error="skip")
    out = ex([bad, good])
    assert np.isnan(out[0]).all() and np.isfinite(out[1]).all()
    assert [p for p, _ in ex.failures] == [str(bad)]


def test_extract_folder_writes_features_index_and_failures(folder, tmp_path):
    (folder / "notes.txt").write_text("ignored")
    (folder / "broken.jpg").write_bytes(b"not a jpeg at all")
    data = photo(99)
    cut = folder / "sub" / "cut.jpg"
    cut.parent.mkdir()
    data.save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[:300])
    out = tmp_path / "feats.npz"
    model = tiny_model()
    s = extract_folder(model, [folder], out, device="cpu", batch_size=4, chunk_size=5, num_workers=1,
                       progress=False)
    assert (s.extracted, s.failed, s.images, s.dim) == (12, 2, 14, 16)
    feats = load_features(out)
    assert feats["features"].shape == (12, 16)
    assert [p.rsplit("/", 1)[1] for p in feats["paths"]] == [f"img{i}.png" for i in range(12)]
    images = [Image.open(p) for p in feats["paths"]]
    np.testing.assert_allclose(feats["features"], reference(model, images, "pool"), rtol=1e-4, atol=1e-5)
    with open(tmp_path / "feats.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[3] == {"row": "3", "path": feats["paths"][3]}
    with open(tmp_path / "feats.failed.csv") as fh:
        failed = {r["path"].rsplit("/", 1)[1]: r["reason"] for r in csv.DictReader(fh)}
    assert set(failed) == {"broken.jpg", "cut.jpg"}
    assert "truncated" in failed["cut.jpg"]
    assert not (tmp_path / "feats.npz.parts").exists()
    with np.load(out) as raw:  # no pickle needed
        assert str(raw["layer"]) == "pool" and str(raw["model"]) == "tiny"


def test_extract_folder_resumes_after_an_interruption(folder, tmp_path, monkeypatch):
    out = tmp_path / "feats.npz"
    model = tiny_model()
    calls = {"n": 0}
    real_forward = Extractor.forward

    def forward(self, x):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_forward(self, x)

    monkeypatch.setattr(Extractor, "forward", forward)
    with pytest.raises(KeyboardInterrupt):
        extract_folder(model, folder, out, device="cpu", batch_size=2, chunk_size=4, num_workers=0,
                       progress=False)
    # batches of 2 into chunks of 4: the first chunk (2 forwards) was written, the second was not
    done = sorted(p.name for p in (tmp_path / "feats.npz.parts").glob("chunk-*.npz"))
    assert done == ["chunk-000000.npz"]
    assert not out.exists()
    calls["n"] = -100
    s = extract_folder(model, folder, out, device="cpu", batch_size=2, chunk_size=4, num_workers=0,
                       progress=False)
    assert calls["n"] == -100 + 4  # only the 8 images not done: 4 batches
    assert (s.resumed, s.extracted) == (4, 12)
    fresh = extract_folder(model, folder, tmp_path / "again.npz", device="cpu", progress=False)
    np.testing.assert_allclose(load_features(out)["features"], load_features(fresh.out)["features"], rtol=1e-5)


def test_resume_refuses_parts_of_another_job(folder, tmp_path, monkeypatch):
    out = tmp_path / "f.npz"
    parts = tmp_path / "f.npz.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text('{"format": "zoo-features-parts", "layer": "stem"}')
    with pytest.raises(DataError, match="different extraction"):
        extract_folder(tiny_model(), folder, out, device="cpu", progress=False)
    s = extract_folder(tiny_model(), folder, out, device="cpu", progress=False, resume=False)
    assert s.extracted == 12


def test_sharded_ranks_merge_in_input_order(folder, tmp_path, monkeypatch):
    model = tiny_model()
    out = tmp_path / "sharded.npz"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    s1 = extract_folder(model, folder, out, device="cpu", chunk_size=3, progress=False, num_workers=0)
    assert not s1.merged and not out.exists()
    assert sorted(p.name for p in (tmp_path / "sharded.npz.parts").glob("chunk-*")) == [
        "chunk-000001.npz", "chunk-000003.npz"]
    monkeypatch.setenv("RANK", "0")
    s0 = extract_folder(model, folder, out, device="cpu", chunk_size=3, progress=False, num_workers=0)
    assert s0.merged and s0.extracted == 12
    monkeypatch.setenv("WORLD_SIZE", "1")
    single = extract_folder(model, folder, tmp_path / "single.npz", device="cpu", progress=False)
    a, b = load_features(out), load_features(single.out)
    assert a["paths"] == b["paths"]
    np.testing.assert_allclose(a["features"], b["features"], rtol=1e-5)


def test_collect_inputs_list_file_and_paths(folder, tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("# my picks\nphotos/img3.png\n\nphotos/img1.png\n")
    paths, rejected = collect_inputs([lst, folder / "img2.png"])
    assert [p.rsplit("/", 1)[1] for p in paths] == ["img3.png", "img1.png", "img2.png"]
    assert rejected == []
    with pytest.raises(DataError, match="no images"):
        extract_folder(tiny_model(), tmp_path / "photos" / "..", tmp_path / "x.npz", progress=False, recursive=False)
    with pytest.raises(DataError, match=".npz"):
        extract_folder(tiny_model(), folder, tmp_path / "x.h5", progress=False)


def test_similar_finds_the_image_itself(folder, tmp_path):
    model = tiny_model()
    out = tmp_path / "feats.npz"
    extract_folder(model, folder, out, device="cpu", progress=False)
    ex = Extractor(model, device="cpu")
    hits = similar(out, [folder / "img7.png", photo(4)], top_k=3, extractor=ex)
    assert hits[0][0][0].endswith("img7.png") and hits[0][0][1] == pytest.approx(1.0, abs=1e-5)
    assert hits[1][0][0].endswith("img4.png")
    assert len(hits[0]) == 3 and hits[0][0][1] >= hits[0][1][1] >= hits[0][2][1]
    with pytest.raises(DataError, match="in-memory"):
        similar(out, photo(1))  # the index names "tiny", an unnamed in-memory model... registry lookup


def test_caffe_style_preprocessing_bgr_255_mean_image():
    """BGR, 0-255, a per-pixel mean image: the transform the model carries is the one applied (split
    between the workers and the batch)."""
    model = tiny_model()
    model.preprocessing = Preprocessing(input_size=(3, 32, 32), resize=36, channel_order="BGR", scale=255.0,
                                        mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0))
    model.mean_image = torch.rand(3, 36, 36) * 255
    images = [photo(i) for i in range(3)]
    got = Extractor(model, device="cpu")(images)
    np.testing.assert_allclose(got, reference(model, images, "pool"), rtol=1e-4, atol=1e-4)


def test_draft_decoding_stays_close(tmp_path):
    model = tiny_model()
    path = tmp_path / "big.jpg"
    photo(5, (1200, 900)).save(path, quality=92)
    full = Extractor(model, device="cpu")(path)
    fast = Extractor(model, device="cpu", draft=True)(path)
    assert not np.array_equal(full, fast)  # draft really decoded at a smaller scale
    cosine = float((full * fast).sum() / np.linalg.norm(full) / np.linalg.norm(fast))
    assert cosine > 0.999


def test_frozen_cpu_graph_gives_the_eager_features():
    """The CPU default traces and freezes the body (BatchNorm folded): same features as eager, a short
    last batch included, and the trace is really used."""
    model = _timm("resnet18", "fc", 64)
    images = [photo(i, (70 + i, 64)) for i in range(10)]
    frozen = Extractor(model, batch_size=4, num_workers=0)
    eager = Extractor(model, batch_size=4, num_workers=0, backend="torch")
    assert frozen.freeze and not eager.freeze
    np.testing.assert_allclose(frozen(images), eager(images), rtol=1e-4, atol=1e-5)
    assert frozen.runner.traced_shape is not None and frozen.runner.traced_shape[0] == 4
    assert not Extractor(model, layer=["layer3", "pool"], num_workers=0).freeze  # hooks need eager modules
    assert Extractor(model, num_workers=0, amp=True, backend="torchscript").freeze  # asked for: frozen in bf16 too
