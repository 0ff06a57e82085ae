"""``FinetuneConfig``: one object for every option, changed with ``dataclasses.replace``, stored as
``config.json`` and read back for ``--resume`` (unknown keys refused); bad choices named."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from ftdata import make_folder, write_lenet_entry

from zoo.errors import ConfigError, RunError
from zoo.finetune import FinetuneConfig, fit
from zoo.finetune.config import STRATEGY_DEFAULTS
from zoo.finetune.loop import TrainConfig
from zoo.finetune.strategies import HEADS, STRATEGIES

torch.set_num_threads(2)


def test_replace_and_flat_options_build_the_same_object():
    a = dataclasses.replace(FinetuneConfig(), strategy="full", lr=1e-3)
    b = FinetuneConfig.from_options(strategy="full", lr=1e-3)
    assert a == b and a.lr == 1e-3 and a.epochs is None
    c = b.with_options(batch_size=16, seed=4, device="cpu")
    assert (c.train.batch_size, c.seed, c.train.device) == (16, 4, "cpu") and b.train.batch_size == 64
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 3.0


def test_schedule_is_chosen_per_strategy_and_reaches_the_loop():
    for strategy, table in STRATEGY_DEFAULTS.items():
        cfg = FinetuneConfig(strategy=strategy).with_defaults()
        loop = cfg.loop_config()
        assert (loop.epochs, loop.lr, loop.warmup_epochs) == (table["epochs"], table["lr"], table["warmup_epochs"])
    given = FinetuneConfig(strategy="full", lr=0.5).with_defaults()
    assert given.lr == 0.5 and given.epochs == STRATEGY_DEFAULTS["full"]["epochs"]
    with pytest.raises(ConfigError, match="with_defaults"):
        FinetuneConfig().loop_config()
    # The loop's own schedule fields are not a second place to set them.
    with pytest.raises(ConfigError, match="on FinetuneConfig itself"):
        FinetuneConfig(train=TrainConfig(lr=0.1))


def test_dict_round_trip_and_unknown_keys_refused():
    cfg = FinetuneConfig.from_options(strategy="partial", unfreeze_from="layer4", head="mlp", dropout=0.1,
                                      classes=[3, 1], epochs=3, optimizer="sgd", label_smoothing=0.1)
    data = json.loads(json.dumps(cfg.to_dict()))  # what config.json holds
    assert FinetuneConfig.from_dict(data) == cfg and cfg.classes == (3, 1)
    assert eval(repr(cfg), {"FinetuneConfig": FinetuneConfig, "TrainConfig": TrainConfig}) == cfg
    with pytest.raises(ConfigError, match="lrr") as err:
        FinetuneConfig.from_dict({**data, "lrr": 0.1})
    assert "lr" in err.value.valid
    with pytest.raises(ConfigError, match=r"train\.bach_size"):
        FinetuneConfig.from_dict({**data, "train": {**data["train"], "bach_size": 3}})
    with pytest.raises(ConfigError, match="batchsize.*valid options"):
        FinetuneConfig.from_options(batchsize=3)


@pytest.mark.parametrize("options, option, valid", [
    ({"strategy": "ful"}, "strategy", STRATEGIES),
    ({"head": "conv"}, "head", HEADS),
    ({"augment": "rotate"}, "augment", None),
    ({"unfreeze_from": "layer4"}, "unfreeze_from", None),
    ({"valid_pct": 1.0}, "valid_pct", None),
])
def test_bad_values_name_the_option_and_the_choices(options, option, valid):
    with pytest.raises(ConfigError) as err:
        FinetuneConfig.from_options(**options)
    assert err.value.option == option and option in str(err.value)
    if valid:
        assert err.value.valid == valid and all(v in str(err.value) for v in valid)


def test_a_run_records_its_config_and_resume_reads_it_back(tmp_path):
    base = write_lenet_entry(Path(os.environ["ZOO_CONFIG_DIR"]))
    data = make_folder(tmp_path / "data", {"a": 6, "b": 6})
    with pytest.raises(ConfigError, match="linear, partial, full"):
        fit(base, data, out=tmp_path / "bad", strategy="fine", progress=False)
    assert not (tmp_path / "bad").exists()
    cfg = FinetuneConfig.from_options(strategy="full", epochs=2, lr=3e-3, batch_size=4, device="cpu")
    run = fit(base, data, cfg, out=tmp_path / "run", progress=False)
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["config"] == cfg.with_defaults().to_dict() and run.config == cfg.with_defaults()
    assert record["command"].startswith("zoo.finetune.fit(") and "strategy='full'" in record["command"]
    assert record["data"]["kind"] == "folder" and record["data"]["classes"] == ["a", "b"]
    assert len(record["data"]["sha256"]) == 64
    # A resume reads the stored config; a key it does not know is refused, not ignored.
    (tmp_path / "run" / "metrics.json").unlink()
    record["config"]["warmup"] = 1
    (tmp_path / "run" / "config.json").write_text(json.dumps(record))
    with pytest.raises(RunError, match="warmup"):
        fit(base, data, out=tmp_path / "run", resume=True, progress=False)
    with pytest.raises(ConfigError, match="stored config"):
        fit(base, data, cfg, out=tmp_path / "run", resume=True, progress=False)
