"""Defaults chosen from the data and the model: the batch size and schedule from the number of images,
the augmentation from the input and image sizes, the learning rate by the LR finder (fastai's valley
rule), the head trained alone before the body, ties between epochs broken by the loss; and, on a small
real folder, the defaults against the constants they replace."""

from __future__ import annotations

import importlib
import json
import math
import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from ftdata import make_folder, write_lenet_entry
from PIL import Image

from zoo.finetune import FinetuneConfig, fit
from zoo.finetune.augment import Augmentation, choose_augmentation
from zoo.finetune.defaults import choose_batch_size, choose_schedule
from zoo.finetune.lr_find import LRFinder
from zoo.finetune.train_config import is_better

torch.set_num_threads(2)


@pytest.mark.parametrize("n_train, batch", [(5, 8), (40, 8), (96, 8), (160, 8), (480, 16), (600, 32), (1100, 64),
                                            (60000, 64)])
def test_batch_size_grows_with_the_images_within_8_to_64(n_train, batch):
    choice = choose_batch_size(n_train)
    assert choice.value == batch and str(n_train) in choice.why


def test_schedule_fills_only_what_was_left_open():
    small, why = choose_schedule(FinetuneConfig(strategy="full"), 96)
    large, _ = choose_schedule(FinetuneConfig(strategy="full"), 60000)
    assert set(why) == {"batch_size", "epochs", "early_stopping", "warmup_epochs", "head_epochs"}
    # Few images: more epochs of small batches; many: the fewest epochs of the largest batches.
    assert small.batch_size < large.batch_size and small.epochs > large.epochs >= 5
    assert small.head_epochs > 0 and 1 <= small.early_stopping < small.epochs and small.lr is None
    linear, _ = choose_schedule(FinetuneConfig(strategy="linear"), 96)
    assert linear.head_epochs == 0 and linear.epochs > small.epochs  # a head on features: cheap epochs
    scratch, why = choose_schedule(FinetuneConfig(strategy="full", pretrained=False), 96)
    assert scratch.head_epochs == 0 and "no pretrained features" in why["head_epochs"].why
    given, why = choose_schedule(FinetuneConfig(strategy="full", epochs=3, batch_size=5, early_stopping=0, lr=0.1), 96)
    assert (given.epochs, given.batch_size, given.early_stopping) == (3, 5, 0)
    assert "epochs" not in why and "batch_size" not in why
    assert given.loop_config().early_stopping is None  # 0: never


def test_augmentation_follows_the_input_and_the_image_size(tmp_path):
    small = choose_augmentation(28, 150)
    assert (small.kind, small.pad, small.flip) == ("shift_flip", 3, True)
    assert choose_augmentation(28, 150, per_class=500).kind == "shift_flip"
    few = choose_augmentation(28, 150, per_class=20)  # measured: shifts and flips cost accuracy there
    assert few.kind == "none" and "few images (20 a class)" in few.why
    # Photo-sized input: crops when the images are at least the input's size, none when they are magnified
    # to reach it (measured: crops and flips cost 150 px photos points at 224, BENCHMARKS.md).
    assert choose_augmentation(224, 150, per_class=500).kind == "none"
    assert "smaller than the input (224 px)" in choose_augmentation(224, 150).why
    for side in (224, 1000, None):
        photo = choose_augmentation(224, side)
        assert (photo.kind, photo.min_area, photo.flip) == ("resized_crop_flip", 0.35, True)
    # Real transforms on a real image: the output is the model's input, and it varies.
    from zoo.model import ZooModel
    from zoo.registry.schema import Preprocessing

    pre = Preprocessing(input_size=(3, 32, 32), resize=32, mean=(0.5,) * 3, std=(0.25,) * 3)
    model = ZooModel(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2), num_features=3 * 32 * 32, preprocessing=pre)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8))
    for aug in (choose_augmentation(32, 90), Augmentation("resized_crop_flip", min_area=0.5, flip=True)):
        outs = torch.stack([aug.transform(model)(image) for _ in range(8)])
        assert outs.shape == (8, 3, 32, 32)
        assert (outs - outs[0]).abs().amax() > 0.1  # random: not every draw the same
    assert torch.equal(Augmentation().transform(model)(image), model.transforms(image))


def test_valley_rule_picks_inside_the_fall_not_past_the_minimum():
    # Flat up to lr 1e-5, falling to lr 1e-2, then climbing: the suggestion is inside the fall, well
    # before the minimum.
    lrs = [10 ** (-6 + 5 * i / 99) for i in range(100)]
    losses = [2.0 if lr < 1e-5 else max(0.2, 2.0 - 0.6 * math.log10(lr / 1e-5)) + (max(0, math.log10(lr / 1e-2)) * 3)
              for lr in lrs]
    finder = LRFinder(beta=0.0)  # no smoothing: the curve as given
    for lr, loss in zip(lrs, losses, strict=True):
        finder.lrs.append(lr)
        finder.losses.append(loss)
    result = finder.result()
    at = lrs.index(result.suggestion)
    assert 1e-5 < result.suggestion < 1e-2 and losses[at + 1] < losses[at - 1]
    assert result.suggestion < result.min_loss_lr


def test_an_accuracy_tie_goes_to_the_lower_loss():
    best = {"epoch": 2, "val_acc": 0.9, "val_loss": 0.30}
    assert is_better({"epoch": 3, "val_acc": 0.9, "val_loss": 0.25}, best, "val_acc")
    assert not is_better({"epoch": 3, "val_acc": 0.9, "val_loss": 0.35}, best, "val_acc")
    assert is_better({"epoch": 3, "val_acc": 0.95, "val_loss": 0.50}, best, "val_acc")
    assert not is_better({"epoch": 3, "val_loss": float("nan")}, best, "val_loss")
    assert is_better({"epoch": 1, "val_loss": 0.2}, {}, "val_loss")


def test_fit_with_no_options_chooses_says_why_and_trains_the_head_first(tmp_path, capsys):
    base = write_lenet_entry(Path(os.environ["ZOO_CONFIG_DIR"]))
    data = make_folder(tmp_path / "data", {"ants": 15, "bees": 15, "cats": 15}, size=40)
    run = fit(base, data, out=tmp_path / "run", strategy="full", device="cpu")
    record = json.loads((run.path / "config.json").read_text())
    chosen = record["chosen"]
    assert {"lr", "batch_size", "epochs", "early_stopping", "head_epochs"} <= set(chosen)
    assert "LR finder on the new head (cached features)" in chosen["lr"]["why"]
    config = record["config"]
    assert config["lr"] == chosen["lr"]["value"] > 0 and config["batch_size"] == chosen["batch_size"]["value"] == 8
    head = record["head_phase"]
    assert head["epochs"] >= 1 and head["lr"] > 0 and head["val_acc"] is not None
    # The pretrained side's input is 16 px and there are 12 training images a class: no augmentation.
    assert record["augmentation"]["kind"] == "none"
    err = capsys.readouterr().err
    assert "chose lr" in err and "head alone on cached features" in err and "few images (12 a class)" in err
    assert len(run.history) <= config["epochs"] and run.history[-1]["train_loss"] < run.history[0]["train_loss"]
    # A resumed run keeps what was chosen: nothing is chosen again.
    assert run.config.lr == config["lr"] and run.config.head_epochs == chosen["head_epochs"]["value"]


def test_a_run_shorter_than_the_lr_sweep_takes_adamw_s_usual_rate_and_says_so(tmp_path, monkeypatch):
    """An LR sweep on the images takes 100 steps: a run planning fewer (from random weights, 2 epochs) would
    spend longer choosing its rate than training, so it takes AdamW's 1e-3 and sweeps nothing; SGD and a
    run of 100 steps or more sweep."""
    fit_module = importlib.import_module("zoo.finetune.fit")
    swept = []
    real = fit_module.sweep_for_run
    monkeypatch.setattr(fit_module, "sweep_for_run", lambda *a, **k: swept.append(1) or real(*a, **k))
    base = write_lenet_entry(Path(os.environ["ZOO_CONFIG_DIR"]))
    data = make_folder(tmp_path / "data", {"ants": 15, "bees": 15, "cats": 15}, size=40)

    def chosen_lr(out, **options):
        run = fit(base, data, out=tmp_path / out, strategy="full", pretrained=False, device="cpu",
                  **{"epochs": 2, **options})
        return json.loads((run.path / "config.json").read_text())["chosen"]["lr"], run

    lr, run = chosen_lr("short")
    steps = 2 * math.ceil(len(run.split.train) / run.config.batch_size)
    assert lr["value"] == run.config.lr == 1e-3 and not swept
    assert f"AdamW's usual rate: the run plans {steps} steps, fewer than the 100" in lr["why"]
    assert run.history[-1]["train_loss"] < run.history[0]["train_loss"]
    lr, _ = chosen_lr("sgd", optimizer="sgd")
    assert swept and lr["why"].startswith("LR finder on the")
    swept.clear()
    lr, _ = chosen_lr("long", epochs=100 // steps * 2 + 2)
    assert swept and lr["why"].startswith("LR finder on the")


def test_a_learning_rate_given_is_the_head_alone_phase_s_too(tmp_path):
    """fastai's fine_tune(base_lr) trains its frozen phase at base_lr: a rate given is not swept over."""
    base = write_lenet_entry(Path(os.environ["ZOO_CONFIG_DIR"]))
    data = make_folder(tmp_path / "data", {"ants": 15, "bees": 15, "cats": 15}, size=40)
    run = fit(base, data, out=tmp_path / "run", strategy="full", lr=0.02, device="cpu")
    record = json.loads((run.path / "config.json").read_text())
    assert record["config"]["lr"] == 0.02 and "lr" not in record["chosen"]
    head = record["head_phase"]
    assert head["lr"] == 0.02 and "given" in head["lr_why"] and head["epochs"] >= 1


@pytest.mark.slow
def test_on_a_small_real_folder_the_defaults_beat_the_old_constants(tmp_path):
    """The bundled folder of real Fashion-MNIST images (five classes the embedded LeNet never saw, 40
    per class, and a test folder of 20 per class): `fit` with no options against the constants the
    defaults replaced (lr 1e-3, 10 epochs, batch 64, random resized crops of 35-100%, the weights of
    the lowest validation loss)."""
    fit_module = importlib.import_module("zoo.finetune.fit")  # the module: zoo.finetune.fit is also the function

    folder = resources.files("zoo").joinpath("assets", "demo", "fashion5")
    with resources.as_file(folder) as data:
        defaults = fit("lenet.fmnist5", data, out=tmp_path / "defaults", strategy="full", device="cpu",
                       progress=False)
        saved = fit_module.choose_augmentation
        fit_module.choose_augmentation = lambda side, image_side, per_class=None: Augmentation(
            "resized_crop_flip", min_area=0.35, flip=True)
        try:
            old = fit("lenet.fmnist5", data, out=tmp_path / "old", strategy="full", device="cpu", progress=False,
                      lr=1e-3, epochs=10, batch_size=64, warmup_epochs=1.0, head_epochs=0, early_stopping=0,
                      monitor="val_loss")
        finally:
            fit_module.choose_augmentation = saved
    new_acc, old_acc = defaults.summary["test"]["accuracy"], old.summary["test"]["accuracy"]
    assert defaults.summary["test"]["n"] == 100
    assert new_acc >= 0.8 and new_acc >= old_acc + 0.2, (new_acc, old_acc)
