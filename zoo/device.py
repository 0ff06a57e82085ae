"""Where to run: the one rule that turns ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` into a device.

Shared by the Extractor and the training loop. Imports torch; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import torch

from zoo.registry import env

from .errors import ZooError

__all__ = ["resolve_device", "cpu_batch_cap", "CPU_BATCH_PIXELS"]

# On the CPU a forward pass is bound by memory traffic once a batch's activations outgrow the caches:
# at 224 px and 2 threads, batches of 8 ran MobileNetV2 2.2x and ResNet-18 1.1-1.3x faster an image than
# batches of 256; at 112 px batches of 32 were best, at 64 px 64-128 (BENCHMARKS.md, "Batches on the
# CPU"). About this many input pixels a batch is at or near the best at every size measured.
CPU_BATCH_PIXELS = 2 ** 19


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the GPU when torch sees one (under torchrun, this process's ``LOCAL_RANK``), else
    the CPU; anything else as given.

    Raises:
        ZooError: a CUDA device is asked for and torch sees none.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", env.distributed().local_rank)
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ZooError(f"device {device!r} was asked for but torch sees no CUDA GPU; use --device cpu "
                       "(or auto).")
    return dev


def cpu_batch_cap(pixels: int, *, low: int = 8, high: int = 256) -> int:
    """The batch size an inference pass on the CPU should not exceed for inputs of ``pixels`` pixels
    (height x width): the largest power of two holding at most ``CPU_BATCH_PIXELS`` of them, within
    ``low``-``high``.

    Example:
        >>> cpu_batch_cap(224 * 224), cpu_batch_cap(112 * 112), cpu_batch_cap(64 * 64), cpu_batch_cap(28 * 28)
        (8, 32, 128, 256)
    """
    fits = max(1, CPU_BATCH_PIXELS // max(1, pixels))
    return max(low, min(high, 2 ** (fits.bit_length() - 1)))
