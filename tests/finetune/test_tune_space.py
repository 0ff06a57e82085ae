"""Search spaces: the built-in ones per strategy and from scratch (the ladder MLPs' width and depth),
the --space file (TOML and JSON) and every bad case as one clear error naming the file, the key and
the valid names, a trial's config, the grid. No training here."""

from __future__ import annotations

import json

import pytest

from zoo.errors import ConfigError
from zoo.finetune.config import FinetuneConfig
from zoo.finetune.scratch import scratch_config
from zoo.finetune.search_space import (Param, SearchSpace, builtin_space, check_space, read_space, trial_config,
                                       valid_names)

FINETUNE = valid_names("finetune", strategy="linear")


class FakeTrial:
    """Answers optuna's suggest_* calls with each range's low end or first choice, and records them."""

    def __init__(self):
        self.calls = []

    def suggest_float(self, name, low, high, *, step=None, log=False):
        self.calls.append(("float", name, low, high, log, step))
        return low

    def suggest_int(self, name, low, high, *, step=1, log=False):
        self.calls.append(("int", name, low, high, log, step))
        return low

    def suggest_categorical(self, name, choices):
        self.calls.append(("categorical", name, tuple(choices)))
        return choices[0]


def test_builtin_spaces_per_strategy():
    linear = builtin_space("finetune", strategy="linear")
    assert linear.names == ["lr", "weight_decay", "epochs"]
    partial = builtin_space("finetune", strategy="partial", layers=["layer2", "layer3", "layer4"])
    assert {"body_lr_scale", "head", "dropout", "label_smoothing", "augment", "batch_size",
            "unfreeze_from"} <= set(partial.names)
    assert dict(zip(partial.names, partial.params, strict=True))["unfreeze_from"].choices == ("layer2", "layer3",
                                                                                              "layer4")
    full = builtin_space("finetune", strategy="full")
    assert "unfreeze_from" not in full.names and "body_lr_scale" in full.names
    for space, strategy in ((linear, "linear"), (partial, "partial"), (full, "full")):
        base = FinetuneConfig(strategy=strategy)
        check_space(base, space)  # every bound and choice makes a valid config
        assert set(space.names) <= set(valid_names("finetune", strategy=strategy))


@pytest.mark.parametrize("arch, extra", [
    ("softmax", {"momentum"}),
    ("mlp_sigmoid", {"arch.width", "arch.depth", "momentum"}),
    ("mlp_relu", {"arch.width", "arch.depth", "arch.dropout", "arch.input_dropout"}),
    ("lenet", {"arch.hidden", "arch.dropout"}),
])
def test_builtin_scratch_spaces_hold_the_recipe_knobs_and_the_architecture(arch, extra):
    from zoo.finetune.recipes import recipe_for

    recipe = recipe_for(arch).config
    space = builtin_space("scratch", builder=arch, recipe=recipe, arch_defaults={"hidden": [625, 625]})
    assert {"lr", "weight_decay", "epochs", "batch_size", "label_smoothing", "augment"} | extra == set(space.names)
    lr = next(p for p in space.params if p.name == "lr")
    assert lr.log and lr.low < recipe["lr"] < lr.high  # centred on the recipe's learning rate
    check_space(scratch_config(arch), space)


def test_a_folder_space_is_sized_by_its_images_and_the_base_optimizer():
    """On a folder each run chooses its schedule from the data: batches around the run's own, no
    epochs; an adaptive optimizer's rates, or SGD's with momentum when the base keeps the recipe's SGD
    (a rate given on the command line keeps it)."""
    from zoo.finetune.scratch import folder_config

    base = folder_config("resnet18")
    space = builtin_space("scratch", builder="resnet18", recipe={"lr": base.lr, "optimizer": "adamw"}, n_train=96)
    params = {p.name: p for p in space.params}
    assert "epochs" not in params and "momentum" not in params and params["batch_size"].choices == (8, 16)
    assert (params["lr"].low, params["lr"].high) == (3e-5, 3e-2)
    check_space(base, space)
    given = folder_config("resnet18", lr=0.05)  # the rate given: the recipe's optimizer stays
    assert given.train.optimizer == "sgd" and given.epochs is None and given.batch_size is None
    space = builtin_space("scratch", builder="resnet18", recipe={"lr": 0.05, "epochs": None, "optimizer": "sgd"},
                          n_train=2000)
    params = {p.name: p for p in space.params}
    assert "momentum" in params and params["lr"].low == 1e-3 and params["batch_size"].choices == (32, 64)


def test_mlp_width_and_depth_become_hidden_layers_and_build():
    space = builtin_space("scratch", builder="mlp_relu", recipe={"lr": 1e-3}, arch_defaults={"hidden": [625, 625]})
    config = trial_config(scratch_config("mlp_relu"), space, {"arch.width": 128, "arch.depth": 3, "arch.dropout": 0.3,
                                                              "lr": 0.01})
    assert config.arch_options == {"hidden": [128, 128, 128], "dropout": 0.3} and config.lr == 0.01
    only_width = trial_config(scratch_config("mlp_relu"), space, {"arch.width": 64})
    assert only_width.arch_options == {"hidden": [64, 64]}  # the entry's depth kept
    from zoo.finetune.scratch import build_scratch_model
    from zoo.registry.schema import Preprocessing

    model = build_scratch_model("mlp_sigmoid", in_chans=1, num_classes=10, image_size=28,
                                preprocessing=Preprocessing(input_size=(1, 28, 28), resize=28, mean=(0.5,), std=(0.5,)),
                                options={"hidden": [32, 16]})
    widths = [m.out_features for m in model.modules() if m.__class__.__name__ == "Linear"]
    assert widths == [32, 16, 10]


def test_suggest_asks_optuna_for_each_kind_of_param():
    space = SearchSpace((Param("lr", "float", 1e-4, 1e-1, log=True), Param("epochs", "int", 5, 20, step=5),
                         Param("head", "categorical", choices=("linear", "mlp"))))
    trial = FakeTrial()
    assert space.suggest(trial) == {"lr": 1e-4, "epochs": 5, "head": "linear"}
    assert trial.calls == [("float", "lr", 1e-4, 1e-1, True, None), ("int", "epochs", 5, 20, False, 5),
                           ("categorical", "head", ("linear", "mlp"))]


def test_grid_values_per_kind():
    assert Param("lr", "float", 1e-4, 1e-2, log=True).grid_values() == [1e-4, 1e-3, 1e-2]
    assert Param("dropout", "float", 0.0, 0.5).grid_values() == [0.0, 0.25, 0.5]
    assert Param("depth", "int", 1, 3).grid_values() == [1, 2, 3]
    assert Param("epochs", "int", 5, 40, step=5).grid_values() == [5, 25, 40]
    assert Param("head", "categorical", choices=("linear", "mlp")).grid_values() == ["linear", "mlp"]
    assert Param("lr", "float", 0.1, 1.0, grid=(0.1, 0.3)).grid_values() == [0.1, 0.3]
    space = SearchSpace((Param("lr", "float", 1e-4, 1e-2, log=True), Param("head", "categorical",
                                                                           choices=("linear", "mlp"))))
    assert space.grid_size() == 6


def test_a_toml_file_and_a_json_file_give_the_same_space(tmp_path):
    (tmp_path / "s.toml").write_text('lr = { low = 1e-4, high = 0.1, log = true }\n'
                                     'epochs = { low = 5, high = 30, step = 5 }\n'
                                     'weight_decay = { type = "float", low = 0.0, high = 0.1, grid = [0.0, 0.01] }\n'
                                     'batch_size = [32, 64]\nlabel_smoothing = 0.1\n')
    (tmp_path / "s.json").write_text(json.dumps({
        "lr": {"low": 1e-4, "high": 0.1, "log": True}, "epochs": {"low": 5, "high": 30, "step": 5},
        "weight_decay": {"type": "float", "low": 0.0, "high": 0.1, "grid": [0.0, 0.01]}, "batch_size": [32, 64],
        "label_smoothing": 0.1}))
    toml, js = read_space(tmp_path / "s.toml", FINETUNE), read_space(tmp_path / "s.json", FINETUNE)
    assert toml.params == js.params and toml.fixed == js.fixed == {"label_smoothing": 0.1}
    kinds = {p.name: (p.kind, p.log, p.step) for p in toml.params}
    assert kinds == {"lr": ("float", True, None), "epochs": ("int", False, 5), "weight_decay": ("float", False, None),
                     "batch_size": ("categorical", False, None)}
    config = trial_config(FinetuneConfig(), toml, {"lr": 0.01, "epochs": 10, "weight_decay": 0.0,
                                                                   "batch_size": 32})
    assert (config.lr, config.epochs, config.batch_size, config.train.label_smoothing) == (0.01, 10, 32, 0.1)


# Every bad case: (file text, what the one-line message must say besides the file and key).
BAD = [
    ("lrr = { low = 1e-4, high = 0.1 }", "lrr", ["unknown parameter 'lrr'", "did you mean lr", "valid names: ",
                                                   "weight_decay"]),
    ("lr = { low = 0.1, high = 0.01 }", "lr", ["empty range", "low 0.1 is above high 0.01"]),
    ("lr = { low = 0.1, high = 0.1 }", "lr", ["empty range", "write lr = 0.1"]),
    ("head = []", "head", ["empty range", "choices is an empty list"]),
    ("lr = { low = \"a\", high = 0.1 }", "lr", ["wrong type", "low must be a number", "'a'"]),
    ("epochs = { low = 1.5, high = 10 }", "epochs", ["wrong type", "integers"]),
    ("batch_size = [16, \"big\"]", "batch_size", ["wrong type", "'big' is not an integer"]),
    ("head = [\"linear\", 3]", "head", ["wrong type", "3 is not a string"]),
    ("lr = { low = 1e-4, high = 0.1, log = \"yes\" }", "lr", ["wrong type", "log must be true or false"]),
    ("lr = { low = 1e-4, high = 0.1, type = \"floaty\" }", "lr", ["type 'floaty' is not one of float, int, "
                                                                 "categorical"]),
    ("lr = { lo = 1e-4, high = 0.1 }", "lr", ["unknown field(s) lo", "valid fields: type, low, high"]),
    ("lr = { low = 0.0, high = 0.1, log = true }", "lr", ["log range needs low > 0"]),
    ("dropout = { low = 0.0, high = 1.5 }", "dropout", ["outside [0.0, 1.0)"]),
    ("lr = { high = 0.1 }", "lr", ["needs low"]),
    ("augment = [true, false]", "augment", ["does not apply to this search", "valid names"]),  # linear: no augmenting
]


@pytest.mark.parametrize("text, key, says", BAD, ids=[b[0].split("=")[0].strip() + str(i) for i, b in enumerate(BAD)])
def test_every_bad_space_is_one_line_naming_file_key_and_what_to_do(tmp_path, text, key, says):
    path = tmp_path / "space.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        read_space(path, FINETUNE)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and f"{key!r}" in message
    for part in says:
        assert part in message, message
    assert info.value.option == key


def test_unknown_parameter_error_lists_every_valid_name(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"learning_rate": [0.1]}))
    with pytest.raises(ConfigError) as info:
        read_space(path, FINETUNE)
    assert list(info.value.valid) == list(FINETUNE) and all(name in str(info.value) for name in FINETUNE)


@pytest.mark.parametrize("name, text, says", [
    ("s.yaml", "lr: 1", "unknown format '.yaml'"),
    ("s.toml", "lr = {", "is not valid TOML"),
    ("s.json", "[1, 2]", "must hold a table"),
    ("s.toml", "", "defines no parameter"),
])
def test_unreadable_space_files(tmp_path, name, text, says):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ConfigError, match=says) as info:
        read_space(path, FINETUNE)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_space(tmp_path / "absent.toml", FINETUNE)


def test_values_the_run_refuses_fail_before_any_trial(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('optimizer = ["adamw", "adam"]\n')
    space = read_space(path, FINETUNE)  # a string, as optimizer takes: the shape is fine
    with pytest.raises(ConfigError, match=r"parameter 'optimizer' = 'adam'.*optimizer='adam' is not valid.*adamw"):
        check_space(FinetuneConfig(), space)


def test_scratch_names_follow_the_architecture():
    assert {"arch.width", "arch.depth"} <= set(valid_names("scratch", builder="mlp_sigmoid"))
    assert "arch.hidden" not in valid_names("scratch", builder="mlp_relu")
    assert {"arch.hidden", "arch.dropout", "arch.batchnorm"} <= set(valid_names("scratch", builder="lenet"))
    assert not any(n.startswith("arch.") for n in valid_names("scratch", builder="softmax"))
    assert "head" not in valid_names("scratch", builder="lenet") and "head" in valid_names("finetune")
