"""The learning-rate finder: a short sweep with an exponentially growing learning rate.

Owns: ``lr_find`` (model + data folder, prepared exactly as ``fit`` would for the same strategy),
``sweep`` (the sweep on any model and dataset), ``LRFinder`` (the callback that records it) and
``LRFindResult``. The sweep is the one training loop (``zoo.finetune.loop.train``) run for
``num_iter`` steps with the ``exponential`` schedule, so it steps exactly as training will (optimizer,
AMP, channels_last, workers, clipping); ``LRFinder`` smooths the loss with a bias-corrected moving
average and stops the loop once the smoothed loss exceeds four times its best; the suggestion is the
learning rate halfway down the longest fall of the smoothed loss (fastai's ``valley``). The weights, the training mode
and the global random generators are restored afterwards, so the sweep leaves no trace.
May import ``zoo``; never ``zoo.cli``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from zoo.device import resolve_device
from zoo.errors import ConfigError

from .batches import dataset_size
from .callbacks import add_callbacks
from .config import FinetuneConfig
from .loop import StopTraining, train
from .state import capture_rng, restore_rng
from .train_config import TrainConfig

__all__ = ["LRFindResult", "LRFinder", "lr_find", "sweep", "sweep_for_run"]


@dataclass
class LRFindResult:
    """``lrs`` and ``losses`` (smoothed) per step, and the ``suggestion`` (the valley rule)."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    raw_losses: list[float] = field(default_factory=list)
    suggestion: float | None = None
    min_loss_lr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"suggestion": self.suggestion, "min_loss_lr": self.min_loss_lr, "lrs": self.lrs,
                "losses": self.losses}

    def plot(self, path: str | Path) -> Path | None:
        """Loss against learning rate (log scale) as a PNG; None without matplotlib."""
        try:
            import matplotlib

            matplotlib.use("Agg", force=True)
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("loss (smoothed)")
        if self.suggestion:
            ax.axvline(self.suggestion, color="C3", linestyle="--", label=f"suggested {self.suggestion:.2g}")
            ax.legend()
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=100)
        plt.close(fig)
        return Path(path)


def _suggest(lrs: list[float], losses: list[float]) -> float | None:
    """fastai's ``valley`` rule: the learning rate halfway down the longest stretch over which the
    smoothed loss keeps falling (the longest decreasing subsequence of the loss), ignoring the first
    tenth of the sweep and its last five steps, where the loss is noisy or already blowing up.

    The steepest-descent rule it replaces could pick a point past the minimum, where the loss had
    started to climb; the valley's midpoint sits well inside the falling part. (Written out rather
    than imported: fastai is no dependency of the zoo.)
    """
    n = len(lrs)
    lo, hi = n // 10, n - 5
    if hi - lo < 5:
        return None
    xs, ys = lrs[lo:hi], losses[lo:hi]
    m = len(ys)
    run = [1] * m  # run[i]: length of the longest decreasing subsequence ending at i
    start = end = 0
    for i in range(1, m):
        for j in range(i):
            if ys[i] < ys[j] and run[i] < run[j] + 1:
                run[i] = run[j] + 1
            if run[end] < run[i]:
                end = i
                start = end - run[end]
    if run[end] < 2:
        return None
    third = (end - start) / 3
    return xs[start + int(third) + int(third / 2)]


@dataclass
class LRFinder:
    """A training-loop callback that records the LR range test: each step's learning rate and loss,
    the loss smoothed (moving average with ``beta``, bias-corrected), and ``StopTraining`` once the
    smoothed loss is not finite or exceeds ``diverge`` times its best. Give it to ``train`` with the
    ``exponential`` schedule (as ``sweep`` does) and read ``result()``."""

    beta: float = 0.98  # smoothing of the loss
    diverge: float = 4.0  # stop when the smoothed loss exceeds this times the best
    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    raw_losses: list[float] = field(default_factory=list)
    average: float = 0.0  # the moving average before bias correction

    def on_step_end(self, info: dict[str, Any]) -> None:
        value = float(info["loss"])
        self.average = self.beta * self.average + (1 - self.beta) * value
        smooth = self.average / (1 - self.beta ** (len(self.lrs) + 1))
        self.lrs.append(info["lr"])
        self.losses.append(smooth)
        self.raw_losses.append(value)
        if not math.isfinite(smooth) or smooth > self.diverge * min(self.losses):
            raise StopTraining

    def result(self) -> LRFindResult:
        """The sweep with its ``suggestion`` (the valley rule) and ``min_loss_lr``."""
        result = LRFindResult(lrs=list(self.lrs), losses=list(self.losses), raw_losses=list(self.raw_losses))
        result.suggestion = _suggest(result.lrs, result.losses)
        if result.losses:
            result.min_loss_lr = result.lrs[min(range(len(result.losses)), key=result.losses.__getitem__)]
        return result


def sweep(model: nn.Module, dataset: Any, *, param_groups: list[dict] | None = None, start_lr: float = 1e-7,
          end_lr: float = 10.0, num_iter: int = 100, batch_size: int | None = None,
          weight_decay: float | None = None, device: str | torch.device | None = None, seed: int | None = None,
          config: TrainConfig | None = None) -> LRFindResult:
    """Run the LR range test on ``model`` and ``dataset``; weights, mode and generators are restored after.

    The training loop runs ``num_iter`` steps while the learning rate climbs exponentially from
    ``start_lr`` to ``end_lr`` (an ``LRFinder`` records it and stops it on divergence); the data is
    shuffled per epoch as in training, in full batches when there are enough samples.

    Args:
        model: trains with cross-entropy (and ``config``'s label smoothing) on ``dataset``.
        dataset: ``(x, y)`` samples, as ``train`` takes them.
        param_groups: as for the loop (``lr_scale`` multiplies each step's lr); default all trainable.
        start_lr, end_lr, num_iter: the exponential ramp.
        batch_size, weight_decay, device, seed: replace ``config``'s (without a config: 64, 0.0,
            ``"cpu"`` and 0).
        config: the options of the run the learning rate is for: the sweep steps with its optimizer,
            AMP, channels_last, workers, clipping and label smoothing; its lr, schedule, epochs,
            warm-up, early stopping and checkpoints are the sweep's own. Default: AdamW.

    Returns:
        ``LRFindResult``: per step ``lrs`` and smoothed ``losses``, and the ``suggestion``.

    Raises:
        ConfigError: a bad ramp (need 0 < start_lr < end_lr and num_iter >= 2).

    Example:
        >>> sweep(net, TensorDataset(x, y), num_iter=50, batch_size=32).suggestion   # doctest: +SKIP
    """
    if not 0 < start_lr < end_lr or num_iter < 2:
        raise ConfigError(f"the LR sweep needs 0 < start_lr < end_lr and num_iter >= 2, got start_lr={start_lr}, "
                          f"end_lr={end_lr}, num_iter={num_iter}; fix the range")
    base = config or TrainConfig(weight_decay=0.0, device="cpu")
    given = {"batch_size": batch_size, "weight_decay": weight_decay, "seed": seed,
             "device": str(device) if device is not None else None}
    base = dataclasses.replace(base, **{k: v for k, v in given.items() if v is not None})
    n = dataset_size(dataset)
    full = n >= base.batch_size
    per_epoch = len(dataset) if isinstance(dataset, DataLoader) else max(1, n // base.batch_size if full else 1)
    cfg = dataclasses.replace(base, lr=end_lr, min_lr_ratio=start_lr / end_lr, schedule="exponential",
                              warmup_epochs=0.0, epochs=math.ceil(num_iter / per_epoch), max_steps=num_iter,
                              early_stopping=None, drop_last=full, checkpoint_interval=0.0)
    finder = LRFinder()
    saved, was_training = copy.deepcopy(model.state_dict()), model.training
    dev = resolve_device(cfg.device)
    rng = capture_rng(dev)
    try:
        train(model, dataset, None, cfg, param_groups=param_groups, callbacks=add_callbacks({}, finder),
              progress=False)
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
        restore_rng(rng, dev)
    return finder.result()


def sweep_for_run(target: nn.Module, data: Any, config: FinetuneConfig,
                  param_groups: list[dict] | None = None) -> LRFindResult:
    """The LR sweep on ``target`` with the run's optimizer, batch size, device and seed (what ``fit`` and
    ``train_scratch`` choose a learning rate with)."""
    return sweep(target, data, param_groups=param_groups, batch_size=min(config.batch_size, dataset_size(data)),
                 device=resolve_device(config.train.device), seed=config.seed, config=config.train)


def lr_find(model: Any, data_dir: str | Path, config: FinetuneConfig | None = None, *, start_lr: float = 1e-7,
            end_lr: float = 10.0, num_iter: int = 100, progress: bool = False, **options: Any) -> LRFindResult:
    """Suggest a learning rate for ``fit`` with the same model, data and config.

    Args:
        model: a registry name, a saved model/run folder, or a ZooModel.
        data_dir: the image folder ``fit`` would get.
        config: the ``FinetuneConfig`` ``fit`` would get (strategy, cut, head, augmentation, batch size,
            seed...); ``**options`` change its fields as for ``fit``.
        start_lr, end_lr, num_iter: the sweep.
        progress: a progress bar while ``linear`` computes its features.

    Returns:
        The sweep; ``suggestion`` is the learning rate to pass as ``lr``.

    Raises:
        DataError, UnknownLayerError, ConfigError: as ``fit``.

    Example:
        >>> zoo.finetune.lr_find("resnet18", "photos/", strategy="full").suggestion    # doctest: +SKIP
        0.0031
    """
    from .data import scan
    from .fit import setup
    from .loop import resolve_device

    from .defaults import choose_schedule

    config = (config or FinetuneConfig()).with_options(**options)
    split = scan(data_dir, valid_pct=config.valid_pct, seed=config.seed)
    config, _ = choose_schedule(config, len(split.train))
    s = setup(model, split, config, progress=progress)
    bs = min(config.batch_size, len(s.train_data))
    return sweep(s.target, s.train_data, param_groups=s.plan.param_groups, start_lr=start_lr, end_lr=end_lr,
                 num_iter=num_iter, batch_size=bs, device=resolve_device(config.train.device), seed=config.seed,
                 config=config.train)
