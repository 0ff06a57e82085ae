"""The shared training loop: it learns, repeats itself under a seed, checkpoints atomically, resumes
(after SIGKILL and after Ctrl-C), stops early, honours lr_scale groups and frozen parameters."""

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
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from zoo.errors import RunError
from zoo.finetune import loop
from zoo.finetune.loop import StopTraining, TrainConfig, evaluate, train

torch.set_num_threads(1)


def blobs(n: int = 512, seed: int = 0) -> TensorDataset:
    """Three Gaussian blobs in 8-D: a small real classification problem."""
    centres = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)) * 2.0
    g = torch.Generator().manual_seed(seed + 1)
    y = torch.randint(0, 3, (n,), generator=g)
    x = centres[y] + torch.randn(n, 8, generator=g)
    return TensorDataset(x, y)


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))


class ListDataset(Dataset):
    """A plain map-style dataset (no tensors to index): exercises the DataLoader path."""

    def __init__(self, tds: TensorDataset):
        self.x, self.y = tds.tensors

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i]


CFG = dict(epochs=4, batch_size=32, lr=0.05, optimizer="sgd", device="cpu", weight_decay=0.0)


def test_loss_goes_down_and_accuracy_up():
    result = train(mlp(), blobs(), blobs(256, seed=1), TrainConfig(**CFG), progress=False)
    h = result.history
    assert [r["epoch"] for r in h] == [1, 2, 3, 4]
    assert h[-1]["train_loss"] < 0.5 * h[0]["train_loss"]
    assert h[-1]["val_acc"] > 0.9
    assert all(r["images_per_s"] > 0 and r["seconds"] > 0 for r in h)
    assert result.best["val_loss"] == min(r["val_loss"] for r in h)


@pytest.mark.parametrize("wrap", ["tensor", "dataset", "loader"])
def test_same_seed_same_history(wrap):
    def data():
        tds = blobs()
        if wrap == "dataset":
            return ListDataset(tds)
        if wrap == "loader":
            torch.manual_seed(5)
            return DataLoader(ListDataset(tds), batch_size=32, shuffle=True,
                              generator=torch.Generator().manual_seed(5))
        return tds

    cfg = TrainConfig(**{**CFG, "optimizer": "adamw", "lr": 1e-2, "seed": 7, "epochs": 2})
    a = train(mlp(), data(), None, cfg, progress=False).history
    b = train(mlp(), data(), None, cfg, progress=False).history
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    c = train(mlp(), data(), None, TrainConfig(**{**cfg.to_dict(), "seed": 8}), progress=False).history
    if wrap != "loader":  # the caller's loader owns its own shuffle
        assert [r["train_loss"] for r in a] != [r["train_loss"] for r in c]


def test_checkpoint_goes_through_atomic_write_and_loads_safely(tmp_path, monkeypatch):
    written = []
    real = loop.atomic_write

    def spy(path, *args, **kwargs):
        written.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(loop, "atomic_write", spy)
    train(mlp(), blobs(), blobs(64, 1), TrainConfig(**CFG), run_dir=tmp_path, progress=False)
    assert written == [tmp_path / "checkpoint.pt"] * 4
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "epoch", "batch", "step", "history", "config", "rng"} <= set(ckpt)
    assert ckpt["epoch"] == 4 and ckpt["batch"] == 0 and ckpt["step"] == 4 * 16
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_resume_continues_the_epoch_count(tmp_path):
    train(mlp(), blobs(), None, TrainConfig(**{**CFG, "epochs": 2}), run_dir=tmp_path, progress=False)
    result = train(mlp(), blobs(), None, TrainConfig(**CFG), run_dir=tmp_path, resume=True, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="no checkpoint"):
        train(mlp(), blobs(), None, TrainConfig(**CFG), run_dir=tmp_path, resume=True, progress=False)


def test_ctrl_c_mid_epoch_checkpoints_and_resumes_at_that_batch(tmp_path):
    cfg = TrainConfig(**CFG)
    full = train(mlp(), blobs(), None, cfg, progress=False)

    def interrupt(info):
        if info["epoch"] == 1 and info["batch"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(mlp(), blobs(), None, cfg, run_dir=tmp_path, callbacks={"on_step_end": [interrupt]}, progress=False)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (1, 5, 16 + 5)
    resumed = train(mlp(), blobs(), None, cfg, run_dir=tmp_path, resume=True, progress=False)
    # The epoch's order is rebuilt from (seed, epoch) and the done batches skipped: same weights.
    for p, q in zip(full.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert resumed.history[-1]["epoch"] == 4
    assert resumed.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"], rel=1e-6)


SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from zoo.finetune.loop import TrainConfig, train
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 2.0
    y = torch.randint(0, 3, (512,), generator=g)
    data = TensorDataset(centres[y] + torch.randn(512, 8, generator=g), y)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))
    def die(info):
        if sys.argv[2] == "kill" and info["epoch"] == 2 and info["batch"] == 7:
            os.kill(os.getpid(), signal.SIGKILL)   # a real SIGKILL: no handler, no cleanup
    cfg = TrainConfig(epochs=4, batch_size=32, lr=0.05, optimizer="sgd", device="cpu")
    r = train(net, data, data, cfg, run_dir=sys.argv[1], resume=sys.argv[2] == "resume",
              callbacks={"on_step_end": [die]}, progress=False)
    print(repr(r.history[-1]["val_loss"]))
""")


def test_sigkilled_run_leaves_a_loadable_checkpoint_and_resumes(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    def run(run_dir: Path, mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(run_dir), mode], capture_output=True, text=True,
                              env=env, timeout=300)

    clean = run(tmp_path / "clean", "plain")
    assert clean.returncode == 0, clean.stderr
    killed = run(tmp_path / "killed", "kill")
    assert killed.returncode == -signal.SIGKILL
    ckpt = torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["batch"] == 0  # the last whole-epoch checkpoint
    resumed = run(tmp_path / "killed", "resume")
    assert resumed.returncode == 0, resumed.stderr
    assert float(resumed.stdout) == pytest.approx(float(clean.stdout), rel=1e-4)
    rows = [json.loads(x) for x in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]


def test_early_stopping_stops_after_patience():
    cfg = TrainConfig(**{**CFG, "lr": 0.0, "epochs": 20, "early_stopping": 2, "schedule": "constant"})
    result = train(mlp(), blobs(), blobs(64, 1), cfg, progress=False)
    assert result.stopped_early
    assert len(result.history) == 3  # epoch 1 sets the best, 2 and 3 fail to beat it


def test_callback_can_stop_training():
    def stop(info):
        if info["epoch"] == 2:
            raise StopTraining

    result = train(mlp(), blobs(), None, TrainConfig(**CFG), callbacks={"on_epoch_end": [stop]}, progress=False)
    assert len(result.history) == 2 and result.stopped_early


def test_lr_scale_groups_and_frozen_params():
    net = mlp()
    first, last = net[0], net[2]
    before_first = first.weight.detach().clone()
    before_last = last.weight.detach().clone()
    seen_lrs = []

    def record(info):
        if info["step"] == 1:
            seen_lrs.append(info["lr"])

    groups = [{"params": first.parameters(), "lr_scale": 0.0}, {"params": last.parameters(), "lr_scale": 1.0}]
    train(net, blobs(), None, TrainConfig(**{**CFG, "epochs": 1}), param_groups=groups,
          callbacks={"on_step_end": [record]}, progress=False)
    assert torch.equal(first.weight, before_first)  # lr_scale 0 -> never moves
    assert not torch.equal(last.weight, before_last)

    frozen = mlp()
    frozen[0].requires_grad_(False)
    opt = loop._optimizer(frozen, TrainConfig(), None)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert not any(id(p) in in_opt for p in frozen[0].parameters())
    assert all(id(p) in in_opt for p in frozen[2].parameters())
    everything_frozen = mlp().requires_grad_(False)
    with pytest.raises(RunError, match="no trainable parameters"):
        train(everything_frozen, blobs(), None, TrainConfig(**CFG), progress=False)


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "constant"])
def test_schedules_warm_up_and_decay(schedule):
    cfg = TrainConfig(schedule=schedule, warmup_epochs=1, lr=1.0)
    factors = [loop._lr_factor(cfg, s, 100, 10) for s in range(100)]
    assert factors[0] < factors[9] <= 1.0
    if schedule == "constant":
        assert factors[-1] == 1.0
    else:
        assert factors[-1] < 0.01 and max(factors) == pytest.approx(1.0, abs=0.02)


def test_evaluate_reports_predictions_and_restores_mode():
    net = mlp().train()
    ev = evaluate(net, blobs(100), batch_size=30, device="cpu")
    assert ev["n"] == 100 and 0.0 <= ev["accuracy"] <= 1.0
    assert ev["predictions"].shape == (100,) and ev["targets"].shape == (100,)
    assert net.training


def test_unknown_option_and_event_are_errors():
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="unknown callback event"):
        train(mlp(), blobs(), None, TrainConfig(**CFG), callbacks={"on_batch": []}, progress=False)


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    """Resuming from a checkpoint that was changed outside the zoo names the file and says what to do."""
    import pytest
    import torch
    from torch import nn

    from zoo.errors import RunError
    from zoo.finetune.loop import TrainConfig, train

    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    with pytest.raises(RunError, match="checkpoint.pt is not a readable checkpoint"):
        train(nn.Linear(4, 2), data, None, TrainConfig(epochs=1, batch_size=4, device="cpu"),
              run_dir=tmp_path, resume=True, progress=False)
