"""Where to run: the one rule that turns ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"`` into a device.

Shared by the Extractor and the training loop. Imports torch; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import torch

from zoo.registry import env

from .errors import ZooError

__all__ = ["resolve_device"]


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
