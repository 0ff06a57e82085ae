"""The one training loop, shared by fine-tuning, from-scratch training and the learning-rate finder.

Owns ``TrainConfig`` (every knob, commented, checked), ``train``, ``evaluate``, ``TrainResult`` and
``StopTraining``. ``train`` reads top to bottom in nanoGPT's order: set up (device, DDP, seeds, model,
optimizer, AMP), resume, wrap (compile, DDP), then each step: set the learning rate, forward and
backward under autocast, clip, step, log, checkpoint when due; each epoch end: evaluate, record,
checkpoint, stop early. Extension is a small callbacks dict (events in ``zoo.finetune.callbacks``).

State and checkpoints: the run's state is one ``TrainState`` (``zoo.finetune.state``) and a checkpoint
is that state. One is written at epoch ends (every ``checkpoint_every``), every ``checkpoint_interval``
seconds within an epoch, on Ctrl-C and when a callback stops the run.

Resuming is exact: a run killed or interrupted anywhere and resumed with the same config goes on to the
same weights as the uninterrupted run, bit for bit on the CPU. The checkpoint holds the epoch, the
batch reached and the epoch's running sums, the optimizer and loss scaler, and every global generator;
the data order is a function of (seed, epoch) and each kind of data resumes at the batch reached as
``zoo.finetune.batches`` describes. In one process Ctrl-C lets the step under way finish (a second
Ctrl-C stops at once), so the checkpoint is always at a step boundary. Limits: on a GPU, kernels that
are not deterministic make even two uninterrupted runs differ (see
``torch.use_deterministic_algorithms``); under DDP Ctrl-C is not deferred (each rank stops wherever it
is, and one rank waiting for a step's collective would hang), so an interrupted DDP run resumes from
its last checkpoint, and the generators restored on every rank are rank 0's.

DDP under ``torchrun`` (``WORLD_SIZE`` > 1): gloo on the CPU, NCCL on the GPU, each rank its share of
the epoch's order; only rank 0 writes files and logs.

What it shows (rank 0): with ``progress``, a tqdm bar only when stderr is a terminal and one summary
line per epoch always; with a run folder, ``metrics.jsonl``, ``metrics.csv`` and TensorBoard events
(when the optional tensorboard package is installed). See ``zoo.finetune.callbacks``.

May import ``zoo`` and torch; never ``zoo.cli``.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from zoo.device import resolve_device
from zoo.errors import ConfigError, RunError, close_matches
from zoo.registry import env

from .batches import Batching
from .callbacks import (EVENTS, METRICS, METRICS_CSV, Callbacks, MetricsFiles, ProgressLog, TensorBoardLog,
                        add_callbacks, progress_bar_enabled)
from .evaluation import autocast, evaluate
from .interrupts import Interrupt, deferred_interrupt, interruptible
from .state import TrainState, load_checkpoint, save_checkpoint
from .train_config import AMP_MODES, MONITORS, OPTIMIZERS, SCHEDULES, TrainConfig, is_better, lr_factor

__all__ = ["TrainConfig", "TrainResult", "StopTraining", "train", "evaluate", "resolve_device", "is_better",
           "CHECKPOINT", "METRICS", "METRICS_CSV", "EVENTS", "OPTIMIZERS", "SCHEDULES", "MONITORS", "AMP_MODES"]

CHECKPOINT = "checkpoint.pt"

# Dense bf16 peaks (FLOP/s) for the MFU figure; other GPUs need TrainConfig.peak_flops.
_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12,
              "RTX 4090": 165e12, "RTX 3090": 71e12}


@dataclass
class TrainResult:
    """What ``train`` hands back: per-epoch ``history``, the ``best`` epoch's row, the trained ``model``
    (unwrapped from DDP/compile), the ``run_dir`` and whether the run was stopped early (early
    stopping or a callback's ``StopTraining``)."""

    history: list[dict[str, Any]]
    best: dict[str, Any]
    model: nn.Module
    run_dir: Path | None = None
    stopped_early: bool = False
    steps: int = 0


class StopTraining(Exception):
    """Raise from a callback to end training cleanly, with a checkpoint of where it stopped: at once
    from ``on_step_end``, at the epoch's end from ``on_epoch_end``."""


@dataclass(eq=False)
class _Run:
    """What stays fixed while a run trains; what changes is the ``TrainState``."""

    cfg: TrainConfig
    device: torch.device
    rank: int
    world: int
    model: nn.Module  # the unwrapped model (what is saved)
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batching: Batching
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    run_path: Path | None
    forward: nn.Module | None = None  # what a step calls: the model, compiled and/or DDP-wrapped
    callbacks: Callbacks = dataclasses.field(default_factory=dict)
    interrupt: Interrupt | None = None
    started: float = dataclasses.field(default_factory=time.monotonic)  # this session's start
    elapsed_before: float = 0.0  # training seconds of earlier sessions
    last_save: float = dataclasses.field(default_factory=time.monotonic)
    epoch_t0: float = 0.0  # perf_counter at this session's start of the epoch
    epoch_seconds_before: float = 0.0  # the epoch's seconds from before this session's start of it
    loss_sum: torch.Tensor | None = None  # the epoch's running sums on the device (no host sync per step)
    correct: torch.Tensor | None = None
    classify: bool | None = None  # class-index targets: train accuracy is counted
    mid_step: bool = False  # between forward and bookkeeping: the live state is not a consistent checkpoint

    @property
    def master(self) -> bool:
        return self.rank == 0


def train(model: nn.Module, train_data: Any, val_data: Any = None, config: TrainConfig | None = None, *,
          run_dir: str | Path | None = None, param_groups: list[dict] | None = None,
          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
          callbacks: Callbacks | None = None, resume: bool = False, progress: bool = True) -> TrainResult:
    """Train ``model`` on ``train_data``, evaluating on ``val_data`` after each epoch.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to outputs ``loss_fn`` accepts (logits).
        train_data: a Dataset of ``(x, y)``, a DataLoader (used as given: under DDP give it a
            ``DistributedSampler`` yourself; its ``set_epoch`` is called), or a dataset with
            ``get_batch(indices)``.
        val_data: the same kinds, or None (then a ``val_*`` monitor falls back to ``train_loss``).
        config: a ``TrainConfig`` (defaults when None).
        run_dir: folder for ``checkpoint.pt``, ``metrics.jsonl``, ``metrics.csv`` and ``tensorboard/``;
            None writes nothing.
        param_groups: optimizer groups (dicts with ``params`` and optional ``lr_scale``,
            ``weight_decay``) for discriminative learning rates; frozen params are dropped.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; default cross-entropy with label smoothing.
        callbacks: event name -> callables taking one dict. Events: ``on_train_start`` (``state``,
            ``config``, ``total_steps``, ``steps_per_epoch``, ``run_dir``), ``on_step_end`` (``epoch``
            0-based, ``batch``, ``step``, ``loss`` tensor, ``lr``), ``on_epoch_end`` (``epoch`` done,
            ``step``, ``row``, ``history``), ``on_checkpoint`` (``path``, ``epoch``, ``batch``, ``step``),
            ``on_train_end`` (``state``). Every dict also has ``event`` and ``model``. A callable may
            raise ``StopTraining`` to end the run cleanly.
        resume: continue from ``run_dir/checkpoint.pt`` exactly where it stopped.
        progress: report on stderr (rank 0): a progress bar when stderr is a terminal, and one summary
            line per epoch always; False prints nothing (``--quiet``).

    Returns:
        TrainResult with ``history`` (per epoch: epoch, train_loss, train_acc, val_loss, val_acc, lr,
        images_per_s, seconds, step), ``best`` and the trained ``model``.

    Raises:
        RunError: resume without a usable checkpoint, or no trainable parameters.
        ConfigError: an unknown callback event.
        ZooError: CUDA asked for but absent (zoo.device.resolve_device).
        KeyboardInterrupt: after writing a checkpoint at the step reached.

    Example:
        >>> cfg = TrainConfig(epochs=3, lr=0.1, optimizer="sgd")                       # doctest: +SKIP
        >>> result = train(net, TensorDataset(x, y), None, cfg, run_dir="runs/a")     # doctest: +SKIP
        >>> result.history[-1]["train_loss"]                                           # doctest: +SKIP
    """
    # -- set up: device and processes, seeds, model, optimizer, loss, batches, schedule length
    cfg = config or TrainConfig()
    user_callbacks = _check_events(callbacks)
    run = _set_up(model, train_data, cfg, run_dir, param_groups, loss_fn)
    state = TrainState(model=run.model, optimizer=run.optimizer, scaler=run.scaler, config=cfg.to_dict())
    # -- resume: weights, optimizer, scaler, position, history, generators
    if resume:
        _resume(run, state)
    # -- wrap: compile, DDP; then what gets logged
    _wrap(run)
    run.callbacks = _logging(run, progress)
    for event, fns in user_callbacks.items():
        run.callbacks.setdefault(event, []).extend(fns)
    # -- train
    with deferred_interrupt(enabled=run.world == 1) as run.interrupt:
        stopped = _run_epochs(run, state, train_data, val_data)
    return TrainResult(history=state.history, best=state.best, model=run.model, run_dir=run.run_path,
                       stopped_early=stopped, steps=state.step)


def _check_events(callbacks: Callbacks | None) -> Callbacks:
    callbacks = {k: list(v) for k, v in (callbacks or {}).items()}
    for event in callbacks:
        if event not in EVENTS:
            hints = close_matches(event, EVENTS)
            hint = f" (did you mean {hints[0]}?)" if hints else ""
            raise ConfigError(f"unknown callback event {event!r}{hint}; events are {', '.join(EVENTS)}",
                              option="callbacks", valid=EVENTS)
    return callbacks


def _set_up(model: nn.Module, train_data: Any, cfg: TrainConfig, run_dir: str | Path | None,
            param_groups: list[dict] | None, loss_fn: Callable | None) -> _Run:
    rank, world, local_rank = env.distributed()
    device = resolve_device(cfg.device)
    if world > 1:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    run_path = Path(run_dir) if run_dir is not None else None
    if run_path is not None and rank == 0:
        run_path.mkdir(parents=True, exist_ok=True)

    model = model.to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(model, cfg, param_groups)
    fp16 = cfg.amp == "fp16"
    scaler = torch.amp.GradScaler(device.type) if fp16 else None
    batching = Batching(batch_size=cfg.batch_size, drop_last=cfg.drop_last, num_workers=cfg.num_workers,
                        pin=device.type == "cuda", seed=cfg.seed, rank=rank, world=world)
    steps_per_epoch = batching.steps_per_epoch(train_data)
    total = max(1, cfg.epochs * steps_per_epoch)
    total = min(total, cfg.max_steps) if cfg.max_steps else total
    return _Run(cfg=cfg, device=device, rank=rank, world=world, model=model, optimizer=optimizer, scaler=scaler,
                loss_fn=loss_fn or nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), batching=batching,
                steps_per_epoch=steps_per_epoch, total_steps=total,
                warmup_steps=int(round(cfg.warmup_epochs * steps_per_epoch)), run_path=run_path)


def _resume(run: _Run, state: TrainState) -> None:
    load_checkpoint(run.run_path / CHECKPOINT if run.run_path is not None else None, state)
    if state.batch:  # mid-epoch: the rest of the epoch's batches must be the ones the run would have had
        changed = [k for k in ("batch_size", "seed", "drop_last") if state.config.get(k) != getattr(run.cfg, k)]
        if changed:
            was = ", ".join(f"{k}={state.config.get(k)!r}" for k in changed)
            raise RunError(f"cannot resume mid-epoch with a different {', '.join(changed)} (the run had {was}); "
                           "resume with the interrupted run's settings")
    run.elapsed_before = state.elapsed


def _wrap(run: _Run) -> None:
    forward: nn.Module = run.model
    if run.cfg.compile:
        forward = torch.compile(forward)
    if run.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(forward, device_ids=[run.device.index] if run.device.type == "cuda" else None)
    run.forward = forward


def _logging(run: _Run, progress: bool) -> Callbacks:
    """The built-in callbacks, first in each event's list (rank 0 only)."""
    callbacks: Callbacks = {}
    if not run.master:
        return callbacks
    if progress:
        add_callbacks(callbacks, ProgressLog(bar=progress_bar_enabled(), log_every=run.cfg.log_every))
    if run.run_path is not None:
        add_callbacks(callbacks, MetricsFiles(run.run_path))
        tensorboard = TensorBoardLog.create(run.run_path, run.cfg.log_every)
        if tensorboard is not None:
            add_callbacks(callbacks, tensorboard)
    return callbacks


def _run_epochs(run: _Run, state: TrainState, train_data: Any, val_data: Any) -> bool:
    """The epochs from the state's position to the end; True when stopped early."""
    cfg = run.cfg
    _fire(run, "on_train_start", state=state, config=cfg, total_steps=run.total_steps,
          steps_per_epoch=run.steps_per_epoch, run_dir=run.run_path)
    state.restore_rng(run.device)  # last, so nothing drawn during set-up shifts the generators
    stopped = False
    try:
        # An epoch whose last step ran but whose end did not (an interrupt right after it) still ends.
        while not stopped and state.epoch < cfg.epochs and (state.step < run.total_steps or state.batch > 0):
            _train_epoch(run, state, train_data)
            stopped = _end_epoch(run, state, val_data)
            if run.interrupt.requested:
                raise KeyboardInterrupt
    except StopTraining:
        stopped = True
        _save(run, state)
    except KeyboardInterrupt:
        if not run.mid_step:  # a step cut in half is no state to resume from: the last checkpoint stands
            _save(run, state)
        raise
    finally:
        state.elapsed = run.elapsed_before + time.monotonic() - run.started
        _fire(run, "on_train_end", state=state)
    return stopped


def _train_epoch(run: _Run, state: TrainState, data: Any) -> None:
    """The epoch's steps from the state's batch on, until the epoch or ``total_steps`` ends."""
    run.forward.train()
    dev = run.device
    run.loss_sum = torch.tensor(state.epoch_loss, dtype=torch.float64, device=dev)
    run.correct = torch.tensor(state.epoch_correct, dtype=torch.int64, device=dev)
    run.epoch_t0, run.epoch_seconds_before = time.perf_counter(), state.epoch_seconds
    if isinstance(data, DataLoader) and state.batch == 0:
        state.epoch_rng = run.batching.loader_epoch_start(data, state.epoch, dev)
    batches = run.batching.epoch(data, state.epoch, skip=state.batch, epoch_rng=state.epoch_rng, device=dev)
    step_listeners = run.callbacks.get("on_step_end")
    for x, y in interruptible(batches, run.interrupt, limit=run.total_steps - state.step):
        # -- the learning rate for this step
        lr = _set_lr(run, state.step)
        # -- forward/backward under autocast, clip, step
        run.mid_step = True
        loss, correct = _step(run, x, y)
        # -- bookkeeping: no host sync here
        n = y.shape[0]
        run.loss_sum += loss.detach() * n
        if correct is not None:
            run.correct += correct
        state.epoch_samples += n
        state.batch += 1
        state.step += 1
        run.mid_step = False
        # -- log, then checkpoint when due or asked to stop
        if step_listeners:
            _fire(run, "on_step_end", epoch=state.epoch, step=state.step, batch=state.batch, loss=loss.detach(), lr=lr)
        if run.interrupt.requested:
            raise KeyboardInterrupt
        if _checkpoint_due(run):
            _save(run, state)


def _set_lr(run: _Run, step: int) -> float:
    factor = lr_factor(run.cfg, step, run.total_steps, run.warmup_steps)
    for group in run.optimizer.param_groups:
        group["lr"] = run.cfg.lr * group["lr_scale"] * factor
    return run.cfg.lr * factor


def _step(run: _Run, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One optimizer step on (x, y); returns the loss and, for class-index targets, the correct count."""
    cfg, pin = run.cfg, run.batching.pin
    x = x.to(run.device, non_blocking=pin)
    y = y.to(run.device, non_blocking=pin)
    if cfg.channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    with autocast(run.device, cfg.amp):
        out = run.forward(x)
        loss = run.loss_fn(out, y)
    run.optimizer.zero_grad(set_to_none=True)
    if run.scaler is None:
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
        run.optimizer.step()
    else:
        run.scaler.scale(loss).backward()
        if cfg.grad_clip:
            run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
        run.scaler.step(run.optimizer)
        run.scaler.update()
    if run.classify is None:
        run.classify = (isinstance(out, torch.Tensor) and out.ndim == 2 and y.ndim == 1
                        and not y.is_floating_point() and out.shape[0] == y.shape[0])
    correct = (out.detach().argmax(1) == y).sum() if run.classify else None
    return loss, correct


def _end_epoch(run: _Run, state: TrainState, val_data: Any) -> bool:
    """Evaluate, record the epoch's row, checkpoint when due; True when the run should stop."""
    cfg = run.cfg
    row = _epoch_row(run, state, val_data)
    key = _monitor_key(cfg, val_data, row)
    # Only quick assignments here, so an interrupt (under DDP, where it is not deferred) cannot split them.
    state.history.append(row)
    if is_better(row, state.best, key):
        state.best, state.bad_epochs = dict(row), 0
    else:
        state.bad_epochs += 1
    state.epoch, state.batch, state.epoch_rng = state.epoch + 1, 0, None
    state.epoch_loss, state.epoch_correct, state.epoch_samples, state.epoch_seconds = 0.0, 0, 0, 0.0
    run.loss_sum.zero_()
    run.correct.zero_()
    run.epoch_t0, run.epoch_seconds_before = time.perf_counter(), 0.0
    last = state.epoch == cfg.epochs or state.step >= run.total_steps
    stop = cfg.early_stopping is not None and state.bad_epochs >= cfg.early_stopping
    # The callbacks first (logs, the best weights), then the checkpoint that commits the epoch: a kill
    # in between redoes the epoch on resume, and a callback's files are rewritten from the state.
    try:
        _fire(run, "on_epoch_end", epoch=state.epoch, step=state.step, row=row, history=state.history)
    except StopTraining:
        stop = True
    if state.epoch % cfg.checkpoint_every == 0 or last or stop:
        _save(run, state)
    return stop


def _epoch_row(run: _Run, state: TrainState, val_data: Any) -> dict[str, Any]:
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    seconds = run.epoch_seconds_before + time.perf_counter() - run.epoch_t0
    totals = torch.stack([run.loss_sum, run.correct.to(torch.float64),
                          torch.tensor(float(state.epoch_samples), dtype=torch.float64, device=run.device)])
    if run.world > 1:
        import torch.distributed as dist

        dist.all_reduce(totals)
    loss_sum, correct, seen = totals.tolist()
    row: dict[str, Any] = {"epoch": state.epoch + 1, "train_loss": loss_sum / seen if seen else float("nan")}
    if run.classify or (run.classify is None and correct > 0):
        row["train_acc"] = correct / seen if seen else float("nan")
    # The last step's learning rate, from the schedule (an epoch resumed at its very end ran no step here).
    row.update(lr=run.cfg.lr * lr_factor(run.cfg, max(0, state.step - 1), run.total_steps, run.warmup_steps),
               images_per_s=seen / max(seconds, 1e-9), seconds=seconds, step=state.step)
    peak = _peak_flops(run.device, run.cfg)
    if peak and run.cfg.flops_per_sample:
        row["mfu"] = row["images_per_s"] * run.cfg.flops_per_sample / (peak * run.world)
    if val_data is not None:
        ev = evaluate(run.forward, val_data, batch_size=run.cfg.eval_batch_size, device=run.device,
                      loss_fn=run.loss_fn, amp=run.cfg.amp, channels_last=run.cfg.channels_last, predictions=False)
        row["val_loss"], row["val_acc"] = ev["loss"], ev["accuracy"]
    return row


def _checkpoint_due(run: _Run) -> bool:
    return (run.run_path is not None and run.master and run.cfg.checkpoint_interval > 0
            and time.monotonic() - run.last_save >= run.cfg.checkpoint_interval)


def _save(run: _Run, state: TrainState) -> None:
    """Write the checkpoint (rank 0, with a run folder), first bringing the state's sums up to date."""
    if run.run_path is None or not run.master:
        return
    if run.loss_sum is not None:
        state.epoch_loss, state.epoch_correct = float(run.loss_sum), int(run.correct)
        if state.batch:
            state.epoch_seconds = run.epoch_seconds_before + time.perf_counter() - run.epoch_t0
    state.elapsed = run.elapsed_before + time.monotonic() - run.started
    path = save_checkpoint(run.run_path / CHECKPOINT, state, run.device)
    run.last_save = time.monotonic()
    _fire(run, "on_checkpoint", path=path, epoch=state.epoch, batch=state.batch, step=state.step)


def _fire(run: _Run, event: str, **info: Any) -> None:
    fns = run.callbacks.get(event)
    if fns:
        info.update(event=event, model=run.model)
        for fn in fns:
            fn(info)


def _optimizer(model: nn.Module, cfg: TrainConfig, param_groups: list[dict] | None) -> torch.optim.Optimizer:
    """Trainable params only (frozen ones stay out), in the caller's groups or decay/no-decay groups."""
    if param_groups is None:
        params = [p for p in model.parameters() if p.requires_grad]
        param_groups = [{"params": [p for p in params if p.ndim >= 2]},
                        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    groups = []
    for group in param_groups:
        group = dict(group)
        group["params"] = [p for p in group["params"] if p.requires_grad]
        if not group["params"]:
            continue
        group.setdefault("lr_scale", 1.0)
        group.setdefault("weight_decay", cfg.weight_decay)
        group["lr"] = cfg.lr * group["lr_scale"]
        groups.append(group)
    if not groups:
        raise RunError("the model has no trainable parameters (every parameter has requires_grad=False); "
                       "unfreeze some layers or give param_groups with trainable parameters")
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _peak_flops(device: torch.device, cfg: TrainConfig) -> float | None:
    if cfg.peak_flops:
        return cfg.peak_flops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in _PEAK_BF16.items() if k in name), None)


def _monitor_key(cfg: TrainConfig, val_data: Any, row: dict[str, Any]) -> str:
    if cfg.monitor.startswith("val_") and val_data is None:
        return "train_loss"  # documented: with no validation data only the training figures exist
    if row.get(cfg.monitor) is None:
        return "val_loss" if cfg.monitor.startswith("val_") else "train_loss"  # no accuracy for these targets
    return cfg.monitor
