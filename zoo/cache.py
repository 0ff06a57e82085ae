"""The cache as data: what is in it, whether it is intact, and removing entries from it.

Owns: ``cache_dir``, ``list_cached``, ``verify_cache`` and ``remove_cached``. Pure functions that
return records; ``zoo cache ls|verify|rm|dir`` prints them. They cover both homes of a file (the
layout is ``zoo.store``'s): ``$ZOO_HOME/files/<entry>/<filename>`` for what the zoo fetched itself,
and huggingface_hub's cache for Hub files the zoo verified there (through its records), which are
removed with huggingface_hub's own delete strategy. No torch.
"""

from __future__ import annotations

import fnmatch
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo import hub, store
from zoo.errors import ZooError
from zoo.registry.catalog import natural_key

__all__ = ["CachedFile", "VerifyResult", "cache_dir", "list_cached", "verify_cache", "remove_cached"]


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One file in the cache.

    Attributes:
        entry: the registry entry's name.
        filename: the file's name.
        path: where it is (in ``$ZOO_HOME/files``, or a snapshot path in the Hub's cache).
        size: bytes on disk.
        sha256: the digest recorded when it was verified, or None when there is no record.
        verified: a record exists and still matches the file's size and mtime.
        role: the entry's file role (``weights``, ``mean``; ``weights-converted`` for a conversion).
        source: where it came from, per the record.
        partial: an interrupted download (``.partial``), resumed by the next fetch.
        hub: the file lives in huggingface_hub's cache (``path`` is its snapshot path).
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
    hub: bool = False

    def to_dict(self) -> dict:
        return {"entry": self.entry, "file": self.filename, "path": str(self.path), "size": self.size,
                "sha256": self.sha256, "verified": self.verified, "role": self.role, "source": self.source,
                "partial": self.partial, "location": "hub" if self.hub else "zoo"}


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
    """The cache root, ``$ZOO_HOME`` (layout in ``zoo.store``; Hub files in ``zoo.store.hub_cache()``)."""
    return store.home()


def _matches(pattern: str | None, name: str) -> bool:
    if not pattern:
        return True
    pattern = pattern.lower()
    if not any(ch in pattern for ch in "*?["):
        return name == pattern or name.split(".", 1)[0] == pattern  # a name or a bare arch
    return fnmatch.fnmatchcase(name, pattern)


def _zoo_files(folder: Path) -> list[CachedFile]:
    out = []
    for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if not path.is_file() or store.is_bookkeeping(path.name):
            continue
        st = path.stat()
        if path.name.endswith(store.PARTIAL_SUFFIX):
            out.append(CachedFile(folder.name, path.name, path, st.st_size, None, False, partial=True))
            continue
        record = store.read_record(path) or {}
        out.append(CachedFile(folder.name, path.name, path, st.st_size, record.get("sha256"),
                              store.record_is_fresh(path, record), role=record.get("role"),
                              source=record.get("source")))
    return out


def _hub_files(pattern: str | None) -> list[CachedFile]:
    out = []
    for entry_name, _, record in store.iter_hub_records():
        path = Path(record["path"])
        if not _matches(pattern, entry_name) or not path.is_file():
            continue  # removed behind our back (`hf cache rm`): nothing to list
        out.append(CachedFile(entry_name, path.name, path, path.stat().st_size, record.get("sha256"),
                              store.record_is_fresh(path, record), role=record.get("role"),
                              source=record.get("source"), hub=True))
    return out


def list_cached(pattern: str | None = None) -> list[CachedFile]:
    """Every cached file whose entry matches ``pattern`` (fnmatch; a bare word matches the entry's
    name or its arch), sorted naturally by entry: the zoo's own files and its Hub files.

    Example:
        >>> [f.filename for f in list_cached("bvlc_*")]        # doctest: +SKIP
        ['bvlc_alexnet.caffemodel']
    """
    out: list[CachedFile] = []
    root = store.files_root()
    if root.is_dir():
        for folder in root.iterdir():
            if folder.is_dir() and _matches(pattern, folder.name):
                out += _zoo_files(folder)
    out += _hub_files(pattern)
    return sorted(out, key=lambda f: (natural_key(f.entry), f.hub, natural_key(f.filename)))


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


def _record_of(item: CachedFile) -> dict[str, Any] | None:
    if item.hub:
        return store.read_record(item.path, record_file=store.hub_record_path(item.entry, item.filename))
    return store.read_record(item.path)


def _check(item: CachedFile, entry, spec, record) -> tuple[list[str], str | None, str, str]:
    """Re-hash one file: (problems, algorithm compared, its digest, sha256)."""
    checksum = spec.checksum if spec is not None else None
    if checksum is None and item.hub:  # the Hub names the blob by its LFS sha256
        checksum = hub.lfs_checksum(item.path.resolve())
    expected = store.expected_digest(entry, spec, checksum) if checksum is not None else None
    digests = store.hash_file(item.path, expected is not None and expected.algorithm == "sha1")
    actual = store.actual_digest(expected.algorithm, digests, item.path) if expected else digests.sha256
    problems = []
    if record and record.get("sha256") and record["sha256"] != digests.sha256:
        problems.append(f"sha256 {digests.sha256} differs from the recorded {record['sha256']}")
    if expected is not None and not store.digest_matches(actual, expected) and checksum.trust != "suspect":
        problems.append(f"{expected.algorithm} {actual} differs from the registry's {expected.value}")
    return problems, expected.algorithm if expected else None, actual, digests.sha256


def _verify_one(item: CachedFile, cat, delete_bad: bool) -> VerifyResult:
    if item.partial:
        return VerifyResult(item, "partial", "an interrupted download; the next fetch resumes it")
    entry, spec = _registry_spec(cat, item.entry, item.filename)
    record = _record_of(item)
    problems, algorithm, actual, sha256 = _check(item, entry, spec, record)
    if problems:
        if delete_bad:
            _delete([item])
        return VerifyResult(item, "corrupt", "; ".join(problems), sha256)
    if record is None and algorithm is None:
        return VerifyResult(item, "unrecorded", "no record and no registry checksum to compare with", sha256)
    if record is None or not item.verified:
        # Intact: refresh the record so loads take the fast path again.
        store.write_record(item.path, sha256=sha256, algorithm=algorithm or "sha256", digest=actual,
                           source=(record or {}).get("source", "the cache"), entry=item.entry,
                           role=(record or {}).get("role") or (spec.role if spec else "unknown"),
                           extra={k: v for k, v in (record or {}).items() if k in ("path", "blob", "repo", "commit")},
                           record_file=store.hub_record_path(item.entry, item.filename) if item.hub else None)
    what = "the record" if record else ""
    if algorithm is not None:
        what = f"{what} and the registry's {algorithm}" if what else f"the registry's {algorithm}"
    return VerifyResult(item, "ok", f"matches {what}", sha256)


def verify_cache(pattern: str | None = None, *, delete_bad: bool = False) -> list[VerifyResult]:
    """Re-hash every cached file (ignoring the fast-path records) and compare it with its record and
    with the registry's checksum (for a Hub file without one, the LFS sha256 its blob is named by).

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
    return [_verify_one(item, cat, delete_bad) for item in list_cached(pattern)]


def _delete(files: list[CachedFile]) -> None:
    hub.remove([f.path for f in files if f.hub])
    for f in files:
        if f.hub:
            store.hub_record_path(f.entry, f.filename).unlink(missing_ok=True)
        else:
            f.path.unlink(missing_ok=True)
            store.record_path(f.path).unlink(missing_ok=True)


def remove_cached(pattern: str, *, dry_run: bool = False) -> list[CachedFile]:
    """Delete the cached files of every entry matching ``pattern`` (records, partials and locks too).

    Hub files go through huggingface_hub's delete strategy: a blob another snapshot still uses is
    kept. Pins of full sha256 values in ``pins.json`` are kept: they are the trust anchor for the next
    download.

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
    _delete([f for f in files if f.hub])
    folders = {f.path.parent for f in files if not f.hub}
    for root in (store.files_root(), store.hub_records_root(), store.locks_root()):
        if root.is_dir():  # also folders holding only bookkeeping (records of files removed elsewhere)
            folders |= {p for p in root.iterdir() if p.is_dir() and _matches(pattern, p.name)}
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=False)
    return files
