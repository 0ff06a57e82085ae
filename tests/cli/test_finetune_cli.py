"""``zoo finetune / evaluate / predict / lr-find / register`` through the real entry point (in process)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from ftdata import make_folder, write_lenet_entry  # noqa: E402

from zoo.cli.main import main  # noqa: E402
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clirun import zoo_cli  # noqa: E402




@pytest.fixture
def base():
    import torch

    torch.set_num_threads(2)
    return write_lenet_entry(Path(os.environ["ZOO_CONFIG_DIR"]))


def test_finetune_evaluate_predict_register(tmp_path, capsys, base):
    data = make_folder(tmp_path / "data", {"ants": 8, "bees": 8})
    (data / "ants" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    run = tmp_path / "run"
    code, out, err = zoo_cli(capsys, "finetune", base, data, "--out", run, "--epochs", "3", "--lr", "0.05",
                             "--device", "cpu")
    assert code == 0, err
    assert "2 classes, train 12, val 4" in out
    assert "skipped 1 file(s)" in out and "ants/bad.jpg" in out
    assert out.count("epoch ") >= 3 and "accuracy" in out and f"zoo.load({str(run)!r})" in out
    config = json.loads((run / "config.json").read_text())
    assert config["command"] == f"zoo finetune {base} {data} --out {run} --device cpu --epochs 3 --lr 0.05"
    assert (run / "skipped.tsv").read_text().count("\n") == 2

    code, out, err = zoo_cli(capsys, "evaluate", run, data, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n"] == 16 and set(report["per_class"]) == {"ants", "bees"} and len(report["skipped"]) == 1

    images = sorted((data / "bees").glob("*.png"))[:2]
    code, out, err = zoo_cli(capsys, "predict", run, *images, "--top-k", "1", "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and lines[0]["top"][0]["label"] in ("ants", "bees")
    code, out, err = zoo_cli(capsys, "predict", run, images[0], data / "ants" / "bad.jpg")
    assert code == 0 and "bad.jpg" in err and str(images[0]) in out  # one readable image is enough

    code, out, err = zoo_cli(capsys, "register", run, "--name", "bugs.ft")
    assert code == 0, err
    code, out, err = zoo_cli(capsys, "list", "--source", "local")
    assert code == 0 and "bugs.ft" in out


def test_bad_inputs_exit_1_with_a_message(tmp_path, capsys, base):
    data = make_folder(tmp_path / "data", {"ants": 4, "bees": 4})
    code, _, err = zoo_cli(capsys, "finetune", base, data, "--out", tmp_path / "r", "--cut", "nolayer")
    assert code == 1 and "nolayer" in err and "features.conv1" in err
    code, _, err = zoo_cli(capsys, "finetune", base, tmp_path / "missing", "--out", tmp_path / "r2")
    assert code == 1 and "does not exist" in err
    one = make_folder(tmp_path / "one", {"only": 3})
    code, _, err = zoo_cli(capsys, "finetune", base, one, "--out", tmp_path / "r3")
    assert code == 1 and "at least two" in err
    code, _, err = zoo_cli(capsys, "evaluate", tmp_path / "nothing", data)
    assert code == 1 and "no run folder" in err
    code, _, err = zoo_cli(capsys, "finetune", base, data, "--out", tmp_path / "r4", "--resume")
    assert code == 1 and "resume" in err


def test_lr_find(tmp_path, capsys, base):
    data = make_folder(tmp_path / "data", {"a": 6, "b": 6})
    code, out, err = zoo_cli(capsys, "lr-find", base, data, "--strategy", "full", "--batch-size", "4",
                             "--steps", "30", "--start-lr", "1e-5", "--end-lr", "1", "--json", "--device", "cpu")
    assert code == 0, err
    result = json.loads(out)
    assert len(result["lrs"]) >= 5 and "suggestion" in result


def test_help_does_not_import_torch():
    import subprocess

    code = ("import sys; from zoo.cli.main import main\n"
            "try:\n    main(['finetune', '--help'])\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--unfreeze-from" in proc.stdout


def test_cli_options_are_the_config_fields_with_the_config_defaults():
    import dataclasses

    from zoo.cli.finetune import MODEL_OPTIONS, SCHEDULE_OPTIONS
    from zoo.cli.train import TRAIN_OPTIONS
    from zoo.finetune import FinetuneConfig
    from zoo.finetune.config import SCHEDULE_FIELDS
    from zoo.finetune.loop import TrainConfig
    from zoo.finetune.strategies import HEADS, STRATEGIES

    config, loop = FinetuneConfig(), TrainConfig()
    own = {f.name for f in dataclasses.fields(FinetuneConfig)} - {"train"}
    loop_names = {f.name for f in dataclasses.fields(TrainConfig)} - set(SCHEDULE_FIELDS)
    for name, flags, settings in MODEL_OPTIONS + SCHEDULE_OPTIONS + TRAIN_OPTIONS:
        assert name in own | loop_names, f"{flags[0]} maps to no config field ({name})"
        default = getattr(config, name) if name in own else getattr(loop, name)
        if "default" in settings and settings["default"] is not None:
            assert settings["default"] == default, f"{flags[0]}: CLI default {settings['default']!r} != {default!r}"
    finetune_fields = {name for name, _, _ in MODEL_OPTIONS + SCHEDULE_OPTIONS}
    # Fields `zoo finetune` leaves out on purpose: they apply to in-memory data sets or to training from
    # random weights (`zoo train`), or a search sets them for its trials (plots: `zoo tune`).
    assert own - finetune_fields == {"classes", "input_size", "grey", "arch_options", "hold_out", "plots"}
    choices = {name: settings["type"].choices for name, _, settings in MODEL_OPTIONS if name in ("strategy", "head")}
    assert tuple(choices["strategy"]) == STRATEGIES and tuple(choices["head"]) == HEADS


def test_runs_compares_runs_side_by_side(tmp_path, capsys, base):
    data = make_folder(tmp_path / "data", {"ants": 6, "bees": 6})
    make_folder(tmp_path / "data_t" / "test", {"ants": 2, "bees": 2}, seed=4)
    for name, strategy in (("lin", "linear"), ("full", "full")):
        code, _, err = zoo_cli(capsys, "finetune", base, data, "--out", tmp_path / "runs" / name, "--strategy",
                               strategy, "--epochs", "2", "--device", "cpu", "-q")
        assert code == 0, err
    code, out, err = zoo_cli(capsys, "runs", tmp_path / "runs" / "lin", tmp_path / "runs" / "full", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["strategy"] for r in rows] == ["linear", "full"] and all(r["model"] == base for r in rows)
    assert all(r["epochs"] == 2 and r["data"] == "data" and 1 <= r["best_epoch"] <= 2 for r in rows)
    assert all(isinstance(r["val_accuracy"], float) and r["test_accuracy"] is None for r in rows)
    code, out, err = zoo_cli(capsys, "runs", tmp_path / "runs")  # a folder of runs stands for them all
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["run", "model", "strategy", "data"] and len(lines) == 3
    assert "linear" in out and "full" in out and "2/2" in out
    code, _, err = zoo_cli(capsys, "runs", tmp_path / "data")
    assert code == 1 and "not a run folder" in err


def test_quiet_keeps_the_summary_only(tmp_path, capsys, base):
    data = make_folder(tmp_path / "data", {"ants": 6, "bees": 6})
    code, out, err = zoo_cli(capsys, "finetune", base, data, "--out", tmp_path / "r", "--epochs", "2",
                             "--device", "cpu")
    assert code == 0 and out.count("epoch ") >= 2 and "train 10" in out
    code, out, err = zoo_cli(capsys, "finetune", base, data, "--out", tmp_path / "q", "--epochs", "2",
                             "--device", "cpu", "-q")
    assert code == 0 and "epoch   1" not in out and "train 10" not in out and "\r" not in out + err
    assert "val: accuracy" in out and "weights: epoch" in out and "run: " in out
