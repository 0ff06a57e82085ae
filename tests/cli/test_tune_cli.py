"""``zoo tune``: usage errors (exit 2), a bad space file (one line, exit 1, before any trial), a study
end to end with --json and --report, fine-tuning a pretrained model on a folder whose test/ part the
search never uses (evaluated once afterwards with zoo evaluate), and --jobs running trials in worker
processes."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clirun import zoo_cli  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from ftdata import fmnist_subset, real_digits  # noqa: E402

pytest.importorskip("optuna", reason="zoo tune needs optuna (pip install zoo[tune])")

DEMO = Path(__file__).resolve().parents[2] / "zoo" / "assets" / "demo" / "fashion5"


@pytest.fixture(autouse=True)
def _threads():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The first 1,200 training and 200 test images of the real Fashion-MNIST, as IDX files."""
    return fmnist_subset(tmp_path_factory.mktemp("fmnist_cli"), 1200, 200)


@pytest.mark.parametrize("args, says", [
    ([], "give MODEL DATA"),
    (["softmax"], "no data: `zoo tune softmax DATA` to fine-tune"),
    (["softmax", "photos", "--data", "fashion-mnist"], "give DATA or --data, not both"),
    (["softmax", "--data", "fashion-mnist", "--report", "x"], "--report STUDY runs no trial"),
    (["softmax", "--data", "fashion-mnist", "--sampler", "bayes"], "'bayes' is not one of"),
])
def test_usage_errors_exit_2(capsys, args, says):
    code, out, err = zoo_cli(capsys, "tune", *args)
    assert code == 2 and says in err and not out


def test_a_bad_space_file_is_one_line_and_exit_1_before_any_trial(capsys, tmp_path, root):
    space = tmp_path / "space.toml"
    space.write_text("lr = { low = 0.1, high = 0.001, log = true }\n")
    code, out, err = zoo_cli(capsys, "tune", "softmax", "--data", "fashion-mnist", "--data-root", root, "--space",
                             space, "--out", tmp_path / "s")
    assert code == 1 and not out and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith(f"Error: space file {space}: parameter 'lr': empty range")
    assert not (tmp_path / "s").exists()
    (tmp_path / "space.json").write_text('{"momentun": [0.9]}')
    code, out, err = zoo_cli(capsys, "tune", "softmax", "--data", "fashion-mnist", "--data-root", root, "--space",
                             tmp_path / "space.json", "--out", tmp_path / "s")
    assert code == 1 and "unknown parameter 'momentun' (did you mean momentum?); valid names: " in err



def test_without_optuna_the_command_says_how_to_install_it(capsys, monkeypatch, tmp_path, root):
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed: find_spec gives None
    code, out, err = zoo_cli(capsys, "tune", "softmax", "--data", "fashion-mnist", "--data-root", root, "--out",
                             tmp_path / "s")
    assert code == 1 and not out and err.count("\n") == 1
    assert "needs optuna, an optional dependency: pip install 'zoo[tune]'" in err
    assert not (tmp_path / "s").exists()

def test_a_study_with_json_then_its_report(capsys, tmp_path, root):
    out = tmp_path / "study"
    code, stdout, err = zoo_cli(capsys, "tune", "mlp_sigmoid", "--data", "fashion-mnist", "--data-root", root,
                                "--out", out, "--sampler", "random", "--trials", "3", "--epochs", "2", "--seed", "2",
                                "--json")
    assert code == 0, err
    result = json.loads(stdout)  # one object, nothing else on stdout
    assert result["trials"]["complete"] == 3 and result["metric"] == "val_acc" and result["sampler"] == "random"
    assert set(result["best"]["params"]) >= {"arch.width", "arch.depth", "lr"}  # the ladder MLP's width and depth
    assert result["best_run"] == str(out / result["best"]["run"]) and Path(result["best_run"]).is_dir()
    assert {Path(p).name for p in result["plots"]} >= {"history.png", "slice.png"}
    record = json.loads((out / "best" / "config.json").read_text())
    hidden = record["config"]["arch_options"]["hidden"]
    assert hidden == [result["best"]["params"]["arch.width"]] * result["best"]["params"]["arch.depth"]
    assert record["command"].startswith("zoo.finetune.train_scratch('mlp_sigmoid', 'fashion-mnist', FinetuneConfig(")
    study = json.loads((out / "study.json").read_text())
    assert study["command"].startswith("zoo tune mlp_sigmoid --data fashion-mnist")

    code, stdout, err = zoo_cli(capsys, "tune", "--report", out)
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[0].split()[:3] == ["trial", "state", "val_acc"] and "arch.width" in lines[0]
    assert [line.split()[1] for line in lines[1:4]] == ["complete"] * 3
    assert f"best: trial {result['best']['trial']}, val_acc {result['best']['value']:.4f}" in stdout
    code, stdout, _ = zoo_cli(capsys, "tune", "--report", out, "--json")
    assert code == 0 and len(json.loads(stdout)["trials"]) == 3
    code, _, err = zoo_cli(capsys, "tune", "--report", tmp_path)
    assert code == 1 and "is not a study folder" in err


def test_a_search_from_scratch_on_a_folder_starts_from_the_datas_choices(capsys, tmp_path):
    """A recipe's schedule is for its data set of tens of thousands of images (lenet: batches of 128-256,
    3-12 epochs): on a folder of 240 real digits the trials start where `zoo train` with no flags does,
    each choosing what the space leaves out from the data, with fine-tuning's optimizer."""
    digits = real_digits(tmp_path / "digits", per_class=30, test_per_class=30)
    out = tmp_path / "study"
    code, stdout, err = zoo_cli(capsys, "tune", "lenet", "--data", digits / "train", "--out", out, "--sampler",
                                "random", "--trials", "2", "--seed", "1", "--json")
    assert code == 0, err
    study = json.loads((out / "study.json").read_text())
    base, space = study["config"], study["space"]["params"]
    assert base["lr"] is None and base["epochs"] is None and base["train"]["optimizer"] == "adamw"
    # 192 training images (a fifth of the 240 held out for validation): batches around the run's own 8,
    # no epochs to search (each run chooses them, with early stopping), an adaptive optimizer's rates.
    assert space["batch_size"]["choices"] == [8, 16] and "epochs" not in space and "momentum" not in space
    assert space["lr"]["low"] == 3e-5 and space["lr"]["high"] == 3e-2
    accuracy = {}
    for trial in sorted((out / "trials").iterdir()):
        record = json.loads((trial / "config.json").read_text())
        assert {"epochs", "early_stopping", "warmup_epochs"} <= set(record["chosen"]), record.get("chosen")
        assert record["config"]["train"]["schedule"] == "cosine" and record["base"]["recipe"] is None
        code, stdout, err = zoo_cli(capsys, "evaluate", trial, digits / "test", "--json")
        if code == 0:
            accuracy[trial.name] = json.loads(stdout)["accuracy"]
        else:  # a trial outside the best --keep (1) has dropped its weights, and the error says so
            assert code == 1 and "a search keeps the weights of its best trials only" in err, err
    assert list(accuracy) == [(out / "best").resolve().name]
    # The recipe's own trials left 400 such digits at 24-82% on validation (BENCHMARKS.md, #13).
    assert min(accuracy.values()) > 0.7, accuracy
    assert all(json.loads((trial / "metrics.json").read_text())["val"]["accuracy"] > 0.6
               for trial in (out / "trials").iterdir())


def test_a_learning_rate_given_is_fixed_for_every_trial_and_leaves_the_space(capsys, tmp_path):
    """`zoo tune ARCH --data FOLDER --lr X`, as `zoo train` takes it: every trial trains at X, the space
    has no lr, and each trial's card names what the trial chose itself, not the lr."""
    digits = real_digits(tmp_path / "digits", per_class=10, test_per_class=2)
    out = tmp_path / "study"
    code, _, err = zoo_cli(capsys, "tune", "lenet", "--data", digits / "train", "--out", out, "--sampler", "random",
                           "--trials", "2", "--epochs", "1", "--lr", "0.02", "--json")
    assert code == 0, err
    study = json.loads((out / "study.json").read_text())
    assert study["config"]["lr"] == 0.02 and "lr" not in study["space"]["params"]
    for trial in sorted((out / "trials").iterdir()):
        record = json.loads((trial / "config.json").read_text())
        assert record["config"]["lr"] == 0.02 and "lr" not in record["chosen"]
        card = (trial / "README.md").read_text()
        named = card.split("chosen from the data: ", 1)[1].split(" (", 1)[0].split(", ")
        assert set(named) == set(record["chosen"]) and "lr" not in named, card


def test_fine_tuning_search_never_uses_the_test_part(capsys, tmp_path):
    data = tmp_path / "fashion5"
    shutil.copytree(DEMO, data)
    out = tmp_path / "study"
    code, stdout, err = zoo_cli(capsys, "tune", "lenet.fmnist5", data, "--out", out, "--trials", "3", "--seed", "1")
    assert code == 0, err
    assert err.count("trial ") >= 3  # a line per trial
    split = json.loads((out / "split.json").read_text())
    assert set(split["parts"]) == {"train", "val"}  # test/ is not in the split the trials get
    for trial in out.glob("trials/*"):
        assert "test" not in json.loads((trial / "metrics.json").read_text())
    best = json.loads((out / "best.json").read_text())
    assert set(best["params"]) == {"lr", "weight_decay", "epochs"}  # the linear strategy's built-in space
    features = json.loads((out / "best" / "metrics.json").read_text())["features"]
    assert features["train"]["hit"]  # the features were computed once, before the trials
    code, stdout, err = zoo_cli(capsys, "evaluate", out / "best", data / "test", "--json")  # the test, once
    assert code == 0 and json.loads(stdout)["n"] == sum(1 for _ in (data / "test").rglob("*.png"))


@pytest.mark.slow
def test_jobs_run_trials_in_worker_processes(capsys, tmp_path, root):
    out = tmp_path / "study"
    code, stdout, err = zoo_cli(capsys, "tune", "softmax", "--data", "fashion-mnist", "--data-root", root, "--out", out,
                                "--sampler", "tpe", "--trials", "4", "--epochs", "2", "--jobs", "2", "--no-plots",
                                "--quiet")
    assert code == 0, err
    import optuna
    from optuna.storages.journal import JournalFileBackend

    study = optuna.load_study(study_name="study",
                              storage=optuna.storages.JournalStorage(JournalFileBackend(str(out / "journal.log"))))
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    pids = {t.user_attrs["worker"]["pid"] for t in trials}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4  # workers do not propose the same point
    assert stdout.startswith(f"study {out}: 4 trials (4 complete)") and not err  # --quiet: the summary only
