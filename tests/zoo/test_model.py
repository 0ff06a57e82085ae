"""The ZooModel contract: everything a model carries is given to its constructor and changed only by
its own methods (no module assigns its attributes from outside), the trunk is one property, frozen
parts stay in eval mode through ``keep_eval``, a feature backbone has no ``logits``, several averaged
classifiers (distilled networks) are one head, and a bad head is the project's own error."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from zoo.errors import RunError, UnknownLayerError, ZooError
from zoo.model import BuildSpec, HeadSpec, ZooModel, split_classifier, split_heads
from zoo.registry.schema import Preprocessing

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[2]
PRE = Preprocessing(input_size=(3, 32, 32), resize=36)
CARRIED = {"name", "entry", "labels", "preprocessing", "aliases", "base", "mean_image", "build", "build_spec",
           "source_dir", "frozen_modules", "head_spec", "cut_layer", "num_features", "body", "head"}


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Dropout(0.5),
                         nn.Conv2d(8, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


def _model(**kwargs) -> ZooModel:
    body, head = split_classifier(_net(), "7")
    return ZooModel(body, head, num_features=16, preprocessing=PRE, **kwargs)


def test_constructor_carries_everything():
    spec = BuildSpec(library="zoo", builder="lenet", kwargs={"hidden": 8}, in_chans=3, num_classes=4)
    model = _model(name="run1", labels=["a", "b", "c", "d"], aliases={"conv": "0"}, base="base.tag",
                   mean_image=torch.zeros(3, 40, 40), build=spec, source_dir=Path("/tmp/run1"))
    assert (model.name, model.base, model.labels, model.aliases) == ("run1", "base.tag", ("a", "b", "c", "d"),
                                                                     {"conv": "0"})
    assert model.source_dir == Path("/tmp/run1") and model.mean_image.shape == (3, 40, 40)
    assert model.build_spec == {"library": "zoo", "builder": "lenet", "kwargs": {"hidden": 8}, "in_chans": 3,
                                "num_classes": 4}
    described = model.describe()
    assert described["build"] == model.build_spec and described["labels"] == ["a", "b", "c", "d"]
    assert described["cut"] is None and described["head"] is None
    assert _model().base == "" and _model(name="x").base == "x"


def test_no_module_assigns_model_attributes_from_outside():
    """Only zoo/model.py sets what a ZooModel carries; everyone else goes through its constructor."""
    offences = []
    for folder in ("zoo", "finetune", "cli"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "zoo" / "model.py":
                continue
            for node in ast.walk(ast.parse(path.read_text("utf-8"))):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                    node, (ast.AugAssign, ast.AnnAssign)) else []
                for target in targets:
                    for t in target.elts if isinstance(target, ast.Tuple) else [target]:
                        if (isinstance(t, ast.Attribute) and t.attr in CARRIED
                                and not (isinstance(t.value, ast.Name) and t.value.id == "self")):
                            offences.append(f"{path.relative_to(ROOT)}:{node.lineno} .{t.attr}")
    assert offences == []


def test_trunk_is_the_whole_network_before_and_after_a_cut():
    model = _model()
    assert model.trunk is model.body and model.trunk_path == "body"
    before = model.layer_names()
    network = model.trunk
    model.cut("4")
    assert model.trunk is network and model.trunk_path == "body.body"
    assert model.layer_names() == [n for n in before if n != "logits"]  # the head went with the cut
    assert model.cut_layer == "4" and model.num_features == 16 and not model.has_classifier
    model.reset_classifier(2, kind="mlp", hidden=8, labels=["x", "y"])
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 2) and model.labels == ("x", "y")
    assert model.describe()["head"] == {"kind": "mlp", "num_classes": 2, "hidden": 8, "dropout": 0.0}


def test_keep_eval_holds_under_train():
    model = _model()
    model.keep_eval(["body.1", "body.3"])
    model.train()
    assert not model.body[1].training and not model.body[3].training and model.body[0].training
    assert model.frozen_modules == {"body.1", "body.3"}
    x = torch.randn(4, 3, 32, 32)
    stats = model.body[1].running_mean.clone()
    model(x)
    assert torch.equal(stats, model.body[1].running_mean)  # a frozen BatchNorm keeps its statistics
    with pytest.raises(UnknownLayerError, match="body.99"):
        model.keep_eval(["body.99"])
    model.keep_eval([])
    assert model.train().body[1].training


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"kind": "conv"}, "not one of linear, mlp"),
    ({"kind": "linear", "dropout": 1.5}, r"dropout must be in \[0, 1\)"),
    ({"kind": "mlp", "hidden": 0}, "positive sizes"),
    ({"kind": "linear", "labels": ["a"]}, "1 labels for a head of 3 classes"),
])
def test_a_bad_head_is_a_zoo_error(kwargs, match):
    with pytest.raises(RunError, match=match) as info:
        _model().reset_classifier(3, **kwargs)
    assert isinstance(info.value, ZooError) and "\n" not in str(info.value)


def test_feature_backbone_has_no_logits_until_it_gets_a_head():
    network = _net()
    network[7] = nn.Identity()
    model = ZooModel(network, nn.Identity(), num_features=16, preprocessing=PRE)
    assert not model.has_classifier and "logits" not in model.layer_names()
    with pytest.raises(UnknownLayerError, match="logits"):
        model.forward_layers(torch.randn(1, 3, 32, 32), ["logits"])
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 16)  # the features themselves
    model.reset_classifier(5)
    assert model.has_classifier
    assert model.forward_layers(torch.randn(2, 3, 32, 32), ["logits"])["logits"].shape == (2, 5)


def test_averaged_classifiers_are_one_head_that_computes_what_the_network_computes():
    """timm's distilled DeiT averages a class head and a distillation head; as a ZooModel it gives the
    same logits, both tokens as features, and takes a new head for fine-tuning."""
    import timm

    torch.manual_seed(0)
    reference = timm.create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, num_classes=7).eval()
    network = timm.create_model("deit_tiny_distilled_patch16_224", img_size=32, patch_size=8, num_classes=7)
    network.load_state_dict(reference.state_dict())
    body, head, width = split_heads(network, ("head", "head_dist"))
    model = ZooModel(body, head, num_features=width, preprocessing=PRE).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
        tokens = reference.forward_features(x)
        torch.testing.assert_close(model.forward_features(x), torch.cat([tokens[:, 0], tokens[:, 1]], dim=1))
    assert width == 2 * 192 and model.trunk_path == "body.network" and "blocks.11" in model.layer_names()
    assert model.forward_layers(x, ["blocks.11"])["blocks.11"].shape == (2, 18, 192)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3)


def test_head_spec_and_build_survive_surgery():
    model = _model(build=BuildSpec(library="torchvision", builder="resnet18", num_classes=4))
    model.reset_classifier(6, kind="linear", dropout=0.1)
    assert model.head_spec == HeadSpec(kind="linear", num_classes=6, hidden=256, dropout=0.1)
    assert model.build_spec["builder"] == "resnet18"  # surgery keeps how the network was built
