"""The cache's one home: where every file under ``$ZOO_HOME`` lives, the ``.verified`` records, the
pins, and the checksum rule.

Owns:

- The layout. Every path under ``$ZOO_HOME`` is built here and nowhere else::

      files/<entry>/<filename>            a verified file (``<filename>.verified`` beside it)
      files/<entry>/<filename>.partial    an interrupted download, resumed by the next fetch
      files/<entry>/<stem>.safetensors    a ``.pth`` converted once (``converted_path``)
      records/hub/<entry>/<filename>.verified   a Hub file verified where huggingface_hub keeps it
      locks/<entry>/<filename>.lock       the lock two processes fetching one file share
      pins.json                           full sha256 values pinned for prefix checksums
      features/<model key>/<files key>.safetensors   cached features (``zoo.finetune``)
      datasets/                           data sets the zoo installs (Fashion-MNIST)
      runs/<entry>/                       registered runs' model, record and card (``zoo register``)

  Hub files themselves live once, in huggingface_hub's own cache (``hub_cache``).
- Records: facts written after a file was hashed (size and mtime pin the bytes), so a later load
  trusts the file without hashing it again; ``zoo cache verify`` re-hashes regardless.
- Pins: the full sha256 recorded the first time a prefix-only checksum (torchvision's) verified.
- The checksum rule: what a file must hash to (``expected_digest``), the one comparison
  (``digest_matches``: a prefix compares as a prefix, anything else exactly), ``check`` that applies
  it to a download, and ``lookup``, which answers "is a verified copy already here?".

Standard library, ``filelock`` and the registry only: no torch, no network, no huggingface_hub import.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

from filelock import FileLock

from zoo._io import CHUNK, file_digest, git_blob_sha1, write_json
from zoo.errors import ChecksumMismatchError, DownloadError, RegistryError
from zoo.registry import env
from zoo.registry.schema import Checksum, Entry, FileSpec

__all__ = [
    "RECORD_SUFFIX", "PARTIAL_SUFFIX", "LOCK_SUFFIX", "ChecksumWarning", "Digests", "Hasher", "Expected",
    "Verified", "home", "files_root", "entry_folder", "file_path", "partial_path", "record_path",
    "hub_records_root", "hub_record_path", "locks_root", "lock_path", "converted_path", "pins_path", "features_path",
    "datasets_root", "registered_run_path", "hub_cache", "is_bookkeeping", "spec_for", "read_record", "write_record",
    "record_is_fresh", "record_vouches", "iter_hub_records", "pinned_sha256", "pin", "hash_file",
    "actual_digest", "expected_digest", "digest_matches", "check", "lookup", "current_conversion", "find",
]

RECORD_SUFFIX = ".verified"
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"


class ChecksumWarning(UserWarning):
    """A file did not match a checksum the registry marks as ``suspect`` (kept, but reported), a
    tampered source was skipped in favour of a good one, or a damaged local copy was replaced."""


# ----------------------------------------------------------------------------------------------
# The layout


def home() -> Path:
    """The cache root, ``$ZOO_HOME``."""
    return env.zoo_home()


def files_root() -> Path:
    """The folder that holds every file the zoo fetched itself: ``$ZOO_HOME/files``."""
    return home() / "files"


def entry_folder(entry_name: str) -> Path:
    """``$ZOO_HOME/files/<entry>``: the files of one entry."""
    return files_root() / entry_name


def file_path(entry_name: str, filename: str) -> Path:
    """Where a fetched file of an entry lives (whether or not it is there yet)."""
    return entry_folder(entry_name) / filename


def partial_path(path: Path) -> Path:
    """The interrupted download of ``path``: ``<name>.partial`` beside it."""
    return path.with_name(path.name + PARTIAL_SUFFIX)


def record_path(path: Path) -> Path:
    """The ``.verified`` record of a file in ``files/``, beside it."""
    return path.with_name(path.name + RECORD_SUFFIX)


def hub_records_root() -> Path:
    """``$ZOO_HOME/records/hub``: records of Hub files verified in huggingface_hub's cache."""
    return home() / "records" / "hub"


def hub_record_path(entry_name: str, filename: str) -> Path:
    """The record of an entry's file verified in the Hub's cache (the file is not ours to annotate)."""
    return hub_records_root() / entry_name / (filename + RECORD_SUFFIX)


def locks_root() -> Path:
    """``$ZOO_HOME/locks``: one folder of lock files per entry."""
    return home() / "locks"


def lock_path(entry_name: str, filename: str) -> Path:
    """The lock every process fetching or converting this file takes: ``$ZOO_HOME/locks/<entry>/<file>.lock``."""
    return locks_root() / entry_name / (filename + LOCK_SUFFIX)


def converted_path(entry_name: str, filename: str) -> Path:
    """Where the safetensors conversion of an entry's ``.pth`` lives: ``files/<entry>/<stem>.safetensors``."""
    return entry_folder(entry_name) / (Path(filename).stem + ".safetensors")


def pins_path() -> Path:
    """``$ZOO_HOME/pins.json``."""
    return home() / "pins.json"


def features_path(model_key: str, files_key: str) -> Path:
    """``$ZOO_HOME/features/<model key>/<files key>.safetensors`` (keys shortened to 32 hex digits)."""
    return home() / "features" / model_key[:32] / f"{files_key[:32]}.safetensors"


def datasets_root() -> Path:
    """``$ZOO_HOME/datasets``: data sets the zoo installs."""
    return home() / "datasets"


def registered_run_path(entry_name: str) -> Path:
    """``$ZOO_HOME/runs/<entry>``: the copy of a run that ``zoo register`` made that entry point at."""
    return home() / "runs" / entry_name


def hub_cache() -> Path:
    """huggingface_hub's cache (``HF_HUB_CACHE`` / ``HF_HOME``), shared with every Hub user here."""
    return env.hf_hub_cache()


def is_bookkeeping(name: str) -> bool:
    """True for a record, a lock or an atomic write's temporary file: not a cached file itself."""
    return name.endswith((RECORD_SUFFIX, LOCK_SUFFIX)) or (name.startswith(".") and name.endswith(".tmp"))


def spec_for(entry: Entry, role: str) -> FileSpec:
    """The entry's file with that role.

    Raises:
        RegistryError: the entry has no such file (the message lists its roles).
    """
    try:
        return entry.file(role)
    except KeyError:
        roles = ", ".join(f.role for f in entry.files) or "none"
        raise RegistryError(f"has no file with role {role!r} (its roles: {roles})",
                            path=entry.origin_file or None, entry=entry.name, field="files") from None


# ----------------------------------------------------------------------------------------------
# Records


def read_record(path: Path, *, record_file: Path | None = None) -> dict[str, Any] | None:
    """The record of a cached file (``record_file``, else the ``.verified`` beside ``path``), or None
    when absent or unreadable."""
    try:
        data = json.loads((record_file or record_path(path)).read_text("utf-8"))
    except (OSError, ValueError, RecursionError):  # unreadable is the same as absent: hash again
        return None
    return data if isinstance(data, dict) else None


def write_record(path: Path, *, sha256: str, algorithm: str, digest: str, source: str, entry: str, role: str,
                 extra: dict[str, Any] | None = None, record_file: Path | None = None) -> dict[str, Any]:
    """Record that ``path`` was hashed: its size and mtime pin the bytes that were hashed.

    Args:
        path: the verified file (a symlink is followed: the record describes the bytes).
        sha256: its sha256; ``algorithm`` and ``digest``: what the registry's checksum compared.
        source: where it came from; ``entry``, ``role``: what it is.
        extra: more facts (a suspect mismatch, the Hub repo and commit, a conversion's origin).
        record_file: where to write the record (default: ``<path>.verified`` beside it).

    Returns:
        The record.
    """
    st = path.stat()
    record = {
        "entry": entry, "role": role, "file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
        "sha256": sha256, "algorithm": algorithm, "digest": digest, "source": source,
        "verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        record.update(extra)
    write_json(record_file or record_path(path), record)
    return record


def record_is_fresh(path: Path, record: dict[str, Any] | None) -> bool:
    """Does ``record`` still describe ``path`` (same size and mtime as when it was hashed)?"""
    if not record:
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    return record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns


def record_vouches(entry: Entry, spec: FileSpec, record: dict[str, Any] | None) -> bool:
    """Does a record vouch for the checksum the registry asks for today?"""
    if not record or not record.get("sha256"):
        return False
    checksum = spec.checksum
    if checksum is None:  # verified against the Hub's LFS sha256 (or git sha1) when it was fetched
        return record.get("algorithm") in ("sha256", "git-blob-sha1")
    expected = expected_digest(entry, spec, checksum)
    if record.get("suspect_mismatch"):
        return record["suspect_mismatch"].get("expected") == expected.value
    if expected.algorithm == "sha256":
        return digest_matches(record["sha256"], expected)
    return record.get("algorithm") == expected.algorithm and digest_matches(str(record.get("digest")), expected)


def iter_hub_records() -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """``(entry name, record file, record)`` for every Hub file the zoo has verified."""
    root = hub_records_root()
    if not root.is_dir():
        return
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for record_file in sorted(folder.glob("*" + RECORD_SUFFIX)):
            record = read_record(record_file, record_file=record_file)
            if record and isinstance(record.get("path"), str):
                yield folder.name, record_file, record


# ----------------------------------------------------------------------------------------------
# Pins: full sha256 values recorded the first time a prefix-only checksum was verified


def _read_pins() -> dict[str, Any]:
    try:
        data = json.loads(pins_path().read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, RecursionError) as err:
        # A damaged pin file would silently weaken verification; make the user look at it.
        raise DownloadError(f"The pin file {pins_path()} cannot be read ({err}); it records the full "
                            f"sha256 of prefix-checksummed files. Fix or delete it and re-download.") from err
    return data if isinstance(data, dict) else {}


def pinned_sha256(entry: Entry, spec: FileSpec) -> str | None:
    """The full sha256 pinned for a prefix-checksummed file, or None before its first download."""
    if spec.checksum is None or not spec.checksum.prefix:
        return None
    pinned = _read_pins().get(f"{entry.name}/{spec.filename}")
    if isinstance(pinned, dict) and str(pinned.get("sha256", "")).startswith(spec.checksum.value):
        return pinned["sha256"]
    return None  # no pin, or a pin for an older prefix: the registry changed, so re-pin


def pin(entry: Entry, spec: FileSpec, sha256: str, source: str) -> None:
    """Pin the full sha256 of a file whose registry checksum is a prefix; later downloads must match it."""
    path = pins_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + LOCK_SUFFIX):
        pins = _read_pins()
        pins[f"{entry.name}/{spec.filename}"] = {
            "prefix": spec.checksum.value, "sha256": sha256, "source": source,
            "pinned_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(path, pins)


# ----------------------------------------------------------------------------------------------
# The checksum rule


@dataclass(frozen=True, slots=True)
class Digests:
    """The digests computed while a file streamed: always sha256, sha1 when the registry asks for it."""

    sha256: str
    sha1: str | None = None


class Hasher:
    """sha256 (and sha1 when wanted) over bytes fed in order."""

    def __init__(self, want_sha1: bool):
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1() if want_sha1 else None

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        if self.sha1:
            self.sha1.update(data)

    def digests(self) -> Digests:
        return Digests(self.sha256.hexdigest(), self.sha1.hexdigest() if self.sha1 else None)


def hash_file(path: Path, want_sha1: bool = False) -> Digests:
    """The digests of a whole file, streamed."""
    hasher = Hasher(want_sha1)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return hasher.digests()


def actual_digest(algorithm: str, digests: Digests, path: Path) -> str:
    """The file's digest in ``algorithm``, from ``digests`` when they hold it."""
    if algorithm == "sha256":
        return digests.sha256
    if algorithm == "sha1" and digests.sha1:
        return digests.sha1
    if algorithm == "git-blob-sha1":
        return git_blob_sha1(path)  # needs the size up front: one extra read, only for these files
    return file_digest(path, algorithm)


class Expected(NamedTuple):
    """What a file must hash to; ``is_prefix`` only for a prefix not pinned yet."""

    algorithm: str
    value: str
    is_prefix: bool


def expected_digest(entry: Entry, spec: FileSpec, checksum: Checksum | None = None) -> Expected:
    """What a file must hash to, after applying a pin (``checksum`` defaults to the file's own).

    Raises:
        ValueError: neither ``checksum`` nor the file gives one.
    """
    checksum = checksum or spec.checksum
    if checksum is None:
        raise ValueError(f"{entry.name}/{spec.filename} has no checksum in the registry")
    if checksum.prefix:
        pinned = pinned_sha256(entry, spec)
        if pinned:
            return Expected("sha256", pinned, False)
        return Expected("sha256", checksum.value, True)
    return Expected(checksum.algorithm, checksum.value, False)


def digest_matches(actual: str, expected: Expected) -> bool:
    """The one comparison: a prefix (not pinned yet) compares as a prefix, everything else exactly."""
    return actual.startswith(expected.value) if expected.is_prefix else actual == expected.value


def check(entry: Entry, spec: FileSpec, path: Path, digests: Digests, source: str,
          checksum: Checksum | None) -> dict[str, Any]:
    """Check a download (or a cached file) at ``path`` against ``checksum``; pin a verified prefix.

    Returns:
        ``{"algorithm", "digest", "extra"}``: the facts for its record.

    Raises:
        ChecksumMismatchError: the bytes differ (the caller deletes them), unless the checksum is
            marked ``suspect``, in which case a ChecksumWarning is issued and the file kept.
        ValueError: there is no checksum to compare with.
    """
    if checksum is None:
        raise ValueError(f"{entry.name}/{spec.filename}: the entry gives no checksum and {source} offered none")
    expected = expected_digest(entry, spec, checksum)
    actual = actual_digest(expected.algorithm, digests, path)
    extra: dict[str, Any] = {}
    if digest_matches(actual, expected):
        if expected.is_prefix:
            pin(entry, spec, digests.sha256, source)
        return {"algorithm": expected.algorithm, "digest": actual, "extra": extra}
    shown = f"{expected.algorithm} {expected.value}{'...' if expected.is_prefix else ''}"
    if checksum.trust == "suspect":
        warnings.warn(
            f"{entry.name}/{spec.filename} from {source} does not match the registry's {shown}, which the "
            f"registry marks as suspect ({checksum.note or 'no note'}); computed {expected.algorithm} {actual} "
            f"(sha256 {digests.sha256}). The file is kept: check it against another source before relying "
            f"on it.", ChecksumWarning, stacklevel=3)
        extra["suspect_mismatch"] = {"expected": expected.value, "actual": actual}
        return {"algorithm": expected.algorithm, "digest": actual, "extra": extra}
    raise ChecksumMismatchError(
        f"Checksum mismatch for {entry.name}/{spec.filename} from {source}: expected {shown}, got {actual}. "
        f"The download was deleted; nothing entered the cache. Retry with `zoo download {entry.name} "
        f"--force`; if it persists the source is corrupt or tampered with.",
        path=str(path), expected=expected.value, actual=actual, algorithm=expected.algorithm)


# ----------------------------------------------------------------------------------------------
# Is a verified copy already here?


@dataclass(frozen=True, slots=True)
class Verified:
    """A verified file: where it is, its sha256, and where it came from."""

    path: Path
    sha256: str
    source: str


def lookup(entry: Entry, spec: FileSpec) -> Verified | None:
    """The verified copy of one file already on this machine, or None.

    Looks in ``files/`` and then in the Hub's cache (through the zoo's record of it). A current
    record (same size and mtime, the checksum the registry asks for today) is trusted without
    hashing. A file in ``files/`` whose record is missing or stale is hashed again: kept (and its
    record refreshed) when it verifies, deleted with a ChecksumWarning when it does not.
    """
    dest = file_path(entry.name, spec.filename)
    if dest.is_file():
        record = read_record(dest)
        if record_is_fresh(dest, record) and record_vouches(entry, spec, record):
            _warn_if_suspect(entry, dest, record)
            return Verified(dest, record["sha256"], record.get("source", "the cache"))
        if spec.checksum is not None:  # without one it was checked against the Hub's etag: fetch again
            found = _rehash(entry, spec, dest, record)
            if found:
                return found
    record = read_record(dest, record_file=hub_record_path(entry.name, spec.filename))
    if record and _hub_record_current(spec, record) and record_vouches(entry, spec, record):
        path = Path(record["path"])
        if record_is_fresh(path, record):
            _warn_if_suspect(entry, path, record)
            return Verified(path, record["sha256"], record.get("source", "the Hub cache"))
    return None


def current_conversion(entry_name: str, filename: str, source_sha256: str) -> Path | None:
    """The safetensors conversion of an entry's ``.pth`` when its record says it was converted from
    the bytes with ``source_sha256`` and the file has not changed since; else None (convert again)."""
    target = converted_path(entry_name, filename)
    record = read_record(target)
    if record_is_fresh(target, record) and record.get("converted_from_sha256") == source_sha256:
        return target
    return None


def find(entry_name: str, filename: str) -> Path | None:
    """Where a file of an entry is on this machine (``files/`` or the Hub's cache), without hashing."""
    dest = file_path(entry_name, filename)
    if dest.is_file():
        return dest
    record = read_record(dest, record_file=hub_record_path(entry_name, filename))
    path = Path(record["path"]) if record and isinstance(record.get("path"), str) else None
    return path if path is not None and path.is_file() else None


def _hub_record_current(spec: FileSpec, record: dict[str, Any]) -> bool:
    # Another HF_HUB_CACHE, or a registry that now names another repo or revision, means another file.
    path = record.get("path")
    return (isinstance(path, str) and Path(path).is_relative_to(hub_cache())
            and record.get("source") in {s.describe() for s in spec.sources if s.hf_repo})


def _warn_if_suspect(entry: Entry, path: Path, record: dict[str, Any]) -> None:
    if record.get("suspect_mismatch"):
        warnings.warn(f"{path} does not match the registry's suspect checksum "
                      f"(computed {record['suspect_mismatch']['actual']}); see `zoo info {entry.name}`.",
                      ChecksumWarning, stacklevel=4)


def _rehash(entry: Entry, spec: FileSpec, dest: Path, record: dict[str, Any] | None) -> Verified | None:
    digests = hash_file(dest, spec.checksum.algorithm == "sha1")
    try:
        facts = check(entry, spec, dest, digests, "the cache", spec.checksum)
    except ChecksumMismatchError as err:
        warnings.warn(f"The cached {dest} no longer matches its checksum ({err.actual} != {err.expected}); "
                      f"it was deleted and will be fetched again.", ChecksumWarning, stacklevel=4)
        dest.unlink(missing_ok=True)
        record_path(dest).unlink(missing_ok=True)
        return None
    source = (record or {}).get("source", "the cache")
    try:
        write_record(dest, sha256=digests.sha256, algorithm=facts["algorithm"], digest=facts["digest"],
                     source=source, entry=entry.name, role=spec.role, extra=facts["extra"])
    except OSError:
        pass  # a read-only cache still serves verified files; the next load hashes again
    return Verified(dest, digests.sha256, source)
