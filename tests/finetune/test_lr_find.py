"""The LR finder is a callback on the one training loop: the sweep climbs exponentially, stops when the
loss diverges, suggests a point inside the loss's longest fall (fastai's valley), steps with the run's AMP and channels_last, and leaves the
model, its mode and the global generators as it found them."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from zoo.errors import ConfigError
from zoo.finetune.lr_find import LRFinder, sweep
from zoo.finetune.train_config import TrainConfig

torch.set_num_threads(1)


def blobs(n: int = 256) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 2.0
    y = torch.randint(0, 3, (n,), generator=g)
    return TensorDataset(centres[y] + torch.randn(n, 8, generator=g), y)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))


def test_sweep_ramps_stops_on_divergence_and_suggests():
    result = sweep(mlp(), blobs(), num_iter=60, batch_size=16, start_lr=1e-4, end_lr=100.0)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:], strict=False)]
    assert result.lrs[0] == pytest.approx(1e-4) and ratios == pytest.approx([(1e6) ** (1 / 59)] * len(ratios))
    assert 10 < len(result.lrs) < 60  # lr 100 makes the loss blow up before the end: the finder stopped it
    assert max(result.losses) > 4 * min(result.losses) or not np.isfinite(result.losses[-1])
    assert 1e-4 < result.suggestion < result.lrs[-1]
    at = result.lrs.index(result.suggestion)  # a point where the smoothed loss falls, before its minimum
    assert result.losses[at + 1] < result.losses[at - 1] and result.suggestion <= result.min_loss_lr


def test_sweep_leaves_no_trace():
    model = mlp().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    rng = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()
    sweep(model, blobs(), num_iter=12, batch_size=8)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not model.training
    assert torch.equal(rng[0], torch.get_rng_state()) and rng[1] == random.getstate()
    assert (rng[2] == np.random.get_state()[1]).all()


def test_sweep_steps_with_the_runs_amp_and_channels_last():
    seen = []
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    net[0].register_forward_pre_hook(lambda m, args: seen.append(
        (torch.is_autocast_enabled("cpu"), args[0].is_contiguous(memory_format=torch.channels_last))))
    data = TensorDataset(torch.randn(32, 3, 8, 8), torch.randint(0, 2, (32,)))
    cfg = TrainConfig(amp="bf16", channels_last=True, device="cpu")
    result = sweep(net, data, num_iter=5, batch_size=8, config=cfg)
    assert len(result.lrs) == 5 and seen and all(amp and nhwc for amp, nhwc in seen)


def test_finder_callback_and_bad_ramp():
    finder = LRFinder()
    raw = [2.0, 1.5, 1.0, 0.8, 0.7, 0.6, 0.9, 1.5]
    for i, loss in enumerate(raw):
        finder.on_step_end({"loss": torch.tensor(loss, dtype=torch.float64), "lr": 10.0 ** (i - 5)})
    result = finder.result()
    assert result.lrs == [10.0 ** (i - 5) for i in range(8)] and result.raw_losses == raw
    # bias-corrected exponential moving average, beta 0.98: close to the running mean
    weights = [[0.98 ** (i - j) for j in range(i + 1)] for i in range(8)]
    smooth = [sum(w * x for w, x in zip(ws, raw, strict=False)) / sum(ws) for ws in weights]
    assert result.losses == pytest.approx(smooth)
    assert result.min_loss_lr == 10.0 ** 1  # the smoothed loss lags the raw one (lowest raw loss: 10 ** 0)
    with pytest.raises(ConfigError, match="start_lr < end_lr"):
        sweep(mlp(), blobs(), start_lr=1.0, end_lr=0.1)
