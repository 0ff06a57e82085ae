"""The cache as data: what is in it, whether it is intact, and removing entries from it.

Owns: ``cache_dir``, ``list_cached``, ``verify_cache`` and ``remove_cached``. Pure functions that
return records; ``zoo cache ls|verify|rm|dir`` prints them. The layout is ``zoo.fetch``'s:
``$ZOO_HOME/files/<entry.name>/<filename>`` with a ``<filename>.verified`` record beside each file,
``<filename>.partial`` for an interrupted download and ``<filename>.lock`` for the file lock.
Standard library and ``zoo.fetch`` only: no torch.
"""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ZooError
from zoo.fetch import (LOCK_SUFFIX, PARTIAL_SUFFIX, RECORD_SUFFIX, _actual, _hash_file, expected_digest, files_root,
                       read_record, write_record)
from zoo.registry import env
from zoo.registry.catalog import natural_key

__all__ = ["CachedFile", "VerifyResult", "cache_dir", "list_cached", "verify_cache", "remove_cached"]


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One file in the cache.

    Attributes:
        entry: the registry entry's name (the folder).
        filename: the file's name.
        path: where it is.
        size: bytes on disk.
        sha256: the digest recorded when it was verified, or None when there is no record.
        verified: a record exists and still matches the file's size and mtime.
        role: the entry's file role (``weights``, ``mean``; ``weights-converted`` for a conversion).
        source: where it came from, per the record.
        partial: an interrupted download (``.partial``), resumed by the next fetch.
    """

    entry: str
    filename: str
    path: Path
    size: int
    sha256: str | None
    verified: bool
    role: str | None = None
    source: str | None = None
    partial: bool = False

    def to_dict(self) -> dict:
        return {"entry": self.entry, "file": self.filename, "path": str(self.path), "size": self.size,
                "sha256": self.sha256, "verified": self.verified, "role": self.role, "source": self.source,
                "partial": self.partial}


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of re-hashing one cached file.

    ``status`` is ``ok``; ``corrupt`` (the bytes differ from the record or from the registry's
    checksum: re-download it); ``unrecorded`` (no record to compare with; nothing known to be wrong);
    or ``partial`` (an interrupted download). ``reason`` says what was compared.
    """

    file: CachedFile
    status: str
    reason: str
    actual_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "unrecorded", "partial")


def cache_dir() -> Path:
    """The cache root, ``$ZOO_HOME`` (files under ``files/``, Hub downloads under ``hf/``, pins in
    ``pins.json``)."""
    return env.zoo_home()


def _is_bookkeeping(name: str) -> bool:
    return (name.endswith((RECORD_SUFFIX, LOCK_SUFFIX)) or (name.startswith(".") and name.endswith(".tmp")))


def _matches(pattern: str | None, name: str) -> bool:
    if not pattern:
        return True
    pattern = pattern.lower()
    if not any(ch in pattern for ch in "*?["):
        return name == pattern or name.split(".", 1)[0] == pattern  # a name or a bare arch
    return fnmatch.fnmatchcase(name, pattern)


def list_cached(pattern: str | None = None) -> list[CachedFile]:
    """Every file in the cache whose entry matches ``pattern`` (fnmatch; a bare word matches the
    entry's name or its arch), sorted naturally.

    Example:
        >>> [f.filename for f in list_cached("bvlc_*")]        # doctest: +SKIP
        ['bvlc_alexnet.caffemodel']
    """
    root = files_root()
    if not root.is_dir():
        return []
    out: list[CachedFile] = []
    for folder in sorted(root.iterdir(), key=lambda p: natural_key(p.name)):
        if not folder.is_dir() or not _matches(pattern, folder.name):
            continue
        for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
            if not path.is_file() or _is_bookkeeping(path.name):
                continue
            st = path.stat()
            if path.name.endswith(PARTIAL_SUFFIX):
                out.append(CachedFile(folder.name, path.name, path, st.st_size, None, False, partial=True))
                continue
            record = read_record(path)
            verified = bool(record) and record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns
            out.append(CachedFile(folder.name, path.name, path, st.st_size, (record or {}).get("sha256"), verified,
                                  role=(record or {}).get("role"), source=(record or {}).get("source")))
    return out


def _registry_spec(cat, entry_name: str, filename: str):
    """The entry and file spec the registry has today for a cached file, or (None, None)."""
    if cat is None:
        return None, None
    try:
        entry = cat.get(entry_name)
    except ZooError:  # an entry since removed from a user registry: compare with the record only
        return None, None
    spec = next((f for f in entry.files if f.filename == filename), None)
    return entry, spec


def verify_cache(pattern: str | None = None, *, delete_bad: bool = False) -> list[VerifyResult]:
    """Re-hash every cached file (ignoring the fast-path records) and compare it with its record and
    with the registry's checksum.

    Args:
        pattern: only entries matching this (see ``list_cached``).
        delete_bad: delete corrupt files (and their records) so the next fetch downloads them again.

    Returns:
        One result per file; ``[r for r in results if not r.ok]`` are the bad ones.

    Example:
        >>> bad = [r for r in verify_cache() if not r.ok]       # doctest: +SKIP
    """
    from zoo.registry import catalog

    try:
        cat = catalog()  # read once, not once per file
    except ZooError:  # a broken user registry: compare with the records only
        cat = None
    results: list[VerifyResult] = []
    for item in list_cached(pattern):
        if item.partial:
            results.append(VerifyResult(item, "partial", "an interrupted download; the next fetch resumes it"))
            continue
        entry, spec = _registry_spec(cat, item.entry, item.filename)
        algorithm = None
        if spec is not None and spec.checksum is not None:
            algorithm, expected, is_prefix = expected_digest(entry, spec)
        digests = _hash_file(item.path, algorithm == "sha1")
        sha256 = digests.sha256
        actual = _actual(algorithm, digests, item.path) if algorithm is not None else sha256
        record = read_record(item.path)
        problems = []
        if record and record.get("sha256") and record["sha256"] != sha256:
            problems.append(f"sha256 {sha256} differs from the recorded {record['sha256']}")
        if algorithm is not None:
            good = actual.startswith(expected) if is_prefix else actual == expected
            if not good and spec.checksum.trust != "suspect":
                problems.append(f"{algorithm} {actual} differs from the registry's {expected}")
        if problems:
            if delete_bad:
                item.path.unlink(missing_ok=True)
                item.path.with_name(item.path.name + RECORD_SUFFIX).unlink(missing_ok=True)
            results.append(VerifyResult(item, "corrupt", "; ".join(problems), sha256))
        elif record is None and algorithm is None:
            results.append(VerifyResult(item, "unrecorded", "no record and no registry checksum to compare with",
                                        sha256))
        else:
            if record is None or not item.verified:
                # Intact: refresh the record so loads take the fast path again.
                write_record(item.path, sha256=sha256, algorithm=algorithm or "sha256", digest=actual,
                             source=(record or {}).get("source", "the cache"), entry=item.entry,
                             role=(record or {}).get("role") or (spec.role if spec else "unknown"))
            what = "the record" if record else ""
            if algorithm is not None:
                what = f"{what} and the registry's {algorithm}" if what else f"the registry's {algorithm}"
            results.append(VerifyResult(item, "ok", f"matches {what}", sha256))
    return results


def remove_cached(pattern: str, *, dry_run: bool = False) -> list[CachedFile]:
    """Delete the cached files of every entry matching ``pattern`` (records, partials and locks too).

    Pins of full sha256 values in ``pins.json`` are kept: they are the trust anchor for the next
    download. Hub downloads under ``$ZOO_HOME/hf`` are left to huggingface_hub's own tools.

    Args:
        pattern: fnmatch pattern over entry names (``"*"`` for everything; a bare word is one name or arch).
        dry_run: only report what would be removed.

    Returns:
        The files removed (or that would be).

    Example:
        >>> removed = remove_cached("resnet*")               # doctest: +SKIP
    """
    files = list_cached(pattern)
    if dry_run:
        return files
    folders = {f.path.parent for f in files}
    root = files_root()
    if root.is_dir():  # also folders holding only bookkeeping (a lock from an aborted fetch)
        folders |= {p for p in root.iterdir() if p.is_dir() and _matches(pattern, p.name)}
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=False)
    return files
