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
from zoo.finetune.defaults import choose_schedule
from zoo.finetune.loop import TrainConfig
from zoo.finetune.strategies import HEADS, STRATEGIES

torch.set_num_threads(2)


def test_replace_and_flat_options_build_the_same_object():
    a = dataclasses.replace(FinetuneConfig(), strategy="full", lr=1e-3)
    b = FinetuneConfig.from_options(strategy="full", lr=1e-3)
    assert a == b and a.lr == 1e-3 and a.epochs is None
    c = b.with_options(batch_size=16, seed=4, device="cpu")
    assert (c.batch_size, c.seed, c.train.device) == (16, 4, "cpu") and b.batch_size is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.lr = 3.0


def test_schedule_left_open_is_chosen_and_reaches_the_loop():
    cfg, _ = choose_schedule(FinetuneConfig(strategy="full", lr=0.5), 200)
    loop = cfg.loop_config()
    assert (loop.epochs, loop.lr, loop.batch_size, loop.warmup_epochs) == (cfg.epochs, 0.5, cfg.batch_size,
                                                                           cfg.warmup_epochs)
    assert loop.early_stopping == cfg.early_stopping >= 1
    filled = FinetuneConfig(strategy="full").with_defaults({"epochs": 3, "lr": 0.1, "warmup_epochs": 0.0,
                                                             "batch_size": 4, "early_stopping": 0})
    assert filled.loop_config().early_stopping is None  # 0 at the top level: never
    with pytest.raises(ConfigError, match="with_defaults"):
        FinetuneConfig().loop_config()
    # The loop's own schedule fields are not a second place to set them.
    with pytest.raises(ConfigError, match="on FinetuneConfig itself"):
        FinetuneConfig(train=TrainConfig(lr=0.1))
    with pytest.raises(ConfigError, match="head_epochs"):
        FinetuneConfig(strategy="linear", head_epochs=3)


def test_a_config_from_before_batch_size_was_chosen_reads_back():
    old = FinetuneConfig(strategy="full", epochs=3, lr=0.1, warmup_epochs=1.0).to_dict()
    old.pop("batch_size"), old.pop("early_stopping"), old.pop("head_epochs")
    old["train"] = {**old["train"], "batch_size": 16, "early_stopping": None}
    cfg = FinetuneConfig.from_dict(old)
    assert (cfg.batch_size, cfg.early_stopping, cfg.head_epochs) == (16, 0, None)


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
    chosen = {k: v["value"] for k, v in record["chosen"].items()}
    assert record["config"] == cfg.with_defaults(chosen).to_dict() and run.config == cfg.with_defaults(chosen)
    assert (run.config.epochs, run.config.lr, run.config.batch_size) == (2, 3e-3, 4)
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
