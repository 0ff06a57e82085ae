"""``zoo train`` writes the same run folder as ``zoo finetune`` (predict, evaluate, register, runs and
resume work on it), picks a folder's input size and colour from its images, refuses pretrained names,
prints its resume command on Ctrl-C; ``zoo train`` and ``zoo demo`` write no carriage returns to a log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from ftdata import make_folder, real_digits  # noqa: E402

import zoo  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clirun import default_signals, zoo_cli  # noqa: E402





@pytest.fixture(autouse=True)
def _threads():
    import torch

    torch.set_num_threads(2)


def test_a_run_from_scratch_is_a_run_like_any_other(tmp_path, capsys):
    data = make_folder(tmp_path / "photos", {"ants": 10, "bees": 10}, size=64)  # 64 px colour images
    run = tmp_path / "run"
    code, out, err = zoo_cli(capsys, "train", "lenet", "--data", data, "--epochs", "2", "--batch-size", "8",
                             "--device", "cpu", "--out", run)
    assert code == 0, err
    assert "input 3x64x64 (colour), from the images (median shorter side 64 px" in out
    assert out.count("epoch ") >= 2 and "val accuracy" in out and "best by validation accuracy" in out
    record = json.loads((run / "config.json").read_text())
    assert record["kind"] == "scratch" and record["command"].startswith("zoo train lenet --data")
    assert record["data"]["input"]["size"] == [3, 64, 64] and record["config"]["input_size"] == 64
    assert {"README.md", "split.json", "skipped.tsv", "metrics.json", "model.safetensors"} <= set(os.listdir(run))
    model = zoo.load(run)
    assert model.input_size == (3, 64, 64) and model.labels == ("ants", "bees")

    images = sorted((data / "bees").glob("*.png"))[:2]
    code, out, err = zoo_cli(capsys, "predict", run, *images, "--json")
    assert code == 0 and all(json.loads(line)["top"][0]["label"] in ("ants", "bees") for line in out.splitlines())
    code, out, err = zoo_cli(capsys, "evaluate", run, data, "--json")
    assert code == 0 and json.loads(out)["n"] == 20
    code, out, err = zoo_cli(capsys, "register", run, "--name", "bugs.scratch")
    assert code == 0, err
    assert zoo.get_entry("bugs.scratch").license == "unknown"
    code, out, err = zoo_cli(capsys, "runs", run, "--json")
    row = json.loads(out)[0]
    assert code == 0 and row["kind"] == "scratch" and row["strategy"] == "scratch" and row["epochs"] == 2

    code, out, err = zoo_cli(capsys, "train", "lenet", "--data", data, "--out", run, "--resume", "--epochs", "3",
                             "--device", "cpu")
    assert code == 0, err
    assert [r["epoch"] for r in zoo.finetune.load_run(run).history] == [1, 2, 3]

    # The options choose instead of the images, and say so.
    code, out, err = zoo_cli(capsys, "train", "softmax", "--data", data, "--epochs", "1", "--input-size", "20",
                             "--grey", "--device", "cpu", "--checkpoint-interval", "0.5", "--out", tmp_path / "small")
    assert code == 0, err
    assert "input 1x20x20 (grey), from options" in out
    assert zoo.finetune.load_run(tmp_path / "small").config.train.checkpoint_interval == 0.5
    assert zoo.load(tmp_path / "small").input_size == (1, 20, 20)


def test_a_folder_trains_with_choices_from_its_images_not_the_recipe(tmp_path, capsys):
    """The lenet recipe is sized for 60,000 Fashion-MNIST images (6 epochs in batches of 128, flips). On a
    folder, what the user leaves out is chosen from the images as `zoo finetune` chooses it, said and
    recorded; on real digits that beats the recipe's settings given as flags."""
    digits = real_digits(tmp_path / "digits", per_class=30, test_per_class=30)
    code, out, err = zoo_cli(capsys, "train", "lenet", "--data", digits / "train", "--device", "cpu",
                             "--out", tmp_path / "chosen")
    assert code == 0, err
    record = json.loads((tmp_path / "chosen" / "config.json").read_text())
    assert set(record["chosen"]) == {"epochs", "lr", "warmup_epochs", "batch_size", "early_stopping", "augment"}
    cfg = record["config"]
    # 240 training images (a fifth held out) of 28 px, 24 a class: batches of 8, no flips for a few small images
    assert cfg["batch_size"] == 8 and cfg["augment"] == "none" and cfg["lr"] == record["chosen"]["lr"]["value"]
    assert f"chose lr {cfg['lr']:g}: LR finder on the" in out and "chose augment none: the input is small" in out
    # With the rate swept, the optimizer settings are fine-tuning's (AdamW, cosine), not the recipe's one-cycle.
    assert cfg["train"]["schedule"] == "cosine" and cfg["train"]["weight_decay"] == 0.05
    assert record["base"]["recipe"] is None and "settings from the data, as zoo finetune chooses them" in out

    recipe = ["--epochs", "6", "--batch-size", "128", "--lr", "0.003", "--augment", "flip"]  # the recipe, given
    code, out, err = zoo_cli(capsys, "train", "lenet", "--data", digits / "train", "--device", "cpu",
                             "--out", tmp_path / "recipe", *recipe)
    assert code == 0, err
    given = json.loads((tmp_path / "recipe" / "config.json").read_text())
    assert set(given["chosen"]) == {"warmup_epochs", "early_stopping"} and given["config"]["lr"] == 0.003
    assert given["base"]["recipe"] == "lenet" and given["config"]["train"]["schedule"] == "onecycle"
    accuracy = {}
    for name in ("chosen", "recipe"):
        code, out, err = zoo_cli(capsys, "evaluate", tmp_path / name, digits / "test", "--json")
        assert code == 0, err
        accuracy[name] = json.loads(out)["accuracy"]
    assert accuracy["chosen"] > 0.7 and accuracy["chosen"] > accuracy["recipe"] + 0.1, accuracy


def test_pretrained_names_and_bad_options_are_refused(tmp_path, capsys):
    data = make_folder(tmp_path / "photos", {"a": 4, "b": 4})
    code, _, err = zoo_cli(capsys, "train", "lenet.fmnist5", "--data", data, "--out", tmp_path / "r")
    assert code == 1 and "pretrained weights" in err and "zoo finetune lenet.fmnist5 DATA_DIR" in err
    assert not (tmp_path / "r").exists()
    code, _, err = zoo_cli(capsys, "train", "lenet", "--data", data, "--classes", "0,1", "--out", tmp_path / "r")
    assert code == 1 and "class folders" in err
    code, _, err = zoo_cli(capsys, "train", "lenet", "--data", data, "--classes", "a,b")
    assert code == 2 and "0,1,2" in err


def _spawn(args: list[str], out: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as err, open(out, "wb") as std:
        return subprocess.Popen([sys.executable, "-m", "zoo.cli.main", *args], stdout=std, stderr=err,
                                env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"},
                                preexec_fn=default_signals)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_prints_the_resume_command_and_logs_have_no_carriage_returns(tmp_path, capsys, signum):
    data = make_folder(tmp_path / "photos", {"a": 8, "b": 8})
    run = tmp_path / "run"
    child = _spawn(["train", "lenet", "--data", str(data), "--epochs", "400", "--batch-size", "4", "--device",
                    "cpu", "--out", str(run)], tmp_path / "out.txt", tmp_path / "err.txt")
    try:
        # Interrupt once the first epoch has been logged (and so checkpointed): the line is the signal,
        # whatever order the loop writes its checkpoint and its log in.
        deadline = time.monotonic() + 120
        while b"epoch   1" not in (tmp_path / "out.txt").read_bytes() or not (run / "checkpoint.pt").exists():
            assert child.poll() is None, (tmp_path / "err.txt").read_text()
            assert time.monotonic() < deadline, "no epoch logged after 120 s"
            time.sleep(0.05)
        child.send_signal(signum)
        code = child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    err = (tmp_path / "err.txt").read_bytes()
    assert code == 130 and b"\r" not in err and b"\r" not in (tmp_path / "out.txt").read_bytes()
    hint = f"zoo train lenet --data {data} --out {run} --resume"
    assert hint.encode() in err
    assert b"epoch   1" in (tmp_path / "out.txt").read_bytes()  # per-epoch lines, no bar, in a log
    code, out, err = zoo_cli(capsys, *hint.split()[1:], "--epochs", "2", "--device", "cpu")
    assert code == 0, err
    epochs = [r["epoch"] for r in zoo.finetune.load_run(run).history]
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) >= 2


@pytest.mark.slow
def test_demo_log_has_no_carriage_returns(tmp_path):
    child = _spawn(["demo", "--epochs", "2", "--out", str(tmp_path / "demo")], tmp_path / "out.txt",
                   tmp_path / "err.txt")
    assert child.wait(timeout=300) == 0, (tmp_path / "err.txt").read_text()
    out, err = (tmp_path / "out.txt").read_bytes(), (tmp_path / "err.txt").read_bytes()
    assert b"\r" not in out + err
    assert b"epoch   2" in out and b"Held-out test folder" in out
    quiet = _spawn(["demo", "--epochs", "1", "-q", "--out", str(tmp_path / "demo")], tmp_path / "q.txt",
                   tmp_path / "qerr.txt")
    assert quiet.wait(timeout=300) == 0
    text = (tmp_path / "q.txt").read_text()
    assert "epoch   1" not in text and "Held-out test folder" in text and "demo-2" in text
