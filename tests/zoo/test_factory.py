"""zoo.load builds the entry's network and loads verified weights that a local server serves: the
result computes what the library's own module computes with those weights."""

from __future__ import annotations

import hashlib
import io

import pytest
import torch
from fileserver import entry_dict

import zoo
from zoo.errors import RunError, UnknownModelError, WeightsError
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
    model.reset_classifier(3, kind="mlp", hidden=16)
    model.labels = ("a", "b", "c")
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
