"""The features file: what ``zoo extract`` writes and ``zoo similar`` reads.

``feats.npz`` (``np.load`` it; no pickle needed)::

    features        float32 (N, D), one row per image that could be read, in input order
    paths           str (N,), the image each row came from (exactly, whatever the characters)
    index           int64 (N,), each row's position among the job's input files
    model, layer, pool   str scalars: what made the features (``zoo similar`` reuses them)
    model_ref       str: what ``zoo.load`` takes to rebuild the model ("" for an in-memory model)
    weights, preprocessing   str: sha256 digests of the network's tensors and of its preprocessing
    failed_paths, failed_reasons   str (F,): the files that were skipped and why
    failed_index    int64 (F,): their positions among the input files (-1: refused when scanning)
    job             str: JSON, the job's options, its producer digests and its files' identities

beside it ``feats.csv`` (``row,path``; ``pandas.read_csv``) and, when files were skipped,
``feats.failed.csv`` (``path,reason``). File names in the CSVs are escaped so that each record is one
line (``escape_path``: backslash, control characters, line separators and bytes that are not UTF-8
become Python-style escapes; ``unescape_path`` reverses it). The ``.npz`` holds the exact names.

Owns: ``FORMAT``, ``VERSION``, ``write_features``, ``load_features``, ``escape_path``,
``unescape_path``. Imports numpy only.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import json
import os
import unicodedata
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write
from ..errors import DataError

__all__ = ["FORMAT", "VERSION", "write_features", "load_features", "save_npz", "str_array", "escape_path",
           "unescape_path", "index_paths"]

FORMAT = "zoo-features"
VERSION = 2
_POOLS = {"avg": "avg", "max": "max", "none": None}
# Unicode categories that break a line or cannot be written as UTF-8: controls, lone surrogates (a
# file name's undecodable bytes, as Python's file-system codec gives them), line and paragraph separators.
_ESCAPED = frozenset({"Cc", "Cs", "Zl", "Zp"})


def escape_path(text: str) -> str:
    """``text`` on one printable line: ``\\`` -> ``\\\\``; newlines, tabs and other control
    characters, line separators and undecodable bytes -> Python escapes (``\\n``, ``\\x1b``,
    ``\\u2028``, ``\\udcff``). Other characters (accents, CJK, emoji) stay as they are."""
    # Hand-written: ``unicode_escape`` also escapes every non-ASCII letter, ``repr`` adds quotes whose
    # style depends on the name, and ``shlex.quote`` keeps newlines.
    return "".join(_escape_char(ch) for ch in text)


def _escape_char(ch: str) -> str:
    if ch == "\\":
        return "\\\\"
    return repr(ch)[1:-1] if unicodedata.category(ch) in _ESCAPED else ch


def unescape_path(text: str) -> str:
    """The name ``escape_path`` was given (undecodable bytes come back as surrogates, as
    ``os.fsdecode`` gives them)."""
    return codecs.decode(text.encode("latin-1", "backslashreplace"), "unicode_escape")


def save_npz(path: Path, **arrays: Any) -> None:
    """Write an uncompressed ``.npz`` atomically."""
    with atomic_write(path) as fh:
        np.savez(fh, **arrays)


def str_array(values: Sequence[str]) -> np.ndarray:
    """A numpy str array (never object dtype, so ``np.load`` needs no pickle)."""
    return np.array(list(values), dtype=str) if len(values) else np.zeros(0, dtype="<U1")


def index_paths(out: Path) -> tuple[Path, Path]:
    """The two CSVs beside a features file: ``<stem>.csv`` and ``<stem>.failed.csv``."""
    return out.with_suffix(".csv"), out.with_suffix(".failed.csv")


def write_features(out: Path, *, features: np.ndarray, paths: Sequence[str], index: np.ndarray,
                   failed: Sequence[tuple[int, str, str]], meta: dict[str, str], job: dict[str, Any]) -> None:
    """Write ``out`` (see the module docstring) and its CSVs; the failed list is removed when empty.

    Args:
        features, paths, index: the rows, their files and their positions among the inputs.
        failed: ``(position or -1, path, reason)`` of every skipped file.
        meta: ``model``, ``model_ref``, ``layer``, ``pool``, ``weights``, ``preprocessing``.
        job: the job's description (stored as JSON; what resuming compares).
    """
    save_npz(out, format=np.array(FORMAT), version=np.array(VERSION), features=features,
             paths=str_array(paths), index=index.astype(np.int64),
             failed_paths=str_array([p for _, p, _ in failed]), failed_reasons=str_array([r for _, _, r in failed]),
             failed_index=np.array([i for i, _, _ in failed], dtype=np.int64), job=np.array(json.dumps(job)),
             **{key: np.array(value) for key, value in meta.items()})
    index_path, failed_path = index_paths(out)
    _write_csv(index_path, ["row", "path"], [(i, escape_path(p)) for i, p in enumerate(paths)])
    if failed:
        _write_csv(failed_path, ["path", "reason"], [(escape_path(p), escape_path(r)) for _, p, r in failed])
    else:
        with contextlib.suppress(FileNotFoundError):
            failed_path.unlink()


def _write_csv(path: Path, header: list[str], rows: Sequence[tuple[Any, ...]]) -> None:
    with atomic_write(path, "w") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def load_features(path: str | os.PathLike) -> dict[str, Any]:
    """Read a features file written by ``extract_folder`` / ``zoo extract``.

    Returns:
        ``{"features": (N, D) float32, "paths": list[str], "model": str, "model_ref": str, "layer": str,
        "pool": str | None, "weights": str, "preprocessing": str, "failed": list[(path, reason)]}``
        (``weights`` and ``preprocessing`` are "" in files written before the zoo recorded them).

    Raises:
        DataError: the file is missing, damaged, or not a zoo features file.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            return _read(path, data)
    except FileNotFoundError as err:
        raise DataError(f"{path}: no such features file; make one with `zoo extract MODEL IMAGES --out {path}`."
                        ) from err
    except DataError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{path} cannot be read as a features file ({type(err).__name__}: {err}); make it "
                        "again with `zoo extract`.") from err


def _read(path: Path, data: Any) -> dict[str, Any]:
    if not hasattr(data, "files") or "features" not in data or "paths" not in data:
        raise DataError(f"{path} is not a zoo features file (no 'features'/'paths' arrays); make one with "
                        "`zoo extract`.")
    features, paths = data["features"], [str(p) for p in data["paths"]]
    if features.ndim != 2 or features.dtype.kind != "f" or len(features) != len(paths):
        raise DataError(f"{path} is damaged: its features are {features.dtype} {features.shape} for {len(paths)} "
                        "paths; make it again with `zoo extract`.")

    def text(key: str, default: str = "") -> str:
        return str(data[key]) if key in data else default

    pool = text("pool", "avg")
    if pool not in _POOLS:
        raise DataError(f"{path} is damaged: pool {pool!r} is not avg, max or none; make it again with "
                        "`zoo extract`.")
    failed = list(zip(map(str, data["failed_paths"]), map(str, data["failed_reasons"]))) \
        if "failed_paths" in data and "failed_reasons" in data else []
    return {"features": features.astype(np.float32, copy=False), "paths": paths, "model": text("model"),
            "model_ref": text("model_ref"), "layer": text("layer", "pool"), "pool": _POOLS[pool],
            "weights": text("weights"), "preprocessing": text("preprocessing"), "failed": failed}
