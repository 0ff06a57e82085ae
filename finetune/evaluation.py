"""Evaluation: loss and accuracy of a model on a data set, and the autocast rule it shares with the
training loop's steps.

Owns ``evaluate`` and ``autocast``. May import ``zoo`` and torch; never ``zoo.cli``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zoo.device import cpu_batch_cap, resolve_device

from .batches import eval_batches, sample_pixels

__all__ = ["evaluate", "autocast"]


def autocast(device: torch.device, amp: Any) -> contextlib.AbstractContextManager:
    """The autocast context for ``amp`` (as ``TrainConfig.amp``) on ``device``, or a null context."""
    use = (device.type == "cuda") if amp == "auto" else amp is True or amp in ("bf16", "fp16")
    if not use:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16 if amp == "fp16" else torch.bfloat16)


@torch.no_grad()
def evaluate(model: nn.Module, data: Any, *, batch_size: int = 256, device: str | torch.device = "auto",
             loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None, amp: Any = "auto",
             channels_last: bool = False, predictions: bool = True, num_workers: int = 0) -> dict[str, Any]:
    """Loss and accuracy of ``model`` on ``data`` (in eval mode; the mode is restored after). Draws
    nothing from the global random generators.

    Args:
        model: the network (logits out).
        data: a Dataset of ``(x, y)``, a DataLoader, or a dataset with ``get_batch``.
        batch_size: samples per forward pass; on the CPU at most ``zoo.device.cpu_batch_cap`` of the
            images' size (8 at 224 px), which ran 1.1-2.2x faster there than batches of 256.
        device: where to run; ``"auto"`` picks cuda when available. The model is moved there.
        loss_fn: ``loss_fn(outputs, targets)`` returning the batch mean; default cross-entropy.
        amp: as ``TrainConfig.amp``.
        channels_last: NHWC inputs.
        predictions: also return every prediction and target (CPU tensors).
        num_workers: DataLoader workers for a map-style Dataset.

    Returns:
        dict with ``loss`` (mean per sample), ``accuracy`` (for class-index targets, else None), ``n``,
        and ``predictions`` / ``targets`` (int64 tensors) when asked.

    Example:
        >>> evaluate(net, TensorDataset(x, y))["accuracy"]   # doctest: +SKIP
    """
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    pixels = sample_pixels(data) if dev.type == "cpu" else None
    if pixels is not None:
        batch_size = min(batch_size, cpu_batch_cap(pixels))
    model.to(dev)
    was_training = model.training
    model.eval()
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    loss_sum, correct, seen = 0.0, 0, 0
    preds, targets = [], []
    classify = True
    try:
        for x, y in eval_batches(data, batch_size, num_workers):
            x, y = x.to(dev), y.to(dev)
            if channels_last and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, amp):
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
    result: dict[str, Any] = {"loss": loss_sum / max(1, seen), "n": seen,
                              "accuracy": correct / seen if classify and seen else None}
    if predictions:
        result["predictions"] = torch.cat(preds) if preds else torch.empty(0, dtype=torch.long)
        result["targets"] = torch.cat(targets) if targets else torch.empty(0, dtype=torch.long)
    return result
