"""What a feature row depends on, as digests: the network's weights, its preprocessing, and the input
files' identity. Resumed and reused rows must have been made by the same network from the same files.

Owns: ``producer`` (the digests of what made an extractor's features), ``weights_digest``,
``has_random_weights``, ``file_identity`` and ``chunk_digests``. Imports torch and ``zoo.model``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from ..model import ZooModel

__all__ = ["producer", "weights_digest", "preprocessing_digest", "has_random_weights", "file_identity",
           "chunk_digests"]


def _update(h: Any, name: str, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    # The raw bytes of any dtype (bf16 included), read as bytes rather than through numpy's types.
    h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))


def weights_digest(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (names, dtypes, shapes, values), whatever their device
    or memory format: two models with the same digest compute the same function."""
    h = hashlib.sha256(b"zoo-weights-v1|")
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    for name in sorted(tensors):
        _update(h, name, tensors[name])
    return h.hexdigest()


def preprocessing_digest(model: ZooModel) -> str:
    """sha256 over what turns a file into the network's input: the preprocessing numbers, the decode
    mode and the per-pixel mean image, if any."""
    pre = asdict(model.preprocessing) if model.preprocessing is not None else None
    h = hashlib.sha256(json.dumps({"preprocessing": pre, "mode": model.image_mode}, sort_keys=True,
                                  default=list).encode())
    if model.mean_image is not None:
        _update(h, "mean_image", torch.as_tensor(model.mean_image))
    return h.hexdigest()


def producer(model: ZooModel) -> dict[str, str]:
    """What made a model's features, beyond the options asked for: ``weights`` and
    ``preprocessing`` digests. Equal producers give equal features for the same options and files."""
    return {"weights": weights_digest(model), "preprocessing": preprocessing_digest(model)}


def has_random_weights(model: ZooModel) -> bool:
    """True for a network that ``zoo.load`` gave random weights: an entry with no weights file (the
    ``*.scratch`` architectures). Each load of it is a different network unless the RNG is seeded."""
    entry = getattr(model, "entry", None)
    if entry is None or getattr(model, "source_dir", None) is not None:
        return False
    return not entry.files and entry.architecture.library in ("zoo", "timm", "torchvision")


def file_identity(path: str) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a file (following links), or ``(-1, -1)`` when it cannot be stat'ed.
    The same rule ``make`` and ``rsync`` use to tell a changed file without reading it."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def chunk_digests(paths: Sequence[str], chunk_size: int) -> list[str]:
    """For each chunk of ``chunk_size`` paths, sha256 over its paths and their identities: a chunk
    whose digest changed holds a file that was added, removed, replaced or touched."""
    out = []
    for start in range(0, len(paths), chunk_size):
        h = hashlib.sha256()
        for path in paths[start:start + chunk_size]:
            size, mtime = file_identity(path)
            h.update(os.fsencode(path) + f"\0{size}\0{mtime}\n".encode())
        out.append(h.hexdigest())
    return out
