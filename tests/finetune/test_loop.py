"""The shared training loop: it learns, repeats itself under a seed, checkpoints atomically, stops early,
honours lr_scale groups and frozen parameters, refuses bad options with the valid choices, and its
checkpoint is its state (the keys written are the keys read)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from zoo.errors import ConfigError, RunError
from zoo.finetune import loop, state
from zoo.finetune.loop import StopTraining, TrainConfig, evaluate, train
from zoo.finetune.state import TrainState, load_checkpoint, save_checkpoint

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
    assert h[-1]["val_acc"] > 0.9 and h[-1]["train_acc"] > h[0]["train_acc"]
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
    real = state.atomic_write

    def spy(path, *args, **kwargs):
        written.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(state, "atomic_write", spy)
    cfg = TrainConfig(**CFG, checkpoint_interval=0)  # 0: epoch ends only
    train(mlp(), blobs(), blobs(64, 1), cfg, run_dir=tmp_path, progress=False)
    assert written == [tmp_path / "checkpoint.pt"] * 4
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 4 and ckpt["batch"] == 0 and ckpt["step"] == 4 * 16
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3, 4]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_short_interval_checkpoints_within_the_epoch(tmp_path):
    seen = []
    cfg = TrainConfig(**{**CFG, "epochs": 1}, checkpoint_interval=1e-9)  # due after every step
    train(mlp(), blobs(), None, cfg, run_dir=tmp_path, progress=False,
          callbacks={"on_checkpoint": [lambda info: seen.append((info["epoch"], info["batch"]))]})
    assert seen == [(0, b) for b in range(1, 17)] + [(1, 0)]


def test_an_interrupt_after_the_last_step_still_ends_that_epoch_on_resume(tmp_path):
    """Stopped right after an epoch's last step, before its end: a resume that has no steps left still
    evaluates and logs that epoch."""

    def interrupt(info):
        if info["step"] == 16:  # the last step of epoch 1 (16 batches an epoch)
            raise KeyboardInterrupt

    cfg = TrainConfig(**{**CFG, "epochs": 2}, checkpoint_interval=0)
    with pytest.raises(KeyboardInterrupt):
        train(mlp(), blobs(), blobs(64, 1), cfg, run_dir=tmp_path, progress=False,
              callbacks={"on_step_end": [interrupt]})
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (0, 16, 16)
    result = train(mlp(), blobs(), blobs(64, 1), TrainConfig(**{**CFG, "epochs": 1}, checkpoint_interval=0),
                   run_dir=tmp_path, progress=False, resume=True)
    assert [row["epoch"] for row in result.history] == [1] and result.steps == 16


def _same_state(a: TrainState, b: TrainState) -> None:
    for name in ("epoch", "batch", "step", "epoch_loss", "epoch_correct", "epoch_samples", "epoch_seconds",
                 "history", "best", "bad_epochs", "elapsed", "config"):
        assert getattr(a, name) == getattr(b, name), name
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    for i in sa["state"]:
        for key in sa["state"][i]:
            assert torch.equal(sa["state"][i][key], sb["state"][i][key])


def test_the_checkpoint_is_the_state_and_reads_back_whole(tmp_path):
    def interrupt(info):
        if info["epoch"] == 1 and info["batch"] == 5:
            raise KeyboardInterrupt

    cfg = TrainConfig(**{**CFG, "optimizer": "adamw", "lr": 1e-2})
    with pytest.raises(KeyboardInterrupt):
        train(mlp(), blobs(), blobs(64, 1), cfg, run_dir=tmp_path, callbacks={"on_step_end": [interrupt]},
              progress=False)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    fresh = mlp(1)
    written = TrainState(model=fresh, optimizer=loop._optimizer(fresh, cfg, None))
    # Keys written are keys read: the file holds exactly the state's fields (plus its format).
    assert set(saved) == {"format", *(f for f in TrainState.__dataclass_fields__)}
    written.load_state_dict(saved)
    assert (written.epoch, written.batch, written.step) == (1, 5, 16 + 5)
    assert written.epoch_samples == 5 * 32 and written.epoch_loss > 0 and len(written.history) == 1
    again = tmp_path / "again.pt"
    save_checkpoint(again, written, torch.device("cpu"))
    other = mlp(2)
    read = TrainState(model=other, optimizer=loop._optimizer(other, cfg, None))
    load_checkpoint(again, read)
    _same_state(written, read)
    for key in ("torch", "python", "numpy"):  # the generators as they were at the step reached
        assert str(read.rng[key]) == str(saved["rng"][key])

    saved["extra"] = 1
    with pytest.raises(RunError, match="unexpected \\['extra'\\]"):
        read.load_state_dict(saved)
    del saved["extra"], saved["epoch_rng"]
    with pytest.raises(RunError, match="missing \\['epoch_rng'\\]"):
        read.load_state_dict(saved)


def test_resume_continues_the_epoch_count(tmp_path):
    train(mlp(), blobs(), None, TrainConfig(**{**CFG, "epochs": 2}), run_dir=tmp_path, progress=False)
    result = train(mlp(), blobs(), None, TrainConfig(**CFG), run_dir=tmp_path, resume=True, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 4


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="no checkpoint"):
        train(mlp(), blobs(), None, TrainConfig(**CFG), run_dir=tmp_path, resume=True, progress=False)


def test_resuming_mid_epoch_with_another_batch_size_is_refused(tmp_path):
    def interrupt(info):
        if info["batch"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(mlp(), blobs(), None, TrainConfig(**CFG), run_dir=tmp_path, callbacks={"on_step_end": [interrupt]},
              progress=False)
    with pytest.raises(RunError, match="different batch_size"):
        train(mlp(), blobs(), None, TrainConfig(**{**CFG, "batch_size": 16}), run_dir=tmp_path, resume=True,
              progress=False)


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


def test_max_steps_ends_the_run_and_the_schedule_spans_it():
    lrs = []
    cfg = TrainConfig(**{**CFG, "max_steps": 20, "lr": 1.0}, schedule="exponential", min_lr_ratio=1e-3)
    result = train(mlp(), blobs(), None, cfg, callbacks={"on_step_end": [lambda info: lrs.append(info["lr"])]},
                   progress=False)
    assert result.steps == 20 and [r["epoch"] for r in result.history] == [1, 2]  # 16 + 4 steps
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1.0) and lrs == sorted(lrs)


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


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "constant", "exponential"])
def test_schedules_warm_up_and_decay(schedule):
    cfg = TrainConfig(schedule=schedule, warmup_epochs=1, lr=1.0, min_lr_ratio=1e-4 if schedule == "exponential" else 0)
    factors = [loop.lr_factor(cfg, s, 100, 10) for s in range(100)]
    assert factors[0] < factors[9] <= 1.0
    if schedule == "constant":
        assert factors[-1] == 1.0
    elif schedule == "exponential":  # the LR finder's ramp: geometric from lr * min_lr_ratio up to lr
        assert factors[0] == pytest.approx(1e-4) and factors[-1] == 1.0
        assert factors[50] / factors[49] == pytest.approx(factors[2] / factors[1])
    else:
        assert factors[-1] < 0.01 and max(factors) == pytest.approx(1.0, abs=0.02)


def test_fp16_amp_keeps_its_loss_scaler_in_the_checkpoint(tmp_path):
    cfg = TrainConfig(**{**CFG, "epochs": 2}, amp="fp16")
    result = train(mlp(), blobs(), None, cfg, run_dir=tmp_path, progress=False)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    scaler = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["scaler"]
    assert scaler["scale"] > 0 and "_growth_tracker" in scaler
    with pytest.raises(RunError, match="different amp setting"):
        train(mlp(), blobs(), None, TrainConfig(**CFG), run_dir=tmp_path, resume=True, progress=False)


def test_evaluate_reports_predictions_and_restores_mode():
    net = mlp().train()
    rng = torch.get_rng_state()
    ev = evaluate(net, ListDataset(blobs(100)), batch_size=30, device="cpu")
    assert torch.equal(rng, torch.get_rng_state())  # evaluating draws nothing from the training stream
    assert ev["n"] == 100 and 0.0 <= ev["accuracy"] <= 1.0
    assert ev["predictions"].shape == (100,) and ev["targets"].shape == (100,)
    assert net.training


class _BatchSizes(nn.Module):
    """Logits from the channel means; remembers the size of every batch it sees."""

    def __init__(self):
        super().__init__()
        self.fc, self.sizes = nn.Linear(3, 2), []

    def forward(self, x):
        self.sizes.append(x.shape[0])
        return self.fc(x.mean((2, 3)) if x.ndim == 4 else x)


def test_evaluation_on_the_cpu_takes_large_images_in_small_batches():
    """Batches of 256 photos at 224 px ran up to 2.2x slower on the CPU than batches of 8 (memory-bound);
    small images and features keep the batch asked for, and the figures do not depend on it."""
    torch.manual_seed(0)
    photos = TensorDataset(torch.randn(40, 3, 224, 224), torch.randint(0, 2, (40,)))
    net = _BatchSizes()
    capped = evaluate(net, photos, batch_size=256, device="cpu")
    assert net.sizes == [8] * 5
    net.sizes = []
    one = evaluate(net, photos, batch_size=40, device="cpu")
    assert net.sizes == [8] * 5 and torch.equal(capped["predictions"], one["predictions"])
    assert capped["loss"] == pytest.approx(one["loss"], rel=1e-5)
    for x, sizes in ((torch.randn(300, 3, 28, 28), [256, 44]), (torch.randn(300, 3, 112, 112), [32] * 9 + [12]),
                     (torch.randn(300, 3), [256, 44])):
        net.sizes = []
        evaluate(net, ListDataset(TensorDataset(x, torch.zeros(300, dtype=torch.long))), batch_size=256, device="cpu")
        assert net.sizes == sizes


@pytest.mark.parametrize(("option", "value", "valid"), [
    ("schedule", "cosin", "did you mean 'cosine'"), ("optimizer", "adam", "'adamw', 'sgd'"),
    ("monitor", "val_accuracy", "'val_loss', 'val_acc', 'train_loss', 'train_acc'"),
    ("amp", "float16", "'fp16'"), ("batch_size", 0, "batch_size >= 1"), ("early_stopping", 0, "at least 1"),
])
def test_bad_options_are_config_errors_naming_the_valid_ones(option, value, valid):
    with pytest.raises(ConfigError, match=f"{option}={value!r}") as info:
        TrainConfig(**{option: value})
    assert valid in str(info.value) and "\n" not in str(info.value)


def test_unknown_option_and_event_are_errors():
    with pytest.raises(ConfigError, match="unknown training option.*epoch .*did you mean epochs"):
        TrainConfig.from_dict({"epoch": 3})
    assert TrainConfig.from_dict(TrainConfig(lr=0.5).to_dict()) == TrainConfig(lr=0.5)
    with pytest.raises(ConfigError, match="unknown callback event 'on_batch'"):
        train(mlp(), blobs(), None, TrainConfig(**CFG), callbacks={"on_batch": []}, progress=False)


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    """Resuming from a checkpoint that was changed outside the zoo names the file and says what to do."""
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,)))
    with pytest.raises(RunError, match="checkpoint.pt is not a readable checkpoint"):
        train(nn.Linear(4, 2), data, None, TrainConfig(epochs=1, batch_size=4, device="cpu"),
              run_dir=tmp_path, resume=True, progress=False)
