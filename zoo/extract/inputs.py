"""What the Extractor is given, as a flat list of images: folders expanded, list files read, tensors
checked, and each input named the same way in results and failure lists.

Owns: ``as_items`` (a call's inputs -> one item per image), ``collect_inputs`` (the folders, list files
and image paths of a folder job -> paths in order, plus the files refused on sight), ``describe``
(how a row or a failure names its input) and ``TensorAwareDataset``. Imports torch, numpy, PIL and
``zoo.images``; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import DataError, ImageError
from ..images import ImageDataset, find_images

__all__ = ["as_items", "collect_inputs", "describe", "names_folder", "check_tensor", "TensorAwareDataset",
           "LIST_SUFFIXES"]

LIST_SUFFIXES = frozenset({".txt", ".lst"})


def describe(item: Any, index: int) -> str:
    """The name a row or a failure gives its input: the path as given for files, else the kind of
    object and its position among the inputs (``<Image 3>``, ``<ndarray 0>``, ``<bytes 2>``)."""
    if isinstance(item, (str, os.PathLike)):
        return os.fspath(item)
    name = getattr(item, "name", None)
    if isinstance(name, str) and hasattr(item, "read"):
        return name
    return f"<{type(item).__name__} {index}>"


def as_items(images: Any, *, rejected: list[tuple[str, str]] | None = None) -> list[Any]:
    """The inputs of one call as a flat list of single images, folders expanded in natural order.

    Args:
        images: a path, a folder, a PIL image, bytes, a file object, an array (HxWxC, or NxHxWxC), a
            tensor (CxHxW, or NxCxHxW), or an iterable mixing these.
        rejected: if given, files in the folders that claim to be images but are not (or are not
            regular files) are appended as ``(path, reason)``.

    Raises:
        ImageError: a folder with no images, or a tensor that is not an image.
        TypeError: an input of a kind the Extractor does not take.
    """
    found: list[tuple[Path, str]] = []
    if isinstance(images, (str, os.PathLike)):
        path = Path(images)
        if path.is_dir():
            items: list[Any] = list(find_images(path, rejected=found))
            if not items and not found:
                raise ImageError(f"{path}: no images in this folder (JPEG, PNG, WebP, BMP, GIF, TIFF).",
                                 path=str(path))
        else:
            items = [images]
    elif isinstance(images, (Image.Image, bytes, bytearray, memoryview)) or hasattr(images, "read"):
        items = [images]
    elif isinstance(images, np.ndarray):
        items = list(images) if images.ndim == 4 else [images]
    elif isinstance(images, torch.Tensor):
        items = [check_tensor(t) for t in images] if images.ndim == 4 else [check_tensor(images)]
    elif isinstance(images, Iterable):
        items = []
        for item in images:
            if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
                items += find_images(item, rejected=found)
            else:
                items.append(check_tensor(item) if isinstance(item, torch.Tensor) else item)
    else:
        raise TypeError(f"cannot extract features from a {type(images).__name__}: pass paths, a folder, PIL "
                        "images, numpy arrays, tensors or bytes.")
    if rejected is not None:
        rejected += [(str(p), reason) for p, reason in found]
    return items


def names_folder(images: Any) -> bool:
    """True when ``images`` is, or lists, a folder: the caller then does not know which files it holds."""
    if isinstance(images, (str, os.PathLike)):
        return os.path.isdir(images)
    if isinstance(images, (list, tuple)):
        return any(isinstance(i, (str, os.PathLike)) and os.path.isdir(i) for i in images)
    return False


def check_tensor(t: torch.Tensor) -> torch.Tensor:
    """A tensor image (CxHxW, C = 1 or 3; uint8, or float in [0, 1]) on the CPU, or ``ImageError``."""
    if t.ndim != 3 or t.shape[0] not in (1, 3):
        raise ImageError(f"a tensor image must be CxHxW (or NxCxHxW) with C = 1 or 3, got shape "
                         f"{tuple(t.shape)}; permute HxWxC tensors with t.permute(2, 0, 1).")
    if t.is_floating_point() and t.numel() and (float(t.min()) < -1e-3 or float(t.max()) > 1 + 1e-3):
        raise ImageError(f"a float tensor image must hold values in [0, 1], got [{float(t.min()):.3g}, "
                         f"{float(t.max()):.3g}]. For an already normalised batch use Extractor.forward(x).")
    return t.detach().cpu()


class TensorAwareDataset(ImageDataset):
    """``ImageDataset`` that also takes tensors (images already in memory) as items."""

    def __getitem__(self, index: int):
        src = self.paths[index]
        if isinstance(src, torch.Tensor):
            return self.transform(src), index
        return super().__getitem__(index)


def collect_inputs(inputs: str | os.PathLike | Iterable[str | os.PathLike], *, recursive: bool = True
                   ) -> tuple[list[str], list[tuple[str, str]]]:
    """The image paths that ``inputs`` name, in order, and the files refused on sight.

    Each input is a folder (its images, naturally sorted; files with an image extension whose bytes
    are not an image, and FIFOs or devices, are refused), a list file (``.txt`` / ``.lst``: one path a
    line, relative to the list's folder, ``#`` comments), or an image file. Duplicates are kept: one
    row per input. A path inside a list that does not exist is kept, so that it is reported as failed.

    Raises:
        DataError: an input that does not exist, is neither a folder nor a regular file, or is a list
            file that cannot be read.

    Example:
        >>> collect_inputs(["photos/", "more.txt"])   # doctest: +SKIP
        (['photos/a1.jpg', 'photos/a2.jpg', 'elsewhere/b.png'], [('photos/notes.jpg', 'not an image: ...')])
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths: list[str] = []
    rejected: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        kind = _root_kind(path)
        if kind == "folder":
            found: list[tuple[Path, str]] = []
            paths += [str(p) for p in find_images(path, recursive=recursive, rejected=found)]
            rejected += [(str(p), reason) for p, reason in found]
        elif path.suffix.lower() in LIST_SUFFIXES:
            paths += read_list(path)
        else:
            paths.append(str(path))
    return paths, rejected


def _root_kind(path: Path) -> str:
    """``folder`` or ``file`` for an input given by name; anything else is an error, raised before the
    path is opened (a FIFO would block the open until someone writes to it)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such file or folder. Give folders of images, image files, or .txt "
                        "lists of paths.") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name
        raise DataError(f"{path!r}: cannot be read ({getattr(err, 'strerror', None) or err}).") from None
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "file"
    raise DataError(f"{path}: not a regular file or folder (a FIFO, socket or device); not opened. Give "
                    "folders of images, image files, or .txt lists of paths.")


def read_list(path: Path) -> list[str]:
    """The paths a list file names, one a line (relative ones resolved against the list's folder).

    Lines are decoded the way the OS decodes file names, so a name that is not UTF-8 survives.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: the list file cannot be read ({err.strerror or err}).") from None
    out: list[str] = []
    for raw in data.splitlines():
        line = os.fsdecode(raw.strip())
        if line and not line.startswith("#"):
            entry = Path(line).expanduser()
            out.append(str(entry if entry.is_absolute() else path.parent / entry))
    return out
