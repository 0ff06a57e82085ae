"""Cached features for linear probes: the frozen body runs over the images once, then every epoch
trains the head on the stored vectors.

Owns: ``model_key`` (a digest of everything that decides a feature: the body's weights and buffers,
the cut layer, the preprocessing and mean image), ``extract`` (body features for image files, in
order), ``cached_features`` (the same, read from or written to ``$ZOO_HOME/features/<model key>/<files
key>.safetensors``, where the files key is the digest of the ordered sha256s of the files' contents),
and ``LabelledImages`` (a Dataset over a split part that refuses, by name, a file that became
unreadable after the scan). May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import torch
from zoo._io import atomic_write
from zoo.errors import DataError, ImageError
from zoo.model import ZooModel
from zoo import store

__all__ = ["model_key", "files_key", "extract", "cached_features", "cache_path", "LabelledImages",
           "FEATURES_VERSION"]

FEATURES_VERSION = 1  # bump when what a cached file means changes


def _hash_tensor(h: "hashlib._Hash", name: str, t: torch.Tensor) -> None:
    t = t.detach().to("cpu").contiguous()
    h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
    # Raw bytes of any dtype (bf16 included): view as bytes instead of going through numpy's types.
    h.update(memoryview(t.reshape(-1).view(torch.uint8).numpy()))


def model_key(model: ZooModel) -> str:
    """sha256 over what decides the body's output: weights and buffers (BatchNorm statistics), the cut
    layer, the preprocessing and the mean image. Two models with equal keys give equal features."""
    h = hashlib.sha256(f"zoo-features-v{FEATURES_VERSION}".encode())
    for name, t in sorted(model.body.state_dict().items()):
        _hash_tensor(h, name, t)
    pre = asdict(model.preprocessing) if model.preprocessing is not None else None
    h.update(json.dumps({"cut": model.cut_layer, "preprocessing": pre, "layer": "pool"}, sort_keys=True).encode())
    if model.mean_image is not None:
        _hash_tensor(h, "mean_image", torch.as_tensor(model.mean_image))
    return h.hexdigest()


def files_key(hashes: Sequence[str]) -> str:
    """sha256 over the ordered content digests of the images (so renaming a file keeps the cache)."""
    if any(not d for d in hashes):
        raise DataError("a file has no content digest in the split manifest; scan the folder again "
                        "(a new run) to rebuild it.")
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def cache_path(mkey: str, fkey: str) -> Path:
    """``$ZOO_HOME/features/<model key>/<files key>.safetensors`` (the layout is ``zoo.store``'s)."""
    return store.features_path(mkey, fkey)


class LabelledImages(torch.utils.data.Dataset):
    """(transform(image), label) for image files checked at scan time. A file that has become
    unreadable since raises ``DataError`` naming it instead of silently shrinking the data."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], transform: Callable, *, mode: str = "RGB"):
        from zoo.images import ImageDataset

        self.images = ImageDataset(list(paths), transform, list(labels), mode=mode)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from zoo.images import Skipped

        item = self.images[index]
        if isinstance(item, Skipped):
            raise DataError(f"{item.path} was readable when the folder was scanned but not now ({item.reason}); "
                            "restore it, or start a new run so the scan skips it.")
        return item


def extract(model: ZooModel, paths: Sequence[Path], *, batch_size: int | None = None,
            device: str | torch.device = "cpu", num_workers: int = 0, progress: bool = False) -> torch.Tensor:
    """The body's pooled features for image files, in order: (N, num_features) float32 on the CPU.

    Runs ``zoo.extract.Extractor`` (the one decode/batch/forward path) in eager NCHW, so the model is
    left as it was apart from its device.

    Raises:
        DataError: a file is unreadable (named).
    """
    from zoo.extract import Extractor

    if not paths:
        return torch.empty(0, model.num_features)
    was_training = model.training
    try:
        ex = Extractor(model, device=device, batch_size=batch_size, num_workers=num_workers, output="torch",
                       channels_last=False, backend="torch")
        return ex([Path(p) for p in paths], progress=progress)
    except ImageError as err:
        reason = str(err).removeprefix(f"{err.path}: ")
        raise DataError(f"{err.path} was readable when the folder was scanned but not now ({reason}); "
                        "restore it, or start a new run so the scan skips it.") from err
    finally:
        model.train(was_training)


def cached_features(model: ZooModel, paths: Sequence[Path], hashes: Sequence[str], *, batch_size: int | None = None,
                    device: str | torch.device = "cpu", num_workers: int = 0, progress: bool = False,
                    key: str | None = None) -> tuple[torch.Tensor, bool, Path]:
    """Body features for ``paths``, from the cache when the same model saw the same file contents.

    Args:
        model: the (frozen) model; its key covers weights, cut layer and preprocessing.
        paths: image files, in the order the features should come back.
        hashes: their sha256 (from the split manifest).
        key: ``model_key(model)`` when the caller has it (hashing a large body takes a moment).

    Returns:
        (features (N, D) float32, True when read from the cache, the cache file).

    Raises:
        DataError: a file is unreadable, or a digest is missing.
    """
    from safetensors.torch import load_file, save

    if len(paths) != len(hashes):
        raise ValueError(f"{len(paths)} paths but {len(hashes)} digests")
    path = cache_path(key or model_key(model), files_key(hashes))
    if path.is_file():
        try:
            feats = load_file(str(path))["features"]
            if feats.shape[0] == len(paths):
                return feats, True, path
        except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt below, never trusted
            pass
    feats = extract(model, paths, batch_size=batch_size, device=device, num_workers=num_workers, progress=progress)
    data = save({"features": feats.contiguous()}, metadata={"model": model.name or "", "count": str(len(paths)),
                                                             "version": str(FEATURES_VERSION)})
    with atomic_write(path) as fh:
        fh.write(data)
    return feats, False, path

