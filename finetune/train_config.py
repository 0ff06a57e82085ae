"""The training loop's options: ``TrainConfig`` (every field commented, every value checked when the
config is made) and ``lr_factor``, the learning-rate schedule as a function of the step.

A bad value raises ``ConfigError`` naming the valid choices; ``from_dict`` refuses unknown keys. The
run configuration of ``zoo.finetune.fit`` nests this one. Standard library and ``zoo.errors`` only.
May import ``zoo``; never ``zoo.cli``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from zoo.errors import ConfigError, close_matches

__all__ = ["TrainConfig", "lr_factor", "is_better", "monitor_text", "OPTIMIZERS", "SCHEDULES", "MONITORS", "AMP_MODES"]

OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "onecycle", "constant", "exponential")
MONITORS = ("val_loss", "val_acc", "train_loss", "train_acc")
AMP_MODES = ("auto", "bf16", "fp16", True, False)


@dataclass
class TrainConfig:
    """Everything the loop can be told. A recipe is a dict of overrides for these fields. Values are
    checked when the config is made: a bad one raises ``ConfigError`` naming the valid choices."""

    epochs: int = 10  # passes over the training data
    batch_size: int = 64  # samples per step on each process (DDP: the global batch is this times the world size)
    optimizer: Literal["adamw", "sgd"] = "adamw"  # AdamW (decoupled weight decay) or SGD with momentum
    lr: float = 1e-3  # peak learning rate; a param group's "lr_scale" multiplies it
    weight_decay: float = 0.05  # applied to weights with 2+ dims only (not to biases and norm scales)
    momentum: float = 0.9  # SGD momentum (0 gives plain SGD); AdamW ignores it
    nesterov: bool = False  # SGD Nesterov momentum
    # LR shape over all steps, set every step; "exponential" climbs from lr * min_lr_ratio to lr (the LR finder's ramp)
    schedule: Literal["cosine", "onecycle", "constant", "exponential"] = "cosine"
    warmup_epochs: float = 0.0  # linear warm-up from 0 (cosine/constant); onecycle warms up over 30% if 0
    min_lr_ratio: float = 0.0  # cosine/onecycle end at lr * this; exponential starts there (must be > 0)
    label_smoothing: float = 0.0  # for the default cross-entropy loss
    grad_clip: float | None = None  # clip the global gradient norm to this, or None for no clipping
    # autocast: "auto" = bf16 on a GPU, off on the CPU; True or "bf16" force bf16; "fp16" = float16 with a
    # loss scaler (GPUs without bf16); False = off
    amp: Literal["auto", "bf16", "fp16"] | bool = "auto"
    channels_last: bool = False  # NHWC memory layout for 4-D inputs (faster convolutions on GPUs)
    compile: bool = False  # wrap the model in torch.compile
    seed: int = 0  # seeds torch, random and NumPy and the per-epoch order: the same seed on the CPU repeats a run
    early_stopping: int | None = None  # stop after this many epochs without improving `monitor`; None: never
    monitor: str = "val_loss"  # what early stopping and `best` watch: val_loss, val_acc, train_loss, train_acc
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    num_workers: int = 0  # DataLoader worker processes (in-memory tensor data sets never use workers)
    checkpoint_every: int = 1  # write run_dir/checkpoint.pt every N epochs (and always after the last)
    # also write it every this many seconds within an epoch, so a kill loses at most that much; 0: epoch ends only
    checkpoint_interval: float = 300.0
    max_steps: int | None = None  # stop after this many optimizer steps in all (the schedule spans them); None: epochs
    log_every: int = 50  # refresh the progress bar's loss and lr (and TensorBoard's step scalars) every N steps
    eval_batch_size: int = 256  # batch size for validation (on the CPU at most zoo.device.cpu_batch_cap's)
    drop_last: bool = False  # drop the last partial batch of each epoch
    flops_per_sample: float | None = None  # training FLOPs per sample (about 3x forward) for the MFU log on GPUs
    peak_flops: float | None = None  # the device's peak FLOP/s for MFU; guessed for known GPUs when None

    def __post_init__(self) -> None:
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("monitor", self.monitor, MONITORS)
        _check_choice("amp", self.amp, AMP_MODES)
        for name, low in (("epochs", 0), ("batch_size", 1), ("eval_batch_size", 1), ("num_workers", 0),
                          ("checkpoint_every", 1), ("log_every", 1), ("lr", 0), ("weight_decay", 0),
                          ("warmup_epochs", 0), ("min_lr_ratio", 0), ("checkpoint_interval", 0)):
            value = getattr(self, name)
            if value < low:
                raise ConfigError(f"training option {name}={value!r} is below {low}; give {name} >= {low}",
                                  option=name)
        for name in ("early_stopping", "max_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"training option {name}={value!r} must be at least 1, or None for no limit",
                                  option=name)
        if self.schedule == "exponential" and not 0 < self.min_lr_ratio < 1:
            raise ConfigError(f"schedule 'exponential' climbs from lr * min_lr_ratio to lr, so min_lr_ratio must be "
                              f"between 0 and 1 (exclusive), got {self.min_lr_ratio!r}", option="min_lr_ratio")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (JSON-ready)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict such as ``to_dict`` gives.

        Raises:
            ConfigError: an unknown key (a typo must not be ignored) or a bad value.
        """
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            hints = sorted({m for key in unknown for m in close_matches(key, names)})
            hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
            raise ConfigError(f"unknown training option(s) {', '.join(unknown)}{hint}; "
                              f"valid options: {', '.join(names)}", option=unknown[0], valid=names)
        return cls(**data)


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if any(value is c or (type(value) is type(c) and value == c) for c in choices):
        return
    hints = close_matches(str(value), [str(c) for c in choices]) if isinstance(value, str) else []
    hint = f" (did you mean {hints[0]!r}?)" if hints else ""
    raise ConfigError(f"training option {name}={value!r} is not valid{hint}; choose one of "
                      f"{', '.join(map(repr, choices))}", option=name, valid=[str(c) for c in choices])


def is_better(row: dict[str, Any], best: dict[str, Any], monitor: str) -> bool:
    """Whether the epoch ``row`` beats ``best`` (the best epoch's row so far; empty for none) on
    ``monitor``: a strictly lower loss, or a strictly higher accuracy. Two epochs with the same accuracy
    (common on a small validation set, where accuracy moves in steps of one image) are told apart by the
    loss beside it (``val_loss`` for ``val_acc``): the more confident of two equally accurate epochs.
    A NaN never beats anything."""
    if not best or best.get(monitor) is None:
        return True
    value, ref = row[monitor], best[monitor]
    if value != value:  # NaN
        return False
    if not monitor.endswith("acc"):
        return value < ref
    if value != ref:
        return value > ref
    loss = monitor.removesuffix("acc") + "loss"
    return row.get(loss, math.inf) < best.get(loss, math.inf)


def monitor_text(monitor: str) -> str:
    """The monitored figure in words: ``val_acc`` -> ``validation accuracy``."""
    part, _, what = monitor.partition("_")
    return f"{'validation' if part == 'val' else 'training'} {'accuracy' if what == 'acc' else 'loss'}"


def lr_factor(cfg: TrainConfig, step: int, total: int, warmup: int) -> float:
    """The multiplier of the peak LR at ``step`` of ``total`` (computed directly, no scheduler object)."""
    if cfg.schedule == "exponential":  # lr * min_lr_ratio at the first step, lr at the last
        return cfg.min_lr_ratio ** (1 - min(step, total - 1) / max(1, total - 1))
    if cfg.schedule == "onecycle":
        warmup = warmup or max(1, int(0.3 * total))
        if step < warmup:  # from lr/25 up to lr, as in Smith's one-cycle policy
            return 1 / 25 + (1 - 1 / 25) * step / warmup
    elif step < warmup:
        return (step + 1) / (warmup + 1)
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
