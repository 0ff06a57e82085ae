"""zoo.load builds the entry's network and loads verified weights that a local server serves: the
result computes what the library's own module computes with those weights."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
import torch
from fileserver import entry_dict

import zoo
from zoo.errors import RegistryError, RunError, UnknownModelError, WeightsError
from zoo.factory import save_model


def _entry(name, library, builder, url, data, fmt, *, classifier=None, size=64, num_classes=10):
    entry = entry_dict(name, [{"role": "weights", "filename": f"w.{fmt}", "format": fmt, "sources": [url],
                               "checksum": {"sha256": hashlib.sha256(data).hexdigest()}}])
    entry["architecture"] = {"library": library, "builder": builder}
    entry["preprocessing"] = {"input_size": [3, size, size], "resize": size + 8}
    entry["head"] = {"num_classes": num_classes, **({"classifier": classifier} if classifier else {})}
    return entry


def _pth_bytes(state):
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def _safetensors_bytes(state):
    from safetensors.torch import save

    return save({k: v.contiguous() for k, v in state.items()})


def test_torchvision_entry_matches_torchvision_module(http_server, user_registry):
    import torchvision.models as tvm

    torch.manual_seed(0)
    reference = tvm.resnet18(num_classes=10).eval()
    data = _pth_bytes(reference.state_dict())
    url = http_server.add("/tv/resnet18.pth", data)
    user_registry([_entry("tvres.test", "torchvision", "resnet18", url, data, "pth", classifier="fc")])

    model = zoo.load("tvres.test")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)
        # the pooled pre-logits are what the reference's fc sees
        feats = model.forward_layers(x, ["pool"])["pool"]
        torch.testing.assert_close(reference.fc(feats), reference(x), rtol=1e-5, atol=1e-5)
    assert not model.training and model.num_features == 512
    assert model.preprocessing.input_size == (3, 64, 64)


def test_timm_entry_matches_timm_module(http_server, user_registry):
    import timm

    torch.manual_seed(1)
    reference = timm.create_model("resnet18", num_classes=10).eval()
    data = _safetensors_bytes(reference.state_dict())
    url = http_server.add("/timm/resnet18.safetensors", data)
    user_registry([_entry("timmres.test", "timm", "resnet18", url, data, "safetensors")])

    model = zoo.load("timmres.test")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(model.forward_features(x),
                                   reference.forward_head(reference.forward_features(x), pre_logits=True))


def test_weights_that_do_not_fit_raise(http_server, user_registry):
    import torchvision.models as tvm

    data = _pth_bytes(tvm.resnet18(num_classes=5).state_dict())  # the entry says 10 classes
    url = http_server.add("/tv/wrong.pth", data)
    user_registry([_entry("wrong.test", "torchvision", "resnet18", url, data, "pth", classifier="fc")])
    with pytest.raises(WeightsError, match="wrong.test"):
        zoo.load("wrong.test")


def test_saved_model_reloads_in_one_line(tmp_path, user_registry):
    user_registry([_entry("small.test", "torchvision", "resnet18", "http://127.0.0.1:9/none", b"x", "pth",
                          classifier="fc")])
    model = zoo.load("small.test", pretrained=False)
    model.cut("layer3")
    model.reset_classifier(3, kind="mlp", hidden=16, labels=("a", "b", "c"))
    save_model(model, tmp_path / "run")

    again = zoo.load(tmp_path / "run")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model.eval()(x))
    assert again.labels == ("a", "b", "c") and again.num_features == 256


def test_unknown_names_and_paths_are_clear(tmp_path):
    with pytest.raises(UnknownModelError, match="Did you mean"):
        zoo.load("resnet5O")
    with pytest.raises(RunError, match="no model folder"):
        zoo.load(str(tmp_path / "nope" / "run"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="holds no model.json"):
        zoo.load(tmp_path / "empty")


def test_full_catalogue_names_load_offline_with_a_clear_error(monkeypatch):
    """A timm or torchvision name that is not curated gets an entry from the library's own metadata;
    offline, the error names the file it would fetch."""
    from zoo.errors import OfflineError
    from zoo.external import external_entry

    entry = external_entry("convnext_nano.in12k_ft_in1k")
    assert entry.source == "timm" and entry.files[0].sources[0].hf_repo == "timm/convnext_nano.in12k_ft_in1k"
    assert entry.preprocessing.crop == (224, 224) and "external" in entry.tags
    tv = external_entry("resnet50.tv_imagenet1k_v2")
    assert tv.files[0].checksum.prefix and tv.preprocessing.resize == 232
    assert external_entry("deeplabv3_resnet50.tv_coco_with_voc_labels_v1") is None  # not a classifier

    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(OfflineError, match="convnext_nano.in12k_ft_in1k"):
        zoo.load("convnext_nano.in12k_ft_in1k")


def _served(http_server, user_registry, name, library, builder, reference, *, size=64, num_classes=10,
            classifier=None, labels=None):
    """Serve ``reference``'s weights and register an entry for them: zoo.load(name) goes the real way."""
    data = _safetensors_bytes(reference.state_dict())
    url = http_server.add(f"/{name}.safetensors", data)
    entry = _entry(name, library, builder, url, data, "safetensors", classifier=classifier, size=size,
                   num_classes=num_classes)
    if labels:
        entry["head"]["labels"] = labels
    user_registry([entry])
    return entry


def test_conv_classifier_heads_become_linear_heads_with_the_same_logits(http_server, user_registry):
    """timm's DLA classifies with a 1x1 convolution on pooled features: the zoo's head is the equal Linear."""
    import timm

    torch.manual_seed(2)
    reference = timm.create_model("dla46_c", num_classes=10).eval()
    _served(http_server, user_registry, "dla.test", "timm", "dla46_c", reference)
    model = zoo.load("dla.test")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-4, atol=1e-4)
    assert isinstance(model.head, torch.nn.Linear) and model.num_features == 256


def test_squeezenet_keeps_its_classifier_in_the_body(http_server, user_registry):
    """SqueezeNet's classifying convolution is followed by ReLU and pooling: no pooled vector precedes it,
    so the body's output is the class scores (as for the Caffe SqueezeNet) and the logits are right."""
    import torchvision.models as tvm

    torch.manual_seed(3)
    reference = tvm.squeezenet1_1(num_classes=10).eval()
    data = _pth_bytes(reference.state_dict())
    url = http_server.add("/tv/squeeze.pth", data)
    entry = _entry("squeeze.test", "torchvision", "squeezenet1_1", url, data, "pth", classifier="classifier.1")
    entry["head"]["labels"] = [f"c{i}" for i in range(10)]
    user_registry([entry])
    model = zoo.load("squeeze.test")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    assert model.has_classifier and model.num_features == 10 and "logits" in model.layer_names()


def test_feature_backbone_loads_extracts_and_takes_a_head(http_server, user_registry, tmp_path):
    """A timm network with no classifier (num_classes 0, like DINOv2) is a body with no head: the
    Extractor gives its features and fine-tuning puts a head on it."""
    import timm
    from PIL import Image

    torch.manual_seed(4)
    reference = timm.create_model("test_vit", num_classes=0).eval()
    _served(http_server, user_registry, "backbone.test", "timm", "test_vit", reference, size=64, num_classes=0)
    model = zoo.load("backbone.test")
    assert not model.has_classifier and model.labels is None and "logits" not in model.layer_names()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    assert model.num_features == reference.num_features

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)
            pixels[:, :, 0 if label == "a" else 2] = 255
            Image.fromarray(pixels).save(tmp_path / "data" / label / f"{i}.png")
    feats = zoo.Extractor("backbone.test", layer="pool")(sorted((tmp_path / "data").rglob("*.png")))
    assert feats.shape == (12, model.num_features) and np.isfinite(feats).all()

    run = zoo.finetune.fit("backbone.test", tmp_path / "data", out=tmp_path / "run", strategy="linear", epochs=2,
                           progress=False)
    tuned = zoo.load(run.path)
    assert tuned.labels == ("a", "b") and tuned.has_classifier and tuned(x).shape == (2, 2)


def test_torchvision_vit_weights_get_their_image_size():
    """torchvision sets a ViT's image_size from its weights when it is handed them; the zoo sets it too."""
    from zoo.external import external_entry
    from zoo.factory import build_model

    entry = external_entry("vit_b_16.tv_imagenet1k_swag_e2e_v1")
    assert dict(entry.architecture.kwargs) == {"image_size": 384} and entry.preprocessing.crop == (384, 384)
    model = build_model(entry, pretrained=False, device="meta")
    assert model.body(torch.zeros(1, 3, 384, 384, device="meta")).shape == (1, 768)


def test_builders_that_would_fetch_on_their_own_are_refused_before_the_library_runs(monkeypatch, make_entry):
    """timm sends a HEAD request for an hf-hub: builder even with pretrained=False, and reads
    checkpoint_path unverified: both are refused before timm is called."""
    import dataclasses

    import timm

    from zoo.factory import build_model
    from zoo.registry.schema import Architecture

    def called(*args, **kwargs):
        raise AssertionError("timm.create_model was called")

    monkeypatch.setattr(timm, "create_model", called)
    base = make_entry("refuse.test", [])
    cases = [Architecture("timm", "hf-hub:timm/resnet18.a1_in1k"), Architecture("timm", "local-dir:/tmp/x"),
             Architecture("timm", "resnet18", {"checkpoint_path": "/tmp/w.pth"}),
             Architecture("timm", "resnet18", {"pretrained_cfg_overlay": {"file": "/tmp/w.pth"}}),
             Architecture("timm", "resnet18", {"pretrained": True}),
             Architecture("torchvision", "resnet18", {"weights": "IMAGENET1K_V1"})]
    for arch in cases:
        entry = dataclasses.replace(base, architecture=arch)
        with pytest.raises(RegistryError) as info:
            build_model(entry, pretrained=False)
        assert "refuse.test" in str(info.value) and "\n" not in str(info.value)


def _saved_run(tmp_path, user_registry):
    user_registry([_entry("small.test", "torchvision", "resnet18", "http://127.0.0.1:9/none", b"x", "pth",
                          classifier="fc")])
    model = zoo.load("small.test", pretrained=False)
    model.reset_classifier(3, kind="mlp", hidden=16)
    return model, save_model(model, tmp_path / "run", labels=["a", "b", "c"])


def test_model_json_of_earlier_versions_still_loads(tmp_path, user_registry):
    """Run folders written before crop_mode, antialias and BuildSpec existed load as they did."""
    model, run = _saved_run(tmp_path, user_registry)
    info = json.loads((run / "model.json").read_text())
    for key in ("crop_mode", "antialias"):
        del info["preprocessing"][key]
    info["build"] = None  # the base entry says how to build it
    (run / "model.json").write_text(json.dumps(info))
    again = zoo.load(run)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model.eval()(x))
    assert again.labels == ("a", "b", "c") and again.source_dir == run and again.name == "small.test"


@pytest.mark.parametrize(("field", "value", "match"), [
    ("head", {"kind": "transformer", "num_classes": 3}, "not a linear or mlp head"),
    ("head", {"kind": "mlp", "num_classes": 10**12, "hidden": 16}, "num_classes must be a whole number"),
    ("head", {"kind": "mlp", "num_classes": 3, "hidden": 10**9}, "hidden must be a whole number"),
    ("head", {"kind": "mlp", "num_classes": "3", "hidden": 16}, "num_classes must be a whole number"),
    ("head", {"kind": "linear", "num_classes": 3, "dropout": 7}, "dropout must be a number"),
    ("labels", [1, 2, 3], "must list strings"),
    ("labels", ["a", "b"], "2 labels for a head of 3 classes"),
    ("name", 5, "'name' has the wrong type"),
    ("cut", ["layer3"], "'cut' has the wrong type"),
    ("build", {"library": "evil", "builder": "x"}, "does not name a library"),
    ("build", {"library": "timm", "builder": "hf-hub:timm/resnet18.a1_in1k", "kwargs": {}}, "names a location"),
    ("build", {"library": "timm", "builder": "resnet18", "kwargs": {"checkpoint_path": "/etc/passwd"}},
     "checkpoint_path"),
    ("build", {"library": "torchvision", "builder": "resnet18", "in_chans": 10**6}, "in_chans must be"),
    ("preprocessing", {"input_size": [3, -1, 5], "resize": 8}, "preprocessing is damaged"),
    ("preprocessing", {"input_size": "big"}, "preprocessing is damaged"),
])
def test_tampered_model_json_is_one_line_run_error(tmp_path, user_registry, monkeypatch, field, value, match):
    import timm

    def called(*args, **kwargs):
        raise AssertionError("timm.create_model was called")

    _, run = _saved_run(tmp_path, user_registry)
    info = json.loads((run / "model.json").read_text())
    info[field] = value
    (run / "model.json").write_text(json.dumps(info))
    monkeypatch.setattr(timm, "create_model", called)
    with pytest.raises(RunError, match=match) as err:
        zoo.load(run)
    assert "\n" not in str(err.value)
