"""Reading and writing weights safely.

Owns: ``read_state_dict`` (safetensors, or a ``.pth`` through ``torch.load(weights_only=True)`` only:
a pickle that asks for anything but tensors and plain containers is refused, never run),
``save_state_dict`` (atomic safetensors writes) and ``load_entry_weights`` (fetch an entry's weights,
convert a ``.pth`` once into safetensors in the cache, read that afterwards).

The checksum is verified by ``zoo.fetch.fetch_verified`` before ``torch.load`` ever sees a file; where
the conversion lives is ``zoo.store``'s. Imports torch, ``zoo.fetch`` and ``zoo.store``; never
``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from zoo._io import atomic_path
from zoo.errors import UnsafeWeightsError, WeightsError
from zoo.registry.schema import Entry

__all__ = ["read_state_dict", "save_state_dict", "load_entry_weights"]

# Containers that training scripts wrap a state dict in; unwrapped in this order.
_WRAPPER_KEYS = ("state_dict", "model")


def read_state_dict(path: str | Path, *, format: str) -> dict[str, torch.Tensor]:  # noqa: A002 (the registry's word)
    """Read a state dict from a safetensors or ``.pth`` file, without running any pickled code.

    A ``.pth`` is read with ``torch.load(map_location="cpu", weights_only=True)``; a checkpoint that
    wraps the weights as ``{"state_dict": ...}`` or ``{"model": ...}`` is unwrapped, and a ``module.``
    prefix that DistributedDataParallel adds to every key is removed.

    Args:
        path: the file.
        format: ``"safetensors"`` or ``"pth"`` (an entry file's ``format``).

    Returns:
        Parameter and buffer names mapped to CPU tensors.

    Raises:
        UnsafeWeightsError: the pickle asks for a global outside torch's weights-only allow-list (it
            would run code if loaded the unsafe way). Nothing from it was executed.
        WeightsError: the file is missing, truncated, not of that format, or holds no state dict.

    Example:
        >>> sd = read_state_dict("resnet18-f37072fd.pth", format="pth")   # doctest: +SKIP
        >>> sd["fc.weight"].shape                                         # doctest: +SKIP
        torch.Size([1000, 512])
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file {path} does not exist; fetch it with `zoo download NAME`.")
    if format == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as err:
            raise WeightsError(f"{path} is not a readable safetensors file ({err}); delete it and fetch "
                               f"again (`zoo download NAME --force`).") from err
    if format == "pth":
        return _read_pth(path)
    raise WeightsError(f"{path}: format {format!r} is not a state-dict format this reader handles "
                       f"(safetensors, pth); Caffe files go through zoo.caffe.")


def _read_pth(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's restricted unpickler raises this for a global it does not allow (the __reduce__
        # trick malicious checkpoints use), before calling anything.
        found = re.search(r"GLOBAL (\S+)", str(err))
        detail = f"it imports {found.group(1)}" if found else str(err).strip().splitlines()[0][:200]
        raise UnsafeWeightsError(
            f"Refused to load {path}: its pickle asks for code beyond tensors and plain containers "
            f"({detail}). Nothing in it was run. Only load it if you trust its author, and then convert it "
            f"to safetensors once; the zoo never unpickles beyond weights_only=True.") from err
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as err:
        raise WeightsError(f"{path} is not a readable PyTorch file ({type(err).__name__}: {err}); delete it "
                           f"and fetch again (`zoo download NAME --force`).") from err
    return _as_state_dict(obj, path)


def _as_state_dict(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(2):  # {"model": {"state_dict": ...}} occurs in the wild
        if isinstance(obj, Mapping):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is not None and not all(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = inner
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict (a mapping of names to "
                           f"tensors).")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = ", ".join(map(repr, bad[:5])) + (" ..." if len(bad) > 5 else "")
        raise WeightsError(f"{path} is not a plain state dict: {len(bad)} values are not tensors ({shown}). "
                           f"Save `model.state_dict()` instead of the model or a training checkpoint.")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):  # saved from a DDP-wrapped model
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | Path, *,
                    metadata: dict[str, str] | None = None) -> Path:
    """Write a state dict as safetensors, atomically (readers see the old file or the new one).

    Tensors are moved to the CPU and made contiguous; tensors sharing storage (tied weights) are
    cloned, because safetensors refuses aliasing.

    Args:
        state_dict: names to tensors.
        path: the target file.
        metadata: string key/value pairs stored in the file header.

    Returns:
        ``path`` as a Path.

    Raises:
        WeightsError: a value is not a tensor or a metadata value is not a string.

    Example:
        >>> save_state_dict(model.state_dict(), "model.safetensors", metadata={"arch": "lenet"})  # doctest: +SKIP
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[tuple[int, int]] = set()
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"cannot save {name!r} to {path}: it is a {type(value).__name__}, not a tensor")
        t = value.detach().to("cpu")
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key in seen and storage.nbytes():
            t = t.clone()  # a second view of the same memory: safetensors refuses shared storage
        else:
            seen.add(key)
        tensors[name] = t.contiguous()
    # Views of one storage that differ in extent are also refused by safetensors: clone everything
    # whose storage is larger than the tensor itself.
    tensors = {k: (v.clone() if v.untyped_storage().nbytes() != v.numel() * v.element_size() else v)
               for k, v in tensors.items()}
    if metadata is not None and not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise WeightsError(f"safetensors metadata must map strings to strings, got {metadata!r}")
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


def load_entry_weights(entry: Entry, *, progress: bool = True) -> dict[str, torch.Tensor]:
    """Fetch (and verify) an entry's ``weights`` file and read its state dict.

    A ``.pth`` is checksummed by ``fetch_verified``, read once with ``weights_only=True`` and converted
    into safetensors in the cache (``zoo.store.converted_path``); later calls read that. The
    conversion's record names the sha256 of the ``.pth`` it came from, and it is redone if that changes.

    Args:
        entry: a registry entry with a ``weights`` file in ``safetensors`` or ``pth`` format.
        progress: show a download progress bar.

    Returns:
        The state dict, on the CPU.

    Raises:
        DownloadError, ChecksumMismatchError, OfflineError, StorageError: see ``zoo.fetch.fetch_verified``.
        UnsafeWeightsError: the ``.pth`` pickle would run code.
        WeightsError: the file is unreadable or of a format that is not a state dict.

    Example:
        >>> from zoo.registry import get_entry
        >>> sd = load_entry_weights(get_entry("resnet18"))    # doctest: +SKIP
    """
    from filelock import FileLock

    from zoo import store
    from zoo.fetch import fetch_verified

    spec = entry.file("weights") if any(f.role == "weights" for f in entry.files) else None
    if spec is None:
        raise WeightsError(f"Entry {entry.name!r} lists no weights file; build it with pretrained=False "
                           f"or add a 'weights' file to its registry entry.")
    if spec.format not in ("safetensors", "pth"):
        raise WeightsError(f"{entry.name}'s weights are {spec.format!r}, not a state dict; "
                           f"{'zoo.caffe converts them' if spec.format == 'caffemodel' else 'no reader exists'}.")
    got = fetch_verified(entry, "weights", progress=progress)
    if spec.format == "safetensors":
        return read_state_dict(got.path, format="safetensors")
    converted = store.current_conversion(entry.name, spec.filename, got.sha256)
    if converted is not None:
        return read_state_dict(converted, format="safetensors")
    target = store.converted_path(entry.name, spec.filename)
    with FileLock(str(store.lock_path(entry.name, target.name))):
        state = read_state_dict(got.path, format="pth")
        save_state_dict(state, target, metadata={"zoo.entry": entry.name, "zoo.converted_from": spec.filename,
                                                  "zoo.source_sha256": got.sha256})
        digest = store.hash_file(target).sha256
        store.write_record(target, sha256=digest, algorithm="sha256", digest=digest, entry=entry.name,
                           source=f"converted from {spec.filename}", role="weights-converted",
                           extra={"converted_from_sha256": got.sha256})
    return state
