"""Studies on real Fashion-MNIST images: the study folder (storage, trials.csv, best.json, the best run
that zoo.load opens, plots, the card that says how it was found), a diverging trial, pruning, a
second study refused in the same folder, the test split never read; two processes sharing one
storage run each trial once; a SIGKILLed study resumes by rerunning its command; optuna stays out of
``import zoo.finetune``. A slice of the real data set (1,200 training images; test files that cannot
be read) keeps each trial under a second."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import zoo
from zoo.errors import ConfigError, DataError, RunError
from zoo.finetune import datasets

optuna = pytest.importorskip("optuna", reason="zoo tune needs optuna (pip install zoo[tune])")

from zoo.finetune.search import tune  # noqa: E402
from zoo.finetune.study import Study  # noqa: E402

from ftdata import fmnist_subset  # noqa: E402

torch.set_num_threads(1)  # the suite shares 2 cores


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The first 1,200 training images of the real Fashion-MNIST, and test files that are not IDX
    files: a study that read the test split would fail."""
    root = fmnist_subset(tmp_path_factory.mktemp("fmnist_no_test"), 1200, None)
    with pytest.raises(DataError, match="not an IDX file"):  # what reading it would do
        datasets.load_dataset("fashion-mnist", "test", root=root)
    return root


def _space(tmp_path: Path, text: str) -> str:
    path = tmp_path / "space.toml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_a_study_leaves_its_folder_and_the_best_run_loads(tmp_path, root):
    out = tmp_path / "study"
    study = tune("softmax", "fashion-mnist", data_root=root, out=out, sampler="tpe", trials=5, epochs=2, seed=3,
                 progress=False)
    assert {"study.json", "journal.log", "trials.csv", "best.json", "best", "plots", "trials"} <= set(os.listdir(out))
    rows = study.trials
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3, 4] and {r["state"] for r in rows} == {"complete"}
    assert {"val_acc", "param_lr", "param_weight_decay", "param_batch_size", "seconds", "reason"} <= set(rows[0])
    assert "param_epochs" not in rows[0]  # fixed by epochs=2: out of the built-in space
    best = study.best
    assert best["value"] == max(float(r["val_acc"]) for r in rows) and best["run"] == f"trials/{best['trial']:04d}"
    assert os.readlink(out / "best") == best["run"]
    # The best run is a run like any other, made with the values the study chose.
    model = zoo.load(out / "best")
    x = torch.zeros(2, 1, 28, 28)
    assert model(x).shape == (2, 10)
    assert study.best_config.lr == pytest.approx(best["params"]["lr"]) and study.best_run.complete
    # Only the best trial keeps its weights; no trial keeps a checkpoint.
    kept = sorted(p.parent.name for p in out.glob("trials/*/model.safetensors"))
    assert kept == [f"{best['trial']:04d}"] and not list(out.glob("trials/*/checkpoint.pt"))
    card = (out / "best" / "README.md").read_text()
    assert "## How it was found" in card and "tpe sampler (seed 3)" in card and "the best of 5 trials" in card
    assert "- lr: float log-uniform" in card and f"by validation accuracy ({best['value']:.4f})" in card
    assert {p.name for p in (out / "plots").glob("*.png")} >= {"history.png", "slice.png", "importances.png"}
    # Validation came out of the training split; the test split was never read (it is not IDX here).
    for trial in out.glob("trials/*"):
        record = json.loads((trial / "config.json").read_text())
        assert record["config"]["hold_out"] and set(record["data"]["sizes"]) == {"train", "val"}
        assert "test" not in json.loads((trial / "metrics.json").read_text())
    # Rerunning continues the study: nothing left to do; more trials extend it.
    again = tune("softmax", "fashion-mnist", data_root=root, out=out, sampler="tpe", epochs=2, seed=3, progress=False)
    assert len(again.trials) == 5
    more = tune("softmax", "fashion-mnist", data_root=root, out=out, sampler="tpe", trials=7, epochs=2, seed=3,
                progress=False)
    assert [r["trial"] for r in more.trials] == [str(i) for i in range(7)]


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path, root):
    space = _space(tmp_path, """
        lr = [1e38, 0.05, 0.1]   # 1e38 overflows float32 in the first epoch
        epochs = 2
    """)
    study = tune("softmax", "fashion-mnist", data_root=root, out=tmp_path / "s", sampler="grid", space=space,
                 progress=False, plots=False)
    rows = {float(r["param_lr"]): r for r in study.trials}
    assert set(rows) == {1e38, 0.05, 0.1}
    assert rows[1e38]["state"] == "failed" and rows[1e38]["reason"] == "diverged: train_loss nan at epoch 1"
    assert rows[0.05]["state"] == rows[0.1]["state"] == "complete"
    assert study.best["params"]["lr"] in (0.05, 0.1)


def test_the_median_pruner_stops_trials_that_trail(tmp_path, root):
    space = _space(tmp_path, """
        lr = { low = 1e-5, high = 1.0, log = true }
        epochs = 5
    """)
    study = tune("softmax", "fashion-mnist", data_root=root, out=tmp_path / "s", sampler="random", pruner="median",
                 trials=12, space=space, seed=1, progress=False, plots=False)
    pruned = [r for r in study.trials if r["state"] == "pruned"]
    assert pruned, [(r["state"], r["val_acc"]) for r in study.trials]
    for row in pruned:
        assert int(row["epochs"]) < 5 and row["reason"] == f"pruned at epoch {row['epochs']}"
        history = (tmp_path / "s" / row["run"] / "metrics.jsonl").read_text().splitlines()
        assert len(history) == int(row["epochs"])  # the run really stopped there
    assert sum(r["state"] == "complete" for r in study.trials) >= 5


def test_another_study_in_the_same_folder_is_refused(tmp_path, root):
    out = tmp_path / "s"
    tune("softmax", "fashion-mnist", data_root=root, out=out, sampler="random", trials=1, epochs=1, progress=False,
         plots=False)
    with pytest.raises(RunError, match=r"holds another study \(sampler 'random' there, 'tpe' here\).*--out"):
        tune("softmax", "fashion-mnist", data_root=root, out=out, sampler="tpe", trials=2, epochs=1, progress=False)
    assert len(Study(out).trials) == 1


def test_a_bad_space_fails_before_anything_is_made(tmp_path, root):
    space = _space(tmp_path, "arch.widht = { low = 16, high = 64 }\n")
    with pytest.raises(ConfigError) as info:
        tune("mlp_sigmoid", "fashion-mnist", data_root=root, out=tmp_path / "s", space=space, progress=False)
    assert "unknown parameter 'arch.widht' (did you mean arch.width" in str(info.value)
    assert "arch.depth" in str(info.value) and space in str(info.value)
    assert not (tmp_path / "s").exists()


def test_import_zoo_finetune_does_not_load_optuna():
    code = ("import sys, zoo, zoo.finetune\n"
            "zoo.finetune.fit, zoo.finetune.train_scratch, zoo.finetune.FinetuneConfig\n"
            "import zoo.finetune.scratch, zoo.finetune.fit, zoo.finetune.search_space, zoo.finetune.study\n"
            "assert 'optuna' not in sys.modules, 'optuna imported'\n"
            "zoo.finetune.tune\n"  # the search itself: still no optuna until a study runs
            "assert 'optuna' not in sys.modules, 'optuna imported by zoo.finetune.tune'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


# -- several processes, one storage -------------------------------------------------------------------------

# Runs `zoo tune ...` after patching the per-epoch reporter: at its first trial's first epoch, this
# process says so in BARRIER and waits until the other process does too, so both hold a running
# trial at once and claim the rest side by side.
TOGETHER = """
import sys, time
from pathlib import Path
import zoo.finetune.trials as trials
barrier, me = Path(sys.argv[1]), sys.argv[2]
report = trials.TrialReporter.__call__
def together(self, info):
    if not (barrier / me).exists():
        (barrier / me).touch()
        deadline = time.time() + 300
        while len(list(barrier.iterdir())) < 2 and time.time() < deadline:
            time.sleep(0.05)
    return report(self, info)
trials.TrialReporter.__call__ = together
from zoo.cli.main import main
main(sys.argv[3:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("storage, shared_folder", [("journal", True), ("sqlite", True), ("sqlite", False)],
                         ids=["journal", "sqlite", "sqlite-two-folders"])
def test_two_processes_sharing_one_storage_run_each_trial_once(tmp_path, root, storage, shared_folder):
    """Two `zoo tune` processes on one storage: 6 grid points, 6 trials, none lost or run twice. With
    two folders (as two machines have), only the storage is shared."""
    script, barrier = tmp_path / "together.py", tmp_path / "barrier"
    script.write_text(TOGETHER)
    barrier.mkdir()
    space = _space(tmp_path, "lr = [0.01, 0.05, 0.2]\nbatch_size = [64, 128]\nepochs = 3\n")
    url = f"sqlite:///{tmp_path / 'study.db'}" if storage == "sqlite" else str(tmp_path / "journal.log")
    procs = []
    for i in range(2):
        out = tmp_path / ("study" if shared_folder else f"machine{i}")
        args = ["tune", "softmax", "--data", "fashion-mnist", "--data-root", root, "--out", out, "--sampler", "grid",
                "--space", space, "--storage", url, "--name", "shared", "--no-plots", "--threads", "1", "--quiet"]
        procs.append(subprocess.Popen([sys.executable, str(script), str(barrier), str(i), *map(str, args)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out_text, err_text = p.communicate(timeout=600)
        assert p.returncode == 0, err_text[-3000:]
    study = optuna.load_study(study_name="shared", storage=optuna.storages.RDBStorage(url) if storage == "sqlite"
                              else _journal(url))
    trials = study.get_trials()
    ran = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(ran) == 6 and len({t.number for t in ran}) == 6
    grid = {(lr, bs) for lr in (0.01, 0.05, 0.2) for bs in (64, 128)}
    assert sorted((t.params["lr"], t.params["batch_size"]) for t in ran) == sorted(grid)  # each point once
    assert all(t.user_attrs.get("fail_kind") == "surplus" for t in trials if t not in ran)  # given back unrun
    assert len({t.user_attrs["worker"]["pid"] for t in ran}) == 2
    folders = [tmp_path / "study"] if shared_folder else [tmp_path / "machine0", tmp_path / "machine1"]
    runs = [p for folder in folders for p in folder.glob("trials/*/config.json")]
    assert len(runs) == 6  # one run folder per trial run, in the folder of the process that ran it


def _journal(path: str):
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(path))



# Waits for GO, then opens the storage of sys.argv[1] as a worker does.
OPEN_STORAGE = """
import sys, time
from pathlib import Path
while not Path(sys.argv[2]).exists():
    time.sleep(0.001)
from zoo.finetune.trials import make_storage
make_storage(sys.argv[1])
"""


@pytest.mark.slow
def test_workers_that_open_a_new_database_together_all_start(tmp_path):
    """Three workers open one new SQLite storage at the same moment: they race to create its tables
    and version row (bare optuna loses some of them to an IntegrityError), and every one starts."""
    script, go = tmp_path / "open.py", tmp_path / "go"
    script.write_text(OPEN_STORAGE)
    url = f"sqlite:///{tmp_path / 'new.db'}"
    procs = [subprocess.Popen([sys.executable, str(script), url, str(go)], stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    import time

    time.sleep(3.0)  # let the interpreters start; then release them together
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    assert optuna.get_all_study_names(storage=optuna.storages.RDBStorage(url)) == []  # a valid, empty storage

# Runs `zoo tune ...` and SIGKILLs itself in the middle of trial 2 (after its second epoch).
KILLED = """
import os, signal, sys
import zoo.finetune.trials as trials
report = trials.TrialReporter.__call__
def kill(self, info):
    if self.trial.number == 2 and info["row"]["epoch"] == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return report(self, info)
trials.TrialReporter.__call__ = kill
from zoo.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.slow
def test_a_killed_study_resumes_by_rerunning_its_command(tmp_path, root):
    script, out = tmp_path / "killed.py", tmp_path / "study"
    script.write_text(KILLED)
    args = ["tune", "softmax", "--data", "fashion-mnist", "--data-root", str(root), "--out", str(out), "--sampler",
            "random", "--trials", "5", "--epochs", "3", "--seed", "4", "--no-plots", "--threads", "1"]
    first = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    before = {t.number: t for t in optuna.load_study(study_name="study", storage=_journal(str(out / "journal.log")))
              .get_trials()}
    assert [before[n].state.name for n in sorted(before)] == ["COMPLETE", "COMPLETE", "RUNNING"]
    stamps = {n: (out / f"trials/{n:04d}/config.json").stat().st_mtime_ns for n in (0, 1)}

    again = subprocess.run([sys.executable, "-m", "zoo.cli.main", *args], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    rows = {int(r["trial"]): r for r in Study(out).trials}
    assert rows[2]["state"] == "interrupted" and "its process (pid" in rows[2]["reason"]
    study = optuna.load_study(study_name="study", storage=_journal(str(out / "journal.log")))
    trials = {t.number: t for t in study.get_trials()}
    assert trials[3].user_attrs["retry_of"] == 2 and trials[3].params == before[2].params  # the lost trial, again
    assert [n for n, t in sorted(trials.items()) if t.state.name == "COMPLETE"] == [0, 1, 3, 4, 5]
    for n in (0, 1):  # the finished trials were kept, not rerun
        assert trials[n].value == before[n].value
        assert (out / f"trials/{n:04d}/config.json").stat().st_mtime_ns == stamps[n]
    assert not (out / "trials/0002").exists()  # the partial run of the killed trial is gone
