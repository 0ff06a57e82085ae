"""What a search needs from a run, tested on runs alone: a built-in data set's validation part held
out of its training part (by class, by seed; the test split unread), a split given to fit instead of
a scan, builder options from scratch (refused for fine-tuning), the body's learning-rate factor, and
runs that draw no plots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.errors import ConfigError, DataError
from zoo.finetune import datasets
from zoo.finetune.config import FinetuneConfig
from zoo.finetune.data import scan
from zoo.finetune.fit import fit
from zoo.finetune.scratch import train_scratch
from zoo.finetune.strategies import prepare

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ftdata import fmnist_subset, make_folder, tiny_model  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """600 real Fashion-MNIST training images and test files that cannot be read."""
    return fmnist_subset(tmp_path_factory.mktemp("fmnist_hooks"), 600, None)


def test_hold_out_takes_validation_from_the_training_split(tmp_path, root):
    labels = torch.from_numpy(datasets.read_idx(root / "fashion-mnist" / "train-labels-idx1-ubyte.gz").astype(np.int64))
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        runs[name] = train_scratch("softmax", "fashion-mnist", out=tmp_path / name, data_root=root, epochs=1, seed=seed,
                                   hold_out=True, valid_pct=0.25, progress=False, plots=False)
    data = runs["a"].record["data"]
    per_class = torch.bincount(labels, minlength=10)
    expected_val = sum(max(1, round(0.25 * int(n))) for n in per_class)
    assert data["sizes"] == {"train": 600 - expected_val, "val": expected_val}  # a quarter of each class
    assert data["held_out"] == {"valid_pct": 0.25, "seed": 0}
    assert runs["a"].record["data"]["sha256"] == runs["b"].record["data"]["sha256"]  # the seed draws the part
    assert runs["a"].record["data"]["sha256"]["val"] != runs["c"].record["data"]["sha256"]["val"]
    summary = runs["a"].summary
    assert set(summary) & {"val", "test"} == {"val"} and summary["weights"] == "best"  # chosen on val; test unread
    assert not (tmp_path / "a" / "curves.png").exists() and runs["a"].config.plots is False
    with pytest.raises(DataError, match="not an IDX file"):  # without hold_out the test split is read
        train_scratch("softmax", "fashion-mnist", out=tmp_path / "d", data_root=root, epochs=1, progress=False)


def test_arch_options_build_the_network_and_apply_from_scratch_only(tmp_path, root):
    run = train_scratch("mlp_relu", "fashion-mnist", out=tmp_path / "r", data_root=root, epochs=1, hold_out=True,
                        arch_options={"hidden": [48, 24], "dropout": 0.1}, progress=False)
    import zoo

    model = zoo.load(run.path)  # the build spec carries the options
    assert [m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear)] == [48, 24, 10]
    with pytest.raises(ConfigError, match="arch_options change the architecture"):
        FinetuneConfig(arch_options={"hidden": [8]})
    with pytest.raises(ConfigError, match="must be a dict"):
        FinetuneConfig(pretrained=False, arch_options=[8])


def test_fit_runs_on_the_split_it_is_given(tmp_path):
    data = make_folder(tmp_path / "photos", {"ants": 8, "bees": 8, "wasps": 8})
    split = scan(data, valid_pct=0.25, seed=0)
    split.parts["train"] = split.parts["train"][:9]  # a split that a scan would not make
    run = fit(tiny_model(3), data, FinetuneConfig(strategy="full", epochs=1), out=tmp_path / "run", split=split,
              batch_size=4, progress=False)
    manifest = json.loads((tmp_path / "run" / "split.json").read_text())
    assert [s["path"] for s in manifest["parts"]["train"]] == [s.path for s in split.train]
    assert run.summary["val"]["n"] == len(split.val)
    with pytest.raises(ConfigError, match="resume continues on the run's stored split"):
        fit(tiny_model(3), data, out=tmp_path / "run", resume=True, split=split)


@pytest.mark.parametrize("strategy, scale, expected", [("partial", 0.3, [0.3]), ("partial", None, [1.0]),
                                                       ("full", 0.01, [0.01, 0.046416, 0.215443]),
                                                       ("full", None, [0.1, 0.215443, 0.464159])])
def test_body_lr_scale_sets_the_body_learning_rates(strategy, scale, expected):
    plan = prepare(tiny_model(3), strategy, num_classes=3, body_lr_scale=scale)
    body = [g["lr_scale"] for g in plan.groups if g["name"] != "head"]
    assert body == pytest.approx(expected, rel=1e-5)
    assert [g["lr_scale"] for g in plan.groups if g["name"] == "head"] == [1.0]


def test_body_lr_scale_applies_when_pretrained_body_layers_train():
    assert FinetuneConfig(strategy="full", body_lr_scale=0.05).body_lr_scale == 0.05
    for bad in (dict(strategy="linear", body_lr_scale=0.1), dict(strategy="full", pretrained=False, body_lr_scale=0.1),
                dict(strategy="full", body_lr_scale=0.0)):
        with pytest.raises(ConfigError, match="body_lr_scale"):
            FinetuneConfig(**bad)
