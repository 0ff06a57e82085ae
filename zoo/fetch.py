"""Verified fetching: every byte is checked against its entry's checksum before it enters the cache.

Owns: ``fetch_file`` (one file of an entry into ``$ZOO_HOME/files/<entry>/<filename>``), ``download``
(every file of an entry), ``mirror`` (a folder an air-gapped site can copy and point ``ZOO_MIRROR``
at), the ``.verified`` sidecar records and the ``pins.json`` file of full sha256 values pinned for
entries whose publisher gives only a hash prefix.

Sources, in order: ``ZOO_MIRROR`` (a folder or an http(s) URL holding ``<entry.name>/<filename>``),
then the entry's own sources: ``url`` (http/https with Range resume, retries with exponential backoff
on timeouts, dropped connections and 408/429/5xx; ``file://``), ``hf`` (huggingface_hub into
``$ZOO_HOME/hf``, then copied into the cache), ``package`` (a file inside the installed ``zoo``
package). ``ZOO_OFFLINE=1`` / ``HF_HUB_OFFLINE=1`` never touch the network.

HTTP goes through the standard library (urllib.request / http.client), not requests: requests is not
a dependency of the zoo, and urllib gives us redirects, proxies from the environment and Range.

Must not import torch (``zoo download`` and ``zoo mirror`` stay light) nor ``zoo.finetune`` / ``zoo.cli``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock

from zoo._io import CHUNK, atomic_path, file_digest, git_blob_sha1, write_json
from zoo.errors import ChecksumMismatchError, DownloadError, OfflineError, RegistryError
from zoo.registry import env
from zoo.registry.schema import Checksum, Entry, FileSpec, Source

__all__ = [
    "fetch_file",
    "download",
    "mirror",
    "cache_path",
    "files_root",
    "read_record",
    "write_record",
    "pinned_sha256",
    "expected_digest",
    "ChecksumWarning",
    "RETRIES",
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "TIMEOUT",
]

# Retry policy for one HTTP source inside one call. The counter resets whenever bytes arrive, so a
# flaky link that keeps making progress is never given up on (huggingface_hub does the same).
RETRIES = 4
BACKOFF_BASE = 0.5  # seconds; doubles per attempt. Tests set it tiny.
BACKOFF_MAX = 16.0
TIMEOUT = 30.0  # seconds without a byte before a read counts as a timeout
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})

RECORD_SUFFIX = ".verified"
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
MANIFEST = "MANIFEST.json"


class ChecksumWarning(UserWarning):
    """A file did not match a checksum the registry marks as ``suspect`` (kept, but reported), or a
    tampered source was skipped in favour of a good one."""


class _SourceFailed(Exception):
    """One source could not deliver the file; the reason is collected and the next source tried."""

    def __init__(self, reason: str, *, offline_skip: bool = False):
        self.reason, self.offline_skip = reason, offline_skip
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class _Digests:
    sha256: str
    sha1: str | None


# ----------------------------------------------------------------------------------------------
# Paths and records


def files_root() -> Path:
    """The folder that holds every cached file: ``$ZOO_HOME/files``."""
    return env.zoo_home() / "files"


def cache_path(entry: Entry, role: str = "weights") -> Path:
    """Where ``fetch_file(entry, role)`` puts the file (whether or not it is there yet)."""
    return files_root() / entry.name / _spec(entry, role).filename


def _spec(entry: Entry, role: str) -> FileSpec:
    try:
        return entry.file(role)
    except KeyError:
        roles = ", ".join(f.role for f in entry.files) or "none"
        raise RegistryError(f"has no file with role {role!r} (its roles: {roles})",
                            path=entry.origin_file or None, entry=entry.name, field="files") from None


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + RECORD_SUFFIX)


def read_record(path: Path) -> dict[str, Any] | None:
    """The ``.verified`` sidecar of a cached file, or None when absent or unreadable."""
    try:
        data = json.loads(_record_path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_record(path: Path, *, sha256: str, algorithm: str, digest: str, source: str,
                 entry: str, role: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the sidecar that lets later loads skip re-hashing: size and mtime pin the bytes that
    were hashed; ``zoo cache verify`` re-hashes regardless."""
    st = path.stat()
    record = {
        "entry": entry, "role": role, "file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
        "sha256": sha256, "algorithm": algorithm, "digest": digest, "source": source,
        "verified_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        record.update(extra)
    write_json(_record_path(path), record)
    return record


def _record_matches_stat(path: Path, record: dict[str, Any] | None) -> bool:
    if not record:
        return False
    try:
        st = path.stat()
    except OSError:
        return False
    return record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns


# ----------------------------------------------------------------------------------------------
# Pins: full sha256 values recorded the first time a prefix-only checksum was verified


def _pins_path() -> Path:
    return env.zoo_home() / "pins.json"


def _read_pins() -> dict[str, Any]:
    try:
        data = json.loads(_pins_path().read_text("utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        # A damaged pin file would silently weaken verification; make the user look at it.
        raise DownloadError(f"The pin file {_pins_path()} cannot be read ({err}); it records the full "
                            f"sha256 of prefix-checksummed files. Fix or delete it and re-download.") from err
    return data if isinstance(data, dict) else {}


def pinned_sha256(entry: Entry, spec: FileSpec) -> str | None:
    """The full sha256 pinned for a prefix-checksummed file, or None before its first download."""
    if spec.checksum is None or not spec.checksum.prefix:
        return None
    pin = _read_pins().get(f"{entry.name}/{spec.filename}")
    if isinstance(pin, dict) and str(pin.get("sha256", "")).startswith(spec.checksum.value):
        return pin["sha256"]
    return None  # no pin, or a pin for an older prefix: the registry changed, so re-pin


def _pin(entry: Entry, spec: FileSpec, sha256: str, source: str) -> None:
    path = _pins_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + LOCK_SUFFIX):
        pins = _read_pins()
        pins[f"{entry.name}/{spec.filename}"] = {
            "prefix": spec.checksum.value, "sha256": sha256, "source": source,
            "pinned_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        write_json(path, pins)


# ----------------------------------------------------------------------------------------------
# Verification


def expected_digest(entry: Entry, spec: FileSpec, checksum: Checksum | None = None) -> tuple[str, str, bool]:
    """What a file must hash to: ``(algorithm, value, is_prefix)``, after applying a pin.

    ``checksum`` defaults to the file's own; ``is_prefix`` is True only for a prefix not pinned yet.
    """
    checksum = checksum or spec.checksum
    if checksum is None:
        raise ValueError(f"{entry.name}/{spec.filename} has no checksum in the registry")
    if checksum.prefix:
        pinned = pinned_sha256(entry, spec)
        if pinned:
            return "sha256", pinned, False
        return "sha256", checksum.value, True
    return checksum.algorithm, checksum.value, False


def _actual(algorithm: str, digests: _Digests, path: Path) -> str:
    if algorithm == "sha256":
        return digests.sha256
    if algorithm == "sha1" and digests.sha1:
        return digests.sha1
    if algorithm == "git-blob-sha1":
        return git_blob_sha1(path)  # needs the size up front: one extra read, only for these files
    return file_digest(path, algorithm)


def _verify(entry: Entry, spec: FileSpec, path: Path, digests: _Digests, source: str,
            checksum: Checksum | None) -> dict[str, Any]:
    """Check ``path`` (a partial or a cached file) against the checksum.

    Returns the facts for the sidecar record. Raises ChecksumMismatchError (the caller deletes the
    file) unless the checksum is marked ``suspect``, in which case a ChecksumWarning is issued.
    """
    if checksum is None:
        raise _SourceFailed("the entry gives no checksum and the source offered none to verify against")
    algorithm, expected, is_prefix = expected_digest(entry, spec, checksum)
    actual = _actual(algorithm, digests, path)
    ok = actual.startswith(expected) if is_prefix else actual == expected
    extra: dict[str, Any] = {}
    if not ok:
        if checksum.trust == "suspect":
            warnings.warn(
                f"{entry.name}/{spec.filename} from {source} does not match the registry's {algorithm} "
                f"{expected}, which the registry marks as suspect ({checksum.note or 'no note'}); computed "
                f"{algorithm} {actual} (sha256 {digests.sha256}). The file is kept: check it against "
                f"another source before relying on it.", ChecksumWarning, stacklevel=3)
            extra["suspect_mismatch"] = {"expected": expected, "actual": actual}
        else:
            raise ChecksumMismatchError(
                f"Checksum mismatch for {entry.name}/{spec.filename} from {source}: expected {algorithm} "
                f"{expected}{'...' if is_prefix else ''}, got {actual}. The download was deleted; nothing "
                f"entered the cache. Retry with `zoo download {entry.name} --force`; if it persists the "
                f"source is corrupt or tampered with.",
                path=str(path), expected=expected, actual=actual, algorithm=algorithm)
    elif is_prefix:
        _pin(entry, spec, digests.sha256, source)
    return {"algorithm": algorithm, "digest": actual, "extra": extra}


def _record_is_current(entry: Entry, spec: FileSpec, record: dict[str, Any] | None) -> bool:
    """Does a sidecar vouch for the checksum the registry asks for today?"""
    if not record or not record.get("sha256"):
        return False
    checksum = spec.checksum
    if checksum is None:
        return record.get("algorithm") in ("sha256", "git-blob-sha1")  # verified against the Hub's etag
    if record.get("suspect_mismatch"):
        return record["suspect_mismatch"].get("expected") == expected_digest(entry, spec, checksum)[1]
    algorithm, expected, is_prefix = expected_digest(entry, spec, checksum)
    if algorithm == "sha256":
        return record["sha256"].startswith(expected) if is_prefix else record["sha256"] == expected
    return record.get("algorithm") == algorithm and record.get("digest") == expected


def _hash_file(path: Path, want_sha1: bool) -> _Digests:
    hasher = _Hasher(want_sha1)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return hasher.digests()


# ----------------------------------------------------------------------------------------------
# Transports: each writes the source's bytes into ``partial`` and returns their digests


class _Hasher:
    def __init__(self, want_sha1: bool):
        self.sha256 = hashlib.sha256()
        self.sha1 = hashlib.sha1() if want_sha1 else None

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        if self.sha1:
            self.sha1.update(data)

    def digests(self) -> _Digests:
        return _Digests(self.sha256.hexdigest(), self.sha1.hexdigest() if self.sha1 else None)


def _progress(total: int | None, initial: int, desc: str, enabled: bool):
    from tqdm import tqdm  # light, but only the transports need it

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                disable=not enabled, leave=False, dynamic_ncols=True)


def _copy_stream(fh_in, partial: Path, hasher: _Hasher, *, total: int | None, desc: str,
                 progress: bool) -> None:
    with open(partial, "wb") as out, _progress(total, 0, desc, progress) as bar:
        while chunk := fh_in.read(CHUNK):
            out.write(chunk)
            hasher.update(chunk)
            bar.update(len(chunk))


def _copy_local(path: Path, partial: Path, want_sha1: bool, desc: str, progress: bool) -> _Digests:
    """A local file (folder mirror, file:// URL, Hub cache): copied while hashing, never resumed."""
    if not path.is_file():
        raise _SourceFailed(f"no such file {path}")
    hasher = _Hasher(want_sha1)
    try:
        with open(path, "rb") as fh:
            _copy_stream(fh, partial, hasher, total=path.stat().st_size, desc=desc, progress=progress)
    except OSError as err:
        raise _SourceFailed(f"cannot read {path}: {err.strerror or err}") from err
    return hasher.digests()


def _backoff(attempt: int, retry_after: str | None) -> float:
    delay = min(BACKOFF_BASE * (2 ** attempt), BACKOFF_MAX)
    if retry_after and retry_after.strip().isdigit():
        delay = min(max(delay, float(retry_after)), BACKOFF_MAX)
    return delay


def _user_agent() -> str:
    import zoo

    return f"zoo/{zoo.__version__} (+python-urllib)"


def _http_download(url: str, partial: Path, want_sha1: bool, *, size_hint: int | None, desc: str,
                   progress: bool) -> _Digests:
    """GET ``url`` into ``partial``, resuming what is already there with a Range request.

    Retries timeouts, dropped connections and 408/429/5xx with exponential backoff (``RETRIES``,
    ``BACKOFF_BASE``); the partial file is kept on failure so the next call resumes it.
    """
    attempt = 0
    while True:
        offset = partial.stat().st_size if partial.exists() else 0
        hasher = _Hasher(want_sha1)
        headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT) as resp:
                length = resp.headers.get("Content-Length")
                if offset and resp.status == 206 and _range_start(resp.headers.get("Content-Range")) == offset:
                    mode = "ab"
                    with open(partial, "rb") as fh:  # continue the hash over what is already there
                        while chunk := fh.read(CHUNK):
                            hasher.update(chunk)
                else:
                    # The server ignored the Range (200) or answered another one: start over rather
                    # than append mismatched bytes.
                    mode, offset = "wb", 0
                total = offset + int(length) if length and length.isdigit() else size_hint
                received = 0
                with open(partial, mode) as out, _progress(total, offset, desc, progress) as bar:
                    while chunk := resp.read(CHUNK):
                        out.write(chunk)
                        hasher.update(chunk)
                        bar.update(len(chunk))
                        received += len(chunk)
                        attempt = 0  # progress was made: the retry budget starts again
                if total is not None and offset + received < total:
                    raise ConnectionError(f"connection closed after {offset + received} of {total} bytes")
            return hasher.digests()
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:
                # Our partial is not a prefix the server can continue (it changed, or it is complete
                # but unverified): start again from zero.
                partial.unlink(missing_ok=True)
                continue
            if err.code in RETRY_STATUS and attempt < RETRIES:
                time.sleep(_backoff(attempt, err.headers.get("Retry-After") if err.headers else None))
                attempt += 1
                continue
            raise _SourceFailed(f"HTTP {err.code} {err.reason}" + (
                f" after {attempt + 1} tries" if err.code in RETRY_STATUS else "")) from err
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
            reason = getattr(err, "reason", None) or err
            # An unknown host name will not resolve on a retry: fail over to the next source at once.
            if attempt < RETRIES and not isinstance(reason, socket.gaierror):
                time.sleep(_backoff(attempt, None))
                attempt += 1
                continue
            kept = partial.stat().st_size if partial.exists() else 0
            raise _SourceFailed(f"{type(err).__name__}: {reason} after {attempt + 1} tries"
                                + (f" ({kept} bytes kept in {partial.name}; the next call resumes)" if kept else "")
                                ) from err


def _range_start(content_range: str | None) -> int | None:
    # "bytes 100-199/200"
    if not content_range or not content_range.startswith("bytes "):
        return None
    start = content_range[6:].split("-", 1)[0]
    return int(start) if start.isdigit() else None


def _hf_download(source: Source, partial: Path, want_sha1: bool, *, offline: bool, desc: str,
                 progress: bool) -> tuple[_Digests, Checksum | None]:
    """Fetch through huggingface_hub into ``$ZOO_HOME/hf``, then copy into our partial.

    Returns the digests and, when the Hub's cache names the blob by its LFS sha256 (or git sha1), a
    checksum derived from that, for entries that give none of their own.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:  # it is a dependency, but say so plainly if an install lacks it
        raise _SourceFailed("huggingface_hub is not installed (pip install huggingface_hub)") from err
    try:
        local = hf_hub_download(source.hf_repo, source.hf_filename, revision=source.hf_revision,
                                cache_dir=env.zoo_home() / "hf", local_files_only=offline,
                                **({} if progress else {"tqdm_class": _silent_tqdm()}))
    except Exception as err:  # the Hub raises many types; each becomes one reason in the report
        if offline:
            raise _SourceFailed("offline and not in the Hub cache", offline_skip=True) from err
        raise _SourceFailed(f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}") from err
    blob = Path(os.path.realpath(local))
    hub_checksum = None
    if len(blob.name) == 64 and all(c in "0123456789abcdef" for c in blob.name):
        hub_checksum = Checksum(algorithm="sha256", value=blob.name, trust="publisher")
    elif len(blob.name) == 40 and all(c in "0123456789abcdef" for c in blob.name):
        hub_checksum = Checksum(algorithm="git-blob-sha1", value=blob.name, trust="publisher")
    return _copy_local(blob, partial, want_sha1, desc, progress), hub_checksum


def _silent_tqdm():
    from tqdm.auto import tqdm

    class SilentTqdm(tqdm):  # huggingface_hub's bars, switched off for progress=False
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return SilentTqdm


def _package_file(source: Source, partial: Path, want_sha1: bool, desc: str, progress: bool) -> _Digests:
    from importlib import resources

    item = resources.files("zoo").joinpath(*source.package.split("/"))
    if not item.is_file():
        raise _SourceFailed(f"not in the installed zoo package (zoo/{source.package})")
    hasher = _Hasher(want_sha1)
    with item.open("rb") as fh:
        _copy_stream(fh, partial, hasher, total=None, desc=desc, progress=progress)
    return hasher.digests()


# ----------------------------------------------------------------------------------------------
# The candidates, in order


@dataclass(frozen=True, slots=True)
class _Candidate:
    label: str  # what the reports show
    kind: str  # "http", "local", "hf", "package"
    target: Any  # URL, Path or Source
    network: bool


def _mirror_candidate(entry: Entry, spec: FileSpec) -> _Candidate | None:
    value = env.mirror()
    if not value:
        return None
    rel = f"{entry.name}/{spec.filename}"
    if value.startswith(("http://", "https://")):
        url = value.rstrip("/") + "/" + urllib.parse.quote(rel)
        return _Candidate(f"ZOO_MIRROR {url}", "http", url, True)
    if value.startswith("file://"):
        value = urllib.request.url2pathname(urllib.parse.urlparse(value).path)
    path = Path(value).expanduser() / entry.name / spec.filename
    return _Candidate(f"ZOO_MIRROR {path}", "local", path, False)


def _candidates(entry: Entry, spec: FileSpec) -> list[_Candidate]:
    out = []
    mirrored = _mirror_candidate(entry, spec)
    if mirrored:
        out.append(mirrored)
    for source in spec.sources:
        if source.url and source.url.startswith("file://"):
            path = Path(urllib.request.url2pathname(urllib.parse.urlparse(source.url).path))
            out.append(_Candidate(source.url, "local", path, False))
        elif source.url:
            out.append(_Candidate(source.url, "http", source.url, True))
        elif source.hf_repo:
            # The Hub's cache works offline; hf_hub_download is told local_files_only then.
            out.append(_Candidate(source.describe(), "hf", source, False))
        else:
            out.append(_Candidate(source.describe(), "package", source, False))
    return out


# ----------------------------------------------------------------------------------------------
# The public functions


def fetch_file(entry: Entry, role: str = "weights", *, force: bool = False, progress: bool = True) -> Path:
    """Return the verified cached copy of one file of ``entry``, fetching it if needed.

    The file lives at ``$ZOO_HOME/files/<entry.name>/<filename>``. A cached file with a current
    ``.verified`` record (same size and mtime as when it was hashed) is returned at once. Otherwise,
    under a file lock, the sources are tried in order: ``ZOO_MIRROR``, then the entry's sources. Bytes
    stream into ``<filename>.partial`` while being hashed; the full checksum is compared, then the
    partial is renamed into place. For a sha256 *prefix* (torchvision publishes 8 hex digits) the
    prefix is compared and the full sha256 is pinned in ``$ZOO_HOME/pins.json``; later downloads must
    match the pin.

    A source whose bytes do not match is **not** the end: its download is deleted and the next source
    is tried, because a tampered or stale mirror must not block the origin (a ChecksumWarning names
    the bad source when a later one succeeds). If no source delivers good bytes and at least one
    delivered bad ones, ChecksumMismatchError is raised. A checksum the registry marks ``suspect``
    warns instead of failing and keeps the file.

    Args:
        entry: the registry entry (``zoo.registry.catalog().get(name)``).
        role: which of its files (``"weights"``, ``"mean"``, ``"deploy"``...).
        force: fetch again even when cached (a partial download is discarded); the cached copy is
            replaced only once the new download has verified.
        progress: show a tqdm progress bar on stderr.

    Returns:
        The path of the verified file in the cache.

    Raises:
        ChecksumMismatchError: every source that answered delivered wrong bytes (nothing was cached).
        OfflineError: offline mode is on and no offline source has the file.
        DownloadError: every source failed; ``attempts`` lists (source, reason).
        RegistryError: the entry has no file with that role.

    Example:
        >>> from zoo.registry import get_entry
        >>> path = fetch_file(get_entry("resnet18"))          # doctest: +SKIP
    """
    spec = _spec(entry, role)
    dest = files_root() / entry.name / spec.filename
    if not force:
        found = _cached(entry, spec, dest)
        if found:
            return found
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + PARTIAL_SUFFIX)
    with FileLock(str(dest) + LOCK_SUFFIX):
        if force:
            # Only the partial goes: the cached copy stays usable until a new download verifies
            # and replaces it (os.replace), so a failed --force never leaves the user with nothing.
            partial.unlink(missing_ok=True)
        else:
            found = _cached(entry, spec, dest)  # another process may have fetched it while we waited
            if found:
                return found
        return _fetch_locked(entry, spec, dest, partial, progress)


def _cached(entry: Entry, spec: FileSpec, dest: Path) -> Path | None:
    if not dest.is_file():
        return None
    record = read_record(dest)
    if _record_matches_stat(dest, record) and _record_is_current(entry, spec, record):
        if record.get("suspect_mismatch"):
            warnings.warn(f"{dest} does not match the registry's suspect checksum "
                          f"(computed {record['suspect_mismatch']['actual']}); see `zoo info {entry.name}`.",
                          ChecksumWarning, stacklevel=3)
        return dest
    if spec.checksum is None:
        return None  # verified against the Hub's etag at download: fetch again to re-derive it
    # No record, a stale one, or the registry's checksum changed: re-hash before trusting the file.
    digests = _hash_file(dest, spec.checksum.algorithm == "sha1")
    try:
        facts = _verify(entry, spec, dest, digests, "the cache", spec.checksum)
    except ChecksumMismatchError as err:
        warnings.warn(f"The cached {dest} no longer matches its checksum ({err.actual} != {err.expected}); "
                      f"it was deleted and will be fetched again.", ChecksumWarning, stacklevel=3)
        dest.unlink(missing_ok=True)
        _record_path(dest).unlink(missing_ok=True)
        return None
    old_source = (record or {}).get("source", "the cache")
    write_record(dest, sha256=digests.sha256, algorithm=facts["algorithm"], digest=facts["digest"],
                 source=old_source, entry=entry.name, role=spec.role, extra=facts["extra"])
    return dest


def _fetch_locked(entry: Entry, spec: FileSpec, dest: Path, partial: Path, progress: bool) -> Path:
    offline = env.offline()
    want_sha1 = spec.checksum is not None and spec.checksum.algorithm == "sha1"
    desc = f"{entry.name}/{spec.filename}"
    attempts: list[tuple[str, str]] = []
    mismatches: list[tuple[str, ChecksumMismatchError]] = []
    skipped_offline: list[str] = []
    for cand in _candidates(entry, spec):
        if offline and cand.network:
            skipped_offline.append(cand.label)
            attempts.append((cand.label, "skipped: offline mode"))
            continue
        checksum = spec.checksum
        try:
            if cand.kind == "http":
                digests = _http_download(cand.target, partial, want_sha1, size_hint=spec.size, desc=desc,
                                         progress=progress)
            elif cand.kind == "local":
                digests = _copy_local(cand.target, partial, want_sha1, desc, progress)
            elif cand.kind == "hf":
                digests, hub_checksum = _hf_download(cand.target, partial, want_sha1, offline=offline,
                                                     desc=desc, progress=progress)
                checksum = checksum or hub_checksum
            else:
                digests = _package_file(cand.target, partial, want_sha1, desc, progress)
            if spec.size is not None and partial.stat().st_size != spec.size:
                actual_size = partial.stat().st_size
                if checksum is None or checksum.trust != "suspect":
                    partial.unlink(missing_ok=True)
                    raise ChecksumMismatchError(
                        f"Size mismatch for {entry.name}/{spec.filename} from {cand.label}: expected "
                        f"{spec.size} bytes, got {actual_size}. The download was deleted. Retry with "
                        f"`zoo download {entry.name} --force`.",
                        path=str(partial), expected=f"{spec.size} bytes", actual=f"{actual_size} bytes",
                        algorithm="size")
            facts = _verify(entry, spec, partial, digests, cand.label, checksum)
        except ChecksumMismatchError as err:
            partial.unlink(missing_ok=True)  # bad bytes must never be resumed or cached
            mismatches.append((cand.label, err))
            attempts.append((cand.label, f"checksum mismatch: expected {err.expected}, got {err.actual}"))
            continue
        except _SourceFailed as err:
            attempts.append((cand.label, err.reason))
            if err.offline_skip:
                skipped_offline.append(cand.label)
            continue
        with open(partial, "rb") as fh:  # durable before it becomes visible under its real name
            os.fsync(fh.fileno())
        os.replace(partial, dest)
        write_record(dest, sha256=digests.sha256, algorithm=facts["algorithm"], digest=facts["digest"],
                     source=cand.label, entry=entry.name, role=spec.role, extra=facts["extra"])
        for label, err in mismatches:
            warnings.warn(f"{label} served bad bytes for {desc} (got {err.actual}, expected {err.expected}); "
                          f"the file came from {cand.label} instead. Fix or remove that source.",
                          ChecksumWarning, stacklevel=3)
        return dest
    _raise_failure(entry, spec, attempts, mismatches, skipped_offline, offline)
    raise AssertionError("unreachable")  # _raise_failure always raises


def _raise_failure(entry: Entry, spec: FileSpec, attempts: list[tuple[str, str]],
                   mismatches: list[tuple[str, ChecksumMismatchError]], skipped_offline: list[str],
                   offline: bool) -> None:
    tried = "; ".join(f"{label}: {reason}" for label, reason in attempts)
    if mismatches:
        label, first = mismatches[0]
        others = f" All sources: {tried}." if len(attempts) > 1 else ""
        err = ChecksumMismatchError(str(first) + others, path=first.path, expected=first.expected,
                                    actual=first.actual, algorithm=first.algorithm)
        err.attempts = attempts
        raise err
    if offline and skipped_offline:
        mirror_hint = f" (ZOO_MIRROR={env.mirror()} does not have it)" if env.mirror() else ""
        raise OfflineError(
            f"Offline mode is on (ZOO_OFFLINE / HF_HUB_OFFLINE) and {entry.name}'s {spec.role} file "
            f"{spec.filename} is not in the cache{mirror_hint}. It would be fetched from: "
            f"{', '.join(skipped_offline)}. To fill a mirror, run `zoo mirror DIR {entry.name}` on a "
            f"connected machine, copy DIR here and set ZOO_MIRROR=DIR; or unset ZOO_OFFLINE.",
            missing=[f"{entry.name}/{spec.filename}"])
    raise DownloadError(
        f"Could not fetch {entry.name}'s {spec.role} file {spec.filename}; every source failed: {tried}. "
        f"Check the network or set ZOO_MIRROR to a folder filled by `zoo mirror`, then retry "
        f"`zoo download {entry.name}` (a partial download is resumed).", attempts=attempts)


def _entry(name_or_entry: str | Entry) -> Entry:
    if isinstance(name_or_entry, Entry):
        return name_or_entry
    from .external import resolve_entry  # curated first; timm/torchvision imported only on a miss

    return resolve_entry(name_or_entry)


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
        ChecksumMismatchError, OfflineError, DownloadError: see ``fetch_file``.

    Example:
        >>> paths = download("bvlc_googlenet")     # doctest: +SKIP
        >>> paths["weights"].name                  # doctest: +SKIP
        'bvlc_googlenet.caffemodel'
    """
    entry = _entry(name_or_entry)
    return {spec.role: fetch_file(entry, spec.role, force=force, progress=progress) for spec in entry.files}


def mirror(directory: str | Path, names: Iterable[str | Entry] | str, *, progress: bool = True) -> list[Path]:
    """Fill a mirror folder that an air-gapped site copies and points ``ZOO_MIRROR`` at.

    Each file is fetched (and verified) into the cache, then copied to ``<directory>/<entry.name>/
    <filename>``; ``MANIFEST.json`` records the entries, files, sizes and digests (merged with what
    the folder already lists). Files already in the mirror with the right sha256 are not copied again.

    Args:
        directory: the mirror folder (created if needed).
        names: registry names (or entries) to mirror.
        progress: show progress bars.

    Returns:
        The mirror paths of every file of the named entries.

    Example:
        >>> mirror("/media/usb/zoo-mirror", ["bvlc_alexnet", "resnet50"])   # doctest: +SKIP
        # then, on the air-gapped machine: ZOO_MIRROR=/media/usb/zoo-mirror ZOO_OFFLINE=1 zoo download resnet50
    """
    root = Path(directory).expanduser()
    if isinstance(names, (str, Entry)):
        names = [names]
    entries = [_entry(n) for n in names]  # resolve all first: a typo fails before any download
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / MANIFEST
    written: list[Path] = []
    with FileLock(str(manifest_path) + LOCK_SUFFIX):
        manifest = _read_manifest(manifest_path)
        for entry in entries:
            files = download(entry, progress=progress)
            listed = {}
            for role, cached in files.items():
                target = root / entry.name / cached.name
                record = read_record(cached) or {}
                sha256 = record.get("sha256") or file_digest(cached)
                if not (target.is_file() and target.stat().st_size == cached.stat().st_size
                        and file_digest(target) == sha256):
                    with atomic_path(target) as tmp:
                        shutil.copyfile(cached, tmp)
                spec = entry.file(role)
                listed[cached.name] = {
                    "role": role, "size": cached.stat().st_size, "sha256": sha256,
                    "checksum": ({("sha256-prefix" if spec.checksum.prefix else spec.checksum.algorithm):
                                  spec.checksum.value} if spec.checksum else None),
                }
                written.append(target)
            manifest["entries"][entry.name] = {"files": listed}
        manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json(manifest_path, manifest)
    return written


def _read_manifest(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"schema": 1, "entries": {}}
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as err:
        raise DownloadError(f"The mirror manifest {path} cannot be read ({err}); fix or delete it, "
                            f"then run `zoo mirror` again.") from err
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        raise DownloadError(f"The mirror manifest {path} is not a zoo MANIFEST.json (no 'entries' object); "
                            f"point `zoo mirror` at an empty folder or a zoo mirror.")
    return data

