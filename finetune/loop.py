"""The one training loop, shared by fine-tuning and from-scratch training.

Owns: ``TrainConfig`` (every knob, commented), ``train`` (set up, resume, then per step: learning rate,
forward/backward under autocast, clip, step, log; per epoch: evaluate, checkpoint, early stopping),
``evaluate``, ``TrainResult`` and ``StopTraining``. It reads top to bottom in nanoGPT's order. DDP
under ``torchrun`` (``WORLD_SIZE`` > 1): gloo on the CPU, NCCL on the GPU, a ``DistributedSampler``
per epoch, and only rank 0 writes files or logs.

Data: a torch ``Dataset`` yielding ``(x, y)``, a ``DataLoader`` (used as given), or a dataset with a
``get_batch(indices) -> (x, y)`` method (or a ``TensorDataset``): those are batched by indexing whole
tensors, which keeps the loop's per-step cost near a bare PyTorch loop for in-memory data sets.

Checkpoints are plain dicts (``model``, ``optimizer``, ``scheduler``, ``epoch``, ``batch``, ``step``,
``history``, ``best``, ``bad_epochs``, ``config``, ``rng``) saved with ``torch.save`` through
``zoo._io.atomic_write`` and readable with ``torch.load(weights_only=True)``.

Resuming: ``epoch`` counts completed epochs and ``batch`` the batches done in the next one. A run
interrupted mid-epoch resumes at the batch it reached (the epoch's sample order is a function of the
seed and the epoch, so it is rebuilt and the done batches skipped), except when the caller passed a
``DataLoader``: then that epoch restarts from its first batch.

May import ``zoo`` and torch; never ``zoo.cli``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo._io import atomic_write
from zoo.device import resolve_device
from zoo.errors import RunError
from zoo.registry import env

__all__ = ["TrainConfig", "TrainResult", "StopTraining", "train", "evaluate", "resolve_device",
           "CHECKPOINT", "METRICS", "EVENTS"]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
EVENTS = ("on_step_end", "on_epoch_end", "on_checkpoint")

# Dense bf16 peaks (FLOP/s) for the MFU figure; other GPUs need TrainConfig.peak_flops.
_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12,
              "RTX 4090": 165e12, "RTX 3090": 71e12}


@dataclass
class TrainConfig:
    """Everything the loop can be told. A recipe is a dict of overrides for these fields."""

    epochs: int = 10  # passes over the training data
    batch_size: int = 64  # samples per step on each process (DDP: the global batch is this times the world size)
    optimizer: Literal["adamw", "sgd"] = "adamw"  # AdamW (decoupled weight decay) or SGD with momentum
    lr: float = 1e-3  # peak learning rate; a param group's "lr_scale" multiplies it
    weight_decay: float = 0.05  # applied to weights with 2+ dims only (not to biases and norm scales)
    momentum: float = 0.9  # SGD momentum (0 gives plain SGD); AdamW ignores it
    nesterov: bool = False  # SGD Nesterov momentum
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"  # LR shape over all steps, set every step
    warmup_epochs: float = 0.0  # linear warm-up from 0 (cosine/constant); onecycle warms up over 30% if 0
    min_lr_ratio: float = 0.0  # cosine/onecycle end at lr * this
    label_smoothing: float = 0.0  # for the default cross-entropy loss
    grad_clip: float | None = None  # clip the global gradient norm to this, or None for no clipping
    amp: Literal["auto"] | bool = "auto"  # autocast: "auto" = bf16 on a GPU, off on the CPU; True forces bf16
    channels_last: bool = False  # NHWC memory layout for 4-D inputs (faster convolutions on GPUs)
    compile: bool = False  # wrap the model in torch.compile
    seed: int = 0  # seeds torch/random and the per-epoch shuffle: the same seed on the CPU repeats a run
    early_stopping: int | None = None  # stop after this many epochs without improving `monitor`; None: never
    monitor: str = "val_loss"  # what early stopping and `best` watch ("val_loss", "val_acc", "train_loss")
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    num_workers: int = 0  # DataLoader worker processes (in-memory tensor data sets never use workers)
    checkpoint_every: int = 1  # write run_dir/checkpoint.pt every N epochs (and always after the last)
    log_every: int = 50  # refresh the progress bar's loss/lr/images-per-second every N steps
    eval_batch_size: int = 256  # batch size for validation
    drop_last: bool = False  # drop the last partial batch of each epoch
    flops_per_sample: float | None = None  # training FLOPs per sample (about 3x forward) for the MFU log on GPUs
    peak_flops: float | None = None  # the device's peak FLOP/s for MFU; guessed for known GPUs when None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, rejecting unknown keys (a typo must not be ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; valid: {sorted(names)}")
        return cls(**data)


@dataclass
class TrainResult:
    """What ``train`` hands back: per-epoch ``history``, the ``best`` epoch's row, the trained ``model``
    (unwrapped from DDP/compile), the ``run_dir`` and whether early stopping ended the run."""

    history: list[dict[str, Any]]
    best: dict[str, Any]
    model: nn.Module
    run_dir: Path | None = None
    stopped_early: bool = False
    steps: int = 0


class StopTraining(Exception):
    """Raise from a callback to end training cleanly after the current step or epoch."""


# ----------------------------------------------------------------------------------------------
# Data: in-memory tensors are indexed in whole batches; other data sets go through a DataLoader.


def _batcher(data: Any) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None:
    if hasattr(data, "get_batch"):
        return data.get_batch
    if isinstance(data, TensorDataset) and len(data.tensors) == 2:
        x_all, y_all = data.tensors
        return lambda idx: (x_all[idx], y_all[idx])
    return None


def _epoch_indices(n: int, epoch: int, seed: int, shuffle: bool, rank: int, world: int) -> torch.Tensor:
    """This rank's sample order for one epoch, a pure function of (seed, epoch)."""
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed)
        sampler.set_epoch(epoch)
        return torch.tensor(list(sampler), dtype=torch.long)
    if not shuffle:
        return torch.arange(n)
    # Same generator recipe as DistributedSampler, so one process sees the union of the ranks' batches.
    g = torch.Generator()
    g.manual_seed(seed + epoch)
    return torch.randperm(n, generator=g)


def _batches(data: Any, indices: torch.Tensor, batch_size: int, *, skip: int, drop_last: bool,
             num_workers: int, pin: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, DataLoader):  # the caller's loader, used as given
        yield from data
        return
    n = len(indices)
    stop = n - n % batch_size if drop_last else n
    batcher = _batcher(data)
    if batcher is not None:
        for start in range(skip * batch_size, stop, batch_size):
            yield batcher(indices[start:start + batch_size])
        return
    order = indices[skip * batch_size:stop].tolist()
    loader = DataLoader(data, batch_size=batch_size, sampler=order, num_workers=num_workers,
                        pin_memory=pin, persistent_workers=False)
    yield from loader


def _steps_per_epoch(data: Any, n_local: int, batch_size: int, drop_last: bool) -> int:
    if isinstance(data, DataLoader):
        return len(data)
    return n_local // batch_size if drop_last else math.ceil(n_local / batch_size)


# ----------------------------------------------------------------------------------------------
# Learning rate: a multiplier of the peak LR at each step, computed directly (no scheduler object).


def _lr_factor(cfg: TrainConfig, step: int, total: int, warmup: int) -> float:
    if cfg.schedule == "onecycle":
        warmup = warmup or max(1, int(0.3 * total))
        if step < warmup:  # from lr/25 up to lr, as in Smith's one-cycle policy
            return 1 / 25 + (1 - 1 / 25) * step / warmup
    elif step < warmup:
        return (step + 1) / (warmup + 1)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule not in ("cosine", "onecycle"):
        raise ValueError(f"schedule must be cosine, onecycle or constant, got {cfg.schedule!r}")
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(model: nn.Module, cfg: TrainConfig, param_groups: list[dict] | None) -> torch.optim.Optimizer:
    """Trainable params only (frozen ones stay out), in the caller's groups or decay/no-decay groups."""
    if param_groups is None:
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        param_groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
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
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {cfg.optimizer!r}")


def _autocast(device: torch.device, amp: Any) -> Callable[[], contextlib.AbstractContextManager]:
    use = (device.type == "cuda") if amp == "auto" else bool(amp)
    if not use:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _peak_flops(device: torch.device, cfg: TrainConfig) -> float | None:
    if cfg.peak_flops:
        return cfg.peak_flops
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in _PEAK_BF16.items() if k in name), None)


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(state["python"]), None))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _is_better(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value > best if monitor.endswith("acc") else value < best


# ----------------------------------------------------------------------------------------------


def train(model: nn.Module, train_data: Any, val_data: Any = None, config: TrainConfig | None = None, *,
          run_dir: str | Path | None = None, param_groups: list[dict] | None = None,
          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
          callbacks: dict[str, list[Callable[[dict[str, Any]], Any]]] | None = None, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """Train ``model`` on ``train_data``, evaluating on ``val_data`` after each epoch.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to outputs ``loss_fn`` accepts (logits).
        train_data: a Dataset of ``(x, y)``, a DataLoader (used as given: under DDP give it a
            ``DistributedSampler`` yourself), or a dataset with ``get_batch(indices)``.
        val_data: the same kinds, or None (then ``monitor`` falls back to ``train_loss``).
        config: a ``TrainConfig`` (defaults when None).
        run_dir: folder for ``checkpoint.pt`` and ``metrics.jsonl``; None writes nothing.
        param_groups: optimizer groups (dicts with ``params`` and optional ``lr_scale``,
            ``weight_decay``) for discriminative learning rates; frozen params are dropped.
        loss_fn: ``loss_fn(outputs, targets) -> scalar``; default cross-entropy with label smoothing.
        callbacks: event name (``on_step_end``, ``on_epoch_end``, ``on_checkpoint``) -> callables taking
            one dict (``event``, ``model``, ``epoch``, ``step``, ``loss`` or ``row``/``path``, ...). A
            callable may raise ``StopTraining`` to end the run cleanly.
        resume: continue from ``run_dir/checkpoint.pt`` (weights, optimizer, epoch, step, history, RNG).
        progress: show a tqdm bar (rank 0 only).

    Returns:
        TrainResult with ``history`` (per epoch: epoch, train_loss, val_loss, val_acc, lr, images_per_s,
        seconds), ``best`` and the trained ``model``.

    Raises:
        RunError: resume without a checkpoint, or no trainable parameters.
        ZooError: CUDA asked for but absent (zoo.device.resolve_device).
        KeyboardInterrupt: after writing a checkpoint at the step reached.

    Example:
        >>> cfg = TrainConfig(epochs=3, lr=0.1, optimizer="sgd")                       # doctest: +SKIP
        >>> result = train(net, TensorDataset(x, y), None, cfg, run_dir="runs/a")     # doctest: +SKIP
        >>> result.history[-1]["train_loss"]                                           # doctest: +SKIP
    """
    # -- set up ----------------------------------------------------------------------------------
    cfg = config or TrainConfig()
    callbacks = {k: list(v) for k, v in (callbacks or {}).items()}
    for event in callbacks:
        if event not in EVENTS:
            raise ValueError(f"unknown callback event {event!r}; events are {', '.join(EVENTS)}")
    rank, world, local_rank = env.distributed()
    ddp = world > 1
    device = resolve_device(cfg.device)
    if ddp:
        import torch.distributed as dist

        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    run_path = Path(run_dir) if run_dir is not None else None
    if run_path is not None and master:
        run_path.mkdir(parents=True, exist_ok=True)

    raw_model = model.to(device)
    if cfg.channels_last:
        raw_model = raw_model.to(memory_format=torch.channels_last)
    optimizer = _optimizer(raw_model, cfg, param_groups)
    if loss_fn is None:
        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    autocast = _autocast(device, cfg.amp)

    n_train = len(train_data.dataset) if isinstance(train_data, DataLoader) else len(train_data)
    n_local = math.ceil(n_train / world) if ddp else n_train
    steps_per_epoch = _steps_per_epoch(train_data, n_local, cfg.batch_size, cfg.drop_last)
    total_steps = max(1, cfg.epochs * steps_per_epoch)
    warmup_steps = int(round(cfg.warmup_epochs * steps_per_epoch))
    peak = _peak_flops(device, cfg)
    pin = device.type == "cuda"

    # -- resume ----------------------------------------------------------------------------------
    start_epoch, skip_batches, step = 0, 0, 0
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    best_value: float | None = None
    bad_epochs = 0
    if resume:
        ckpt_path = run_path / CHECKPOINT if run_path is not None else None
        if ckpt_path is None or not ckpt_path.is_file():
            raise RunError(f"cannot resume: {ckpt_path or 'run_dir=None'} has no checkpoint; "
                           "start the run without resume (or point run_dir at the interrupted run)")
        try:
            ckpt = torch.load(ckpt_path, map_location=device, weights_only=True)
        except Exception as err:  # a damaged file: pickle, zip or weights_only errors alike
            raise RunError(f"cannot resume: {ckpt_path} is not a readable checkpoint ({type(err).__name__}: "
                           f"{str(err)[:200]}); the zoo writes checkpoints atomically, so it was changed "
                           "outside the zoo. Start the run again without resume.") from err
        raw_model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start_epoch, skip_batches, step = ckpt["epoch"], ckpt["batch"], ckpt["step"]
        history, best, bad_epochs = list(ckpt["history"]), dict(ckpt["best"]), ckpt["bad_epochs"]
        best_value = best.get(_monitor_key(cfg, val_data)) if best else None
        _set_rng_state(ckpt["rng"], device)
        if isinstance(train_data, DataLoader):
            skip_batches = 0  # a caller's loader cannot skip: the epoch restarts (see module docstring)
            step = start_epoch * steps_per_epoch

    fwd_model: nn.Module = raw_model
    if cfg.compile:
        fwd_model = torch.compile(fwd_model)
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        fwd_model = DistributedDataParallel(fwd_model, device_ids=[device.index] if device.type == "cuda" else None)

    def save_checkpoint(epoch_done: int, batch_done: int) -> None:
        if run_path is None or not master:
            return
        ckpt = {
            "model": raw_model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": {"schedule": cfg.schedule, "step": step, "total_steps": total_steps,
                          "warmup_steps": warmup_steps},
            "epoch": epoch_done, "batch": batch_done, "step": step,
            "history": history, "best": best, "bad_epochs": bad_epochs,
            "config": cfg.to_dict(), "rng": _rng_state(device),
        }
        path = run_path / CHECKPOINT
        with atomic_write(path) as fh:
            torch.save(ckpt, fh)
        _fire(callbacks, "on_checkpoint", {"event": "on_checkpoint", "path": path, "epoch": epoch_done,
                                            "batch": batch_done, "step": step, "model": raw_model})

    bar = None
    if progress and master:
        from tqdm.auto import tqdm

        bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, leave=True)

    stopped_early = False
    epoch, batch_i = start_epoch, skip_batches
    try:
        for epoch in range(start_epoch, cfg.epochs):
            fwd_model.train()
            indices = None if isinstance(train_data, DataLoader) else _epoch_indices(
                n_train, epoch, cfg.seed, True, rank, world)
            skip = skip_batches if epoch == start_epoch else 0
            loss_sum = torch.zeros((), device=device, dtype=torch.float64)
            seen = 0
            t0 = time.perf_counter()
            batch_i = skip
            lr_now = cfg.lr
            for x, y in _batches(train_data, indices, cfg.batch_size, skip=skip, drop_last=cfg.drop_last,
                                 num_workers=cfg.num_workers, pin=pin):
                # -- the learning rate for this step
                factor = _lr_factor(cfg, step, total_steps, warmup_steps)
                for group in optimizer.param_groups:
                    group["lr"] = cfg.lr * group["lr_scale"] * factor
                lr_now = cfg.lr * factor
                x = x.to(device, non_blocking=pin)
                y = y.to(device, non_blocking=pin)
                if cfg.channels_last and x.ndim == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
                # -- forward/backward, clip, step
                with autocast():
                    out = fwd_model(x)
                    loss = loss_fn(out, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip)
                optimizer.step()
                # -- bookkeeping: no host sync here except every log_every steps
                n = y.shape[0]
                loss_sum += loss.detach() * n
                seen += n
                step += 1
                batch_i += 1
                if callbacks.get("on_step_end"):
                    _fire(callbacks, "on_step_end", {"event": "on_step_end", "model": raw_model, "epoch": epoch,
                                                     "step": step, "batch": batch_i, "loss": loss.detach(),
                                                     "lr": lr_now})
                if bar is not None:
                    bar.update(1)
                    if step % cfg.log_every == 0:
                        rate = seen * world / max(1e-9, time.perf_counter() - t0)
                        bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}", lr=f"{lr_now:.3g}",
                                        img_s=f"{rate:.0f}", refresh=False)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - t0
            # -- end of epoch: reduce, evaluate, record, checkpoint, early stopping
            if ddp:
                import torch.distributed as dist

                totals = torch.stack([loss_sum, torch.tensor(float(seen), device=device, dtype=torch.float64)])
                dist.all_reduce(totals)
                loss_sum, seen_all = totals[0], int(totals[1].item())
            else:
                seen_all = seen
            # After a mid-epoch resume the epoch's train_loss covers the batches run since the resume.
            train_loss = float(loss_sum.item()) / seen_all if seen_all else float("nan")
            row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": train_loss,
                                   "lr": lr_now, "images_per_s": seen_all / max(seconds, 1e-9),
                                   "seconds": seconds, "step": step}
            if peak and cfg.flops_per_sample:
                row["mfu"] = row["images_per_s"] * cfg.flops_per_sample / (peak * world)
            if val_data is not None:
                ev = evaluate(fwd_model, val_data, batch_size=cfg.eval_batch_size, device=device,
                              loss_fn=loss_fn, amp=cfg.amp, channels_last=cfg.channels_last, predictions=False)
                row["val_loss"], row["val_acc"] = ev["loss"], ev["accuracy"]
            history.append(row)
            key = _monitor_key(cfg, val_data)
            if _is_better(row[key], best_value, key):
                best_value, best, bad_epochs = row[key], dict(row), 0
            else:
                bad_epochs += 1
            batch_i = 0
            if master:
                if run_path is not None:
                    with open(run_path / METRICS, "a", encoding="utf-8") as fh:
                        fh.write(json.dumps(row) + "\n")
                if bar is not None:
                    shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}
                    bar.write(" ".join(f"{k}={v}" for k, v in shown.items()))
            last = epoch + 1 == cfg.epochs
            stop = cfg.early_stopping is not None and bad_epochs >= cfg.early_stopping
            if (epoch + 1) % max(1, cfg.checkpoint_every) == 0 or last or stop:
                save_checkpoint(epoch + 1, 0)
            try:
                _fire(callbacks, "on_epoch_end", {"event": "on_epoch_end", "model": raw_model, "epoch": epoch + 1,
                                                  "step": step, "row": row, "history": history})
            except StopTraining:
                stop = True
            if stop:
                stopped_early = True
                break
    except StopTraining:
        save_checkpoint(epoch, batch_i)
    except KeyboardInterrupt:
        # Leave a resumable run: the weights and optimizer as of the last finished step.
        save_checkpoint(epoch, batch_i)
        raise
    finally:
        if bar is not None:
            bar.close()
    return TrainResult(history=history, best=best, model=raw_model, run_dir=run_path,
                       stopped_early=stopped_early, steps=step)


def _monitor_key(cfg: TrainConfig, val_data: Any) -> str:
    if cfg.monitor.startswith("val_") and val_data is None:
        return "train_loss"  # documented: with no validation data only the training loss exists
    return cfg.monitor


def _fire(callbacks: dict[str, list[Callable]], event: str, info: dict[str, Any]) -> None:
    for fn in callbacks.get(event, ()):
        fn(info)


@torch.no_grad()
def evaluate(model: nn.Module, data: Any, *, batch_size: int = 256, device: str | torch.device = "auto",
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None, amp: Any = "auto",
             channels_last: bool = False, predictions: bool = True) -> dict[str, Any]:
    """Loss and accuracy of ``model`` on ``data`` (in eval mode; the mode is restored after).

    Args:
        model: the network (logits out).
        data: a Dataset of ``(x, y)``, a DataLoader, or a dataset with ``get_batch``.
        batch_size: samples per forward pass.
        device: where to run; ``"auto"`` picks cuda when available. The model is moved there.
        loss_fn: ``loss_fn(outputs, targets)`` returning the batch mean; default cross-entropy.
        amp: as ``TrainConfig.amp``.
        channels_last: NHWC inputs.
        predictions: also return every prediction and target (CPU tensors).

    Returns:
        dict with ``loss`` (mean per sample), ``accuracy`` (for class-index targets, else None), ``n``,
        and ``predictions`` / ``targets`` (int64 tensors) when asked.

    Example:
        >>> evaluate(net, TensorDataset(x, y))["accuracy"]   # doctest: +SKIP
    """
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    model.to(dev)
    was_training = model.training
    model.eval()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    autocast = _autocast(dev, amp)
    n_items = len(data.dataset) if isinstance(data, DataLoader) else len(data)
    indices = None if isinstance(data, DataLoader) else torch.arange(n_items)
    loss_sum, correct, seen = 0.0, 0, 0
    preds, targets = [], []
    classify = True
    try:
        for x, y in _batches(data, indices, batch_size, skip=0, drop_last=False, num_workers=0, pin=False):
            x, y = x.to(dev), y.to(dev)
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast():
                out = model(x)
                loss = loss_fn(out, y)
            n = y.shape[0]
            loss_sum += float(loss) * n
            seen += n
            classify = classify and y.ndim == 1 and not y.is_floating_point()
            if classify:
                pred = out.argmax(1)
                correct += int((pred == y).sum())
                if predictions:
                    preds.append(pred.cpu())
                    targets.append(y.cpu())
    finally:
        model.train(was_training)
    result: dict[str, Any] = {"loss": loss_sum / max(1, seen), "accuracy": correct / seen if classify and seen else None,
                              "n": seen}
    if predictions:
        result["predictions"] = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
        result["targets"] = torch.cat(targets) if targets else torch.empty(0, dtype=torch.long)
    return result
