"""Verified fetching: every byte is checked against its entry's checksum before it is used.

Owns: ``fetch_verified`` / ``fetch_file`` (one file of an entry, from the cache or its sources) and
``download`` (every file of an entry). The order of work for one file:

1. ``zoo.store.lookup``: a verified copy already here (``$ZOO_HOME/files`` or the Hub's cache) is
   returned at once.
2. Under a file lock, the candidates of ``zoo.transports`` are tried in order (``ZOO_MIRROR``, then
   the entry's sources); each delivers bytes into ``<filename>.partial`` (or, for the Hub, a file in
   huggingface_hub's cache), which ``zoo.store.check`` compares with the checksum.
3. The first good delivery is renamed into place and recorded; a bad one is deleted and the next
   candidate tried. If none delivers, one error lists every candidate and why it failed.

``ZOO_OFFLINE=1`` / ``HF_HUB_OFFLINE=1`` skip every candidate that needs the network and make the
Hub's calls offline. Where files live is ``zoo.store``'s; ``zoo.mirrors`` fills mirror folders.

Must not import torch (``zoo download`` and ``zoo mirror`` stay light) nor ``zoo.finetune`` / ``zoo.cli``.
"""

from __future__ import annotations

import errno
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from zoo import hub, store, transports
from zoo.errors import (ChecksumMismatchError, DownloadError, OfflineError, StorageError, ZooError,
                        describe_os_error)
from zoo.registry import env
from zoo.registry.schema import Entry, FileSpec
from zoo.store import ChecksumWarning, Verified
from zoo.transports import Candidate, Delivery, Job, SourceFailed

__all__ = ["fetch_verified", "fetch_file", "download", "entry_for", "Verified", "ChecksumWarning"]

_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def entry_for(name_or_entry: str | Entry) -> Entry:
    """The entry for a registry name, alias, bare arch or library name (or the entry itself).

    Raises:
        UnknownModelError: no such entry (with close matches).
    """
    if isinstance(name_or_entry, Entry):
        return name_or_entry
    from zoo.external import resolve_entry  # curated first; timm/torchvision imported only on a miss

    return resolve_entry(name_or_entry)


def fetch_verified(entry: Entry, role: str = "weights", *, force: bool = False, progress: bool = True) -> Verified:
    """The verified copy of one file of ``entry`` (path, sha256, source), fetching it if needed.

    A file lives at ``$ZOO_HOME/files/<entry.name>/<filename>``, or, when it comes from the Hugging
    Face Hub, once in huggingface_hub's own cache (``HF_HUB_CACHE``), where a copy the user already
    has is reused. A file whose record is current is returned without hashing. Otherwise, under a
    file lock, the sources are tried in order: ``ZOO_MIRROR``, then the entry's. Bytes stream into
    ``<filename>.partial`` while being hashed (at most the size the entry declares); the checksum is
    compared, then the partial is renamed into place. A sha256 *prefix* (torchvision publishes 8 hex
    digits) is compared as a prefix and the full sha256 pinned in ``$ZOO_HOME/pins.json``.

    A source whose bytes do not match is not the end: they are deleted and the next source tried,
    because a tampered or stale mirror must not block the origin (a ChecksumWarning names it when
    a later one succeeds). A resumed download that does not match is fetched once more from the
    start before the source is blamed: the partial may have been damaged on this machine.

    Args:
        entry: the registry entry (``zoo.registry.catalog().get(name)``).
        role: which of its files (``"weights"``, ``"mean"``, ``"deploy"``...).
        force: fetch again even when cached (a partial download is discarded); the cached copy is
            replaced only once the new download has verified.
        progress: show a tqdm progress bar on stderr.

    Returns:
        The verified file.

    Raises:
        ChecksumMismatchError: every source that answered delivered wrong bytes (nothing was kept).
        OfflineError: offline mode is on and no offline source has the file.
        DownloadError: every source failed; ``attempts`` lists (source, reason).
        StorageError: this machine could not write the file (full disk, read-only, permission).
        RegistryError: the entry has no file with that role.

    Example:
        >>> from zoo.registry import get_entry
        >>> fetch_verified(get_entry("resnet18")).sha256          # doctest: +SKIP
    """
    spec = store.spec_for(entry, role)
    if not force and (found := store.lookup(entry, spec)):
        return found
    lock = store.lock_path(entry.name, spec.filename)
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError.from_os_error(err, lock.parent, doing="creating the cache's lock folder") from err
    dest = store.file_path(entry.name, spec.filename)
    with FileLock(str(lock)):
        if force:
            # Only the partial goes: the cached copy stays usable until a new download verifies
            # and replaces it (os.replace), so a failed --force never leaves the user with nothing.
            store.partial_path(dest).unlink(missing_ok=True)
        elif found := store.lookup(entry, spec):  # another process may have fetched it while we waited
            return found
        return _fetch_locked(entry, spec, dest, progress, force)


def fetch_file(entry: Entry, role: str = "weights", *, force: bool = False, progress: bool = True) -> Path:
    """The path of the verified copy of one file of ``entry``; see ``fetch_verified``.

    Example:
        >>> from zoo.registry import get_entry
        >>> path = fetch_file(get_entry("resnet18"))          # doctest: +SKIP
    """
    return fetch_verified(entry, role, force=force, progress=progress).path


def download(name_or_entry: str | Entry, *, force: bool = False, progress: bool = True) -> dict[str, Path]:
    """Fetch and verify every file of an entry.

    Args:
        name_or_entry: a registry name, alias or bare arch, or an ``Entry``.
        force: fetch again even when cached.
        progress: show progress bars.

    Returns:
        ``{role: path}`` for each of the entry's files (empty for an entry without files).

    Raises:
        UnknownModelError: no such entry (with close matches).
        ChecksumMismatchError, OfflineError, DownloadError, StorageError: see ``fetch_verified``.

    Example:
        >>> paths = download("bvlc_googlenet")     # doctest: +SKIP
        >>> paths["weights"].name                  # doctest: +SKIP
        'bvlc_googlenet.caffemodel'
    """
    entry = entry_for(name_or_entry)
    return {spec.role: fetch_file(entry, spec.role, force=force, progress=progress) for spec in entry.files}


# ----------------------------------------------------------------------------------------------
# Trying the candidates


@dataclass
class _Report:
    """What each candidate did, for the one error raised when none delivered."""

    attempts: list[tuple[str, str]] = field(default_factory=list)
    mismatches: list[tuple[str, ChecksumMismatchError]] = field(default_factory=list)
    skipped_offline: list[str] = field(default_factory=list)


def _fetch_locked(entry: Entry, spec: FileSpec, dest: Path, progress: bool, force: bool) -> Verified:
    offline = env.offline()
    job = Job(partial=store.partial_path(dest), label=f"{entry.name}/{spec.filename}", size=spec.size,
              want_sha1=spec.checksum is not None and spec.checksum.algorithm == "sha1", offline=offline,
              progress=progress, force=force)
    report = _Report()
    for cand in transports.candidates(entry, spec):
        if offline and cand.network:
            report.skipped_offline.append(cand.label)
            report.attempts.append((cand.label, "skipped: offline mode"))
            continue
        try:
            got, facts = _attempt(entry, spec, cand, job)
        except ChecksumMismatchError as err:
            job.partial.unlink(missing_ok=True)  # bad bytes must never be resumed or cached
            report.mismatches.append((cand.label, err))
            report.attempts.append((cand.label, f"checksum mismatch: expected {err.expected}, got {err.actual}"))
            continue
        except SourceFailed as err:
            report.attempts.append((cand.label, err.reason))
            if err.offline_skip:
                report.skipped_offline.append(cand.label)
            continue
        except OSError as err:
            raise _local_failure(err, job) from err
        try:
            found = _place(entry, spec, dest, cand.label, got, facts)
        except OSError as err:
            raise _local_failure(err, job) from err
        for label, err in report.mismatches:
            warnings.warn(f"{label} served bad bytes for {job.label} (got {err.actual}, expected {err.expected}); "
                          f"the file came from {cand.label} instead. Fix or remove that source.",
                          ChecksumWarning, stacklevel=4)
        return found
    raise _failure(entry, spec, report, offline)


def _attempt(entry: Entry, spec: FileSpec, cand: Candidate, job: Job) -> tuple[Delivery, dict]:
    got = transports.deliver(cand, job)
    try:
        return got, _verify(entry, spec, got, cand.label)
    except ChecksumMismatchError:
        if not got.resumed:
            raise
    # The bytes continued a partial left by an earlier call, which may have been damaged on this
    # machine: the source gets one clean try before it is blamed.
    job.partial.unlink(missing_ok=True)
    got = transports.deliver(cand, job)
    facts = _verify(entry, spec, got, cand.label)
    warnings.warn(f"The partial download of {job.label} left by an earlier attempt was damaged on this machine "
                  f"(completed, it did not match its checksum; a fresh download from {cand.label} does). It was "
                  f"discarded: the damage was local, not the source's.", ChecksumWarning, stacklevel=4)
    return got, facts


def _verify(entry: Entry, spec: FileSpec, got: Delivery, label: str) -> dict:
    checksum = spec.checksum or got.checksum
    if checksum is None:
        if not got.in_place:
            got.path.unlink(missing_ok=True)  # unverifiable bytes are not kept to be resumed
        raise SourceFailed("the entry gives no checksum and the source offered none to verify against")
    size = got.path.stat().st_size
    try:
        if spec.size is not None and size != spec.size and checksum.trust != "suspect":
            raise ChecksumMismatchError(
                f"Size mismatch for {entry.name}/{spec.filename} from {label}: expected {spec.size} bytes, got "
                f"{size}. The download was deleted. Retry with `zoo download {entry.name} --force`.",
                path=str(got.path), expected=f"{spec.size} bytes", actual=f"{size} bytes", algorithm="size")
        return store.check(entry, spec, got.path, got.digests, label, checksum)
    except ChecksumMismatchError:
        if got.in_place:  # a Hub blob that does not match its own name is corrupt: removed from its cache
            hub.remove_if_corrupt(got.path, got.digests.sha256)
        raise


def _place(entry: Entry, spec: FileSpec, dest: Path, label: str, got: Delivery, facts: dict) -> Verified:
    """Move a verified delivery into the cache (the Hub's files stay where they are) and record it."""
    sha256 = got.digests.sha256
    record = {"sha256": sha256, "algorithm": facts["algorithm"], "digest": facts["digest"], "source": label,
              "entry": entry.name, "role": spec.role, "extra": {**facts["extra"], **got.facts}}
    if got.in_place:
        store.write_record(got.path, **record, record_file=store.hub_record_path(entry.name, spec.filename))
        return Verified(got.path, sha256, label)
    with open(got.path, "rb") as fh:  # durable before it becomes visible under its real name
        os.fsync(fh.fileno())
    os.replace(got.path, dest)
    store.write_record(dest, **record)
    return Verified(dest, sha256, label)


def _local_failure(err: OSError, job: Job) -> ZooError:
    """A write on this machine failed. A full disk also loses the partial: it holds space that other
    downloads need, and cannot be completed until room is made."""
    full = err.errno in _FULL
    if full:
        job.partial.unlink(missing_ok=True)
    if isinstance(err, ZooError):
        return err
    path = err.filename or job.partial
    message = describe_os_error(err, path, doing=f"downloading {job.label}",
                                remedy="set ZOO_HOME to a writable folder with free space")
    if full:
        message += " The partial download was removed to give its space back."
    return StorageError(message, path=str(path), errno=err.errno)


def _failure(entry: Entry, spec: FileSpec, report: _Report, offline: bool) -> ZooError:
    tried = "; ".join(f"{label}: {reason}" for label, reason in report.attempts)
    if report.mismatches:
        _, first = report.mismatches[0]
        others = f" All sources: {tried}." if len(report.attempts) > 1 else ""
        err = ChecksumMismatchError(str(first) + others, path=first.path, expected=first.expected,
                                    actual=first.actual, algorithm=first.algorithm)
        err.attempts = report.attempts
        return err
    if offline and report.skipped_offline:
        mirror = env.mirror()
        if mirror and mirror.startswith(("http://", "https://")):
            hint = f" ZOO_MIRROR={mirror} is a URL, which offline mode does not contact either."
        else:
            hint = f" The folder ZOO_MIRROR={mirror} does not have it either." if mirror else ""
        return OfflineError(
            f"Offline mode is on (ZOO_OFFLINE / HF_HUB_OFFLINE) and {entry.name}'s {spec.role} file "
            f"{spec.filename} is not in the cache.{hint} It would be fetched from: "
            f"{', '.join(report.skipped_offline)}. To fill a mirror, run `zoo mirror DIR {entry.name}` on a "
            f"connected machine, copy DIR here and set ZOO_MIRROR=DIR; or unset ZOO_OFFLINE.",
            missing=[f"{entry.name}/{spec.filename}"])
    return DownloadError(
        f"Could not fetch {entry.name}'s {spec.role} file {spec.filename}; every source failed: {tried}. "
        f"Check the network or set ZOO_MIRROR to a folder filled by `zoo mirror`, then retry "
        f"`zoo download {entry.name}` (a partial download is resumed).", attempts=report.attempts)
