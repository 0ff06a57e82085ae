"""Strategies on a ZooModel: what is frozen, the parameter groups, cut layers, heads, frozen BatchNorm
statistics, and the feature cache."""

from __future__ import annotations

import pytest
import torch
from ftdata import make_folder, tiny_model
from torch import nn
from torch.utils.data import TensorDataset

from zoo.errors import UnknownLayerError
from zoo.finetune.data import scan
from zoo.finetune.features import cached_features, model_key
from zoo.finetune.loop import TrainConfig, train
from zoo.finetune.strategies import FULL_BODY_LR_SCALE, layer_groups, prepare


def _bn_state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def _params(model, names):
    return {n: p.detach().clone() for n, p in model.named_parameters() if any(n.startswith(x) for x in names)}


def test_linear_freezes_the_body():
    model = tiny_model()
    plan = prepare(model, "linear", num_classes=3)
    assert all(not p.requires_grad for p in model.body.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert model.head.out_features == 3
    assert [g["name"] for g in plan.groups] == ["head"]
    assert {"body.bn1", "body.bn2", "body.bn3"} <= model.frozen_modules
    model.train()
    assert not model.body.bn1.training and model.head.training


def test_partial_unfreezes_from_a_named_layer_and_keeps_frozen_bn_stats():
    torch.manual_seed(0)
    model = tiny_model()
    plan = prepare(model, "partial", num_classes=3, unfreeze_from="conv3")
    assert plan.unfreeze_from == "conv3"
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["body.conv1.weight", "body.conv1.bias", "body.bn1.weight", "body.bn1.bias",
                      "body.conv2.weight", "body.conv2.bias", "body.bn2.weight", "body.bn2.bias"]
    assert [(g["name"], g["lr_scale"]) for g in plan.groups] == [("body", 1.0), ("head", 1.0)]
    before_bn, before_w = _bn_state(model), _params(model, ["body.conv1", "body.bn2"])
    x, y = torch.randn(32, 3, 16, 16) * 3 + 1, torch.randint(0, 3, (32,))
    result = train(model, TensorDataset(x, y), None, TrainConfig(epochs=3, batch_size=8, lr=0.05, device="cpu"),
                   param_groups=plan.param_groups, progress=False)
    after = _bn_state(model)
    for k in ("body.bn1.running_mean", "body.bn1.running_var", "body.bn2.running_mean"):
        assert torch.equal(before_bn[k], after[k]), k
    assert not torch.equal(before_bn["body.bn3.running_mean"], after["body.bn3.running_mean"])  # trains
    for k, v in _params(model, ["body.conv1", "body.bn2"]).items():
        assert torch.equal(before_w[k], v), k
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_full_discriminative_learning_rates():
    model = tiny_model()
    plan = prepare(model, "full", num_classes=3)
    scales = [g["lr_scale"] for g in plan.groups]
    assert scales == sorted(scales) and scales[0] == pytest.approx(FULL_BODY_LR_SCALE) == 0.1 and scales[-1] == 1.0
    assert 3 <= len(scales) <= 4
    assert plan.frozen == 0 and not model.frozen_modules
    # Every trainable parameter is in exactly one optimizer group.
    ids = [id(p) for g in plan.param_groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    # Biases and norm scales do not decay.
    assert all(g.get("weight_decay") == 0.0 for g in plan.param_groups if g["params"][0].ndim < 2)
    # Groups follow module order.
    first = layer_groups(model, 3)
    assert first[0][0][0] == "conv1"


def test_cut_then_new_head():
    model = tiny_model()
    prepare(model, "linear", num_classes=4, cut="relu2", head="mlp", hidden=12, dropout=0.2)
    assert model.num_features == 16 and model.cut_layer == "relu2"
    out = model(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 4)
    assert isinstance(model.head, nn.Sequential) and model.head[0].out_features == 12
    assert any(n.startswith("body.body.bn1") for n in model.frozen_modules)


def test_unknown_layers_list_valid_names():
    with pytest.raises(UnknownLayerError, match="conv3") as err:
        prepare(tiny_model(), "linear", num_classes=2, cut="conv9")
    assert "conv1" in err.value.valid
    with pytest.raises(UnknownLayerError):
        prepare(tiny_model(), "partial", num_classes=2, unfreeze_from="nope")
    with pytest.raises(ValueError, match="partial"):
        prepare(tiny_model(), "full", num_classes=2, unfreeze_from="conv1")


def test_feature_cache_hits_on_second_run(tmp_path):
    make_folder(tmp_path, {"a": 4, "b": 4})
    split = scan(tmp_path)
    model = tiny_model()
    prepare(model, "linear", num_classes=2)
    calls = []
    model.body.register_forward_hook(lambda *a: calls.append(1))
    feats, hit, path = cached_features(model, split.paths("train"), split.hashes("train"), batch_size=4)
    assert not hit and path.is_file() and feats.shape == (len(split.train), 16)
    n = len(calls)
    assert n == 2
    again, hit2, _ = cached_features(model, split.paths("train"), split.hashes("train"), batch_size=4)
    assert hit2 and len(calls) == n and torch.equal(again, feats)
    # A change in the weights is a different key: no stale features.
    key = model_key(model)
    with torch.no_grad():
        model.body.conv1.weight.add_(1.0)
    assert model_key(model) != key
    _, hit3, _ = cached_features(model, split.paths("train"), split.hashes("train"), batch_size=4)
    assert not hit3
