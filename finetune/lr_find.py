"""The learning-rate finder: a short sweep with an exponentially growing learning rate.

Owns: ``lr_find`` (model + data folder, prepared exactly as ``fit`` would for the same strategy),
``sweep`` (the sweep on any model and dataset) and ``LRFindResult``. The loss is smoothed with a
bias-corrected moving average; the sweep stops once the smoothed loss exceeds four times its best;
the suggestion is the learning rate where the smoothed loss falls fastest against log(lr). The
weights and RNG state are restored afterwards, so the sweep leaves no trace. This is not a training
loop (it never evaluates, checkpoints or schedules): fine-tuning itself goes through
``zoo.finetune.loop``. May import ``zoo``; never ``zoo.cli``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import FinetuneConfig

__all__ = ["LRFindResult", "lr_find", "sweep"]


@dataclass
class LRFindResult:
    """``lrs`` and ``losses`` (smoothed) per step, and the ``suggestion`` (steepest descent)."""

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
    """The lr at the most negative slope of the smoothed loss against log10(lr), ignoring the noisy
    first and last tenth of the sweep."""
    n = len(lrs)
    if n < 5:
        return None
    lo, hi = max(1, n // 10), max(2, n - n // 10)
    best, best_i = 0.0, None
    for i in range(lo, min(hi, n - 1)):
        slope = (losses[i + 1] - losses[i - 1]) / (math.log10(lrs[i + 1]) - math.log10(lrs[i - 1]))
        if slope < best:
            best, best_i = slope, i
    return lrs[best_i] if best_i is not None else None


def sweep(model: nn.Module, dataset: Any, *, param_groups: list[dict] | None = None, start_lr: float = 1e-7,
          end_lr: float = 10.0, num_iter: int = 100, batch_size: int = 64, weight_decay: float = 0.0,
          beta: float = 0.98, diverge: float = 4.0, device: str | torch.device = "cpu", seed: int = 0
          ) -> LRFindResult:
    """Run the sweep on ``model`` and ``dataset`` (yielding ``(x, y)``); weights are restored after.

    Args:
        model: trains with cross-entropy on ``dataset``.
        param_groups: as for the loop (``lr_scale`` multiplies each step's lr); default all trainable.
        start_lr, end_lr, num_iter: the exponential ramp.
        beta: smoothing of the loss (moving average, bias-corrected).
        diverge: stop when the smoothed loss exceeds this times the best.

    Raises:
        ValueError: bad ramp.
    """
    from torch.utils.data import DataLoader, RandomSampler

    if not 0 < start_lr < end_lr or num_iter < 2:
        raise ValueError(f"need 0 < start_lr < end_lr and num_iter >= 2, got {start_lr}, {end_lr}, {num_iter}")
    dev = torch.device(device)
    saved = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    was_training = model.training
    model.to(dev).train()
    torch.manual_seed(seed)
    groups = param_groups or [{"params": [p for p in model.parameters() if p.requires_grad]}]
    groups = [dict(g, params=[p for p in g["params"] if p.requires_grad]) for g in groups]
    groups = [dict(g, lr=start_lr * g.get("lr_scale", 1.0)) for g in groups if g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=start_lr, weight_decay=weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    sampler = RandomSampler(dataset, replacement=True, num_samples=num_iter * batch_size)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler)
    ratio = (end_lr / start_lr) ** (1 / (num_iter - 1))
    result = LRFindResult()
    avg, best = 0.0, math.inf
    try:
        for i, (x, y) in enumerate(loader):
            if i >= num_iter:
                break
            lr = start_lr * ratio ** i
            for g in optimizer.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)
            loss = loss_fn(model(x.to(dev)), y.to(dev))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = float(loss.detach())
            avg = beta * avg + (1 - beta) * value
            smooth = avg / (1 - beta ** (i + 1))
            result.lrs.append(lr)
            result.losses.append(smooth)
            result.raw_losses.append(value)
            best = min(best, smooth)
            if not math.isfinite(smooth) or smooth > diverge * best:
                break
    finally:
        model.load_state_dict(saved)
        model.train(was_training)
        torch.set_rng_state(rng)
    result.suggestion = _suggest(result.lrs, result.losses)
    if result.losses:
        result.min_loss_lr = result.lrs[min(range(len(result.losses)), key=result.losses.__getitem__)]
    return result


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

    config = (config or FinetuneConfig()).with_options(**options)
    split = scan(data_dir, valid_pct=config.valid_pct, seed=config.seed)
    s = setup(model, split, config, progress=progress)
    bs = min(config.train.batch_size, len(s.train_data))
    return sweep(s.target, s.train_data, param_groups=s.plan.param_groups, start_lr=start_lr, end_lr=end_lr,
                 num_iter=num_iter, batch_size=bs, device=resolve_device(config.train.device), seed=config.seed)
