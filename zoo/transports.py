"""Getting a file's bytes from one source: HTTP(S), the Hugging Face Hub, the package, a local folder.

Owns: ``candidates`` (an entry file's sources in the order they are tried: ``ZOO_MIRROR`` first),
the ``TRANSPORTS`` table that maps a candidate's kind to the function that delivers it, and those
functions. Each takes the candidate's target and a ``Job`` and returns a ``Delivery``: bytes written
into the job's partial file while being hashed, or (the Hub) a file hashed where it already lies.
A source that cannot deliver raises ``SourceFailed`` with one line of reason; the caller tries the
next. Errors writing on this machine (a full disk) are ``OSError``s and are not a source's fault.

HTTP goes through the standard library (urllib.request / http.client), not requests: requests is not
a dependency of the zoo, and urllib gives us redirects, proxies from the environment and Range.
Downloads are bounded by what the entry declares: a Content-Length that disagrees with the declared
size is refused before a byte is written, reading stops at the declared size, and the free space is
checked before writing.

Must not import torch nor ``zoo.finetune`` / ``zoo.cli``.
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from zoo import hub, store
from zoo._io import CHUNK, free_space
from zoo.errors import ChecksumMismatchError, StorageError
from zoo.registry import env
from zoo.registry.assets import package_file
from zoo.registry.records import Checksum, Entry, FileSpec, Source
from zoo.store import ChecksumWarning, Digests, Hasher, hash_file

__all__ = ["Job", "Delivery", "Candidate", "SourceFailed", "PartialWriter", "TRANSPORTS", "candidates", "deliver",
           "RETRIES", "BACKOFF_BASE", "BACKOFF_MAX", "TIMEOUT", "RETRY_STATUS"]

# Retry policy for one HTTP source inside one call. The counter resets whenever bytes arrive, so a
# flaky link that keeps making progress is never given up on (huggingface_hub does the same).
RETRIES = 4
BACKOFF_BASE = 0.5  # seconds; doubles per attempt. Tests set it tiny.
BACKOFF_MAX = 16.0
TIMEOUT = 30.0  # seconds without a byte before a read counts as a timeout
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class SourceFailed(Exception):
    """One source could not deliver the file; the reason is collected and the next source tried."""

    def __init__(self, reason: str, *, offline_skip: bool = False):
        self.reason, self.offline_skip = reason, offline_skip
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Job:
    """What one fetch asks of a transport."""

    partial: Path  # where copying transports write (resumed when it holds a prefix)
    label: str  # "<entry>/<filename>", for progress bars and messages
    size: int | None = None  # the size the entry declares: the most that is read
    want_sha1: bool = False  # the registry's checksum is a sha1
    offline: bool = False  # never touch the network
    progress: bool = True  # a progress bar on stderr
    force: bool = False  # fetch again what a cache (the Hub's) already holds


@dataclass(frozen=True, slots=True)
class Delivery:
    """The bytes a transport delivered."""

    path: Path  # the partial file, or (``in_place``) the file where it already lies
    digests: Digests
    in_place: bool = False  # a file in the Hub's cache: recorded there, not moved into files/
    resumed: bool = False  # the bytes continue a partial left by an earlier call
    checksum: Checksum | None = None  # the Hub's LFS sha256, for entries that give none
    facts: dict[str, Any] = field(default_factory=dict)  # more for the record (the Hub repo, commit)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One place to try, as the reports name it."""

    label: str
    kind: str  # a key of TRANSPORTS
    target: Any  # URL, Path or Source
    network: bool  # skipped offline


# ----------------------------------------------------------------------------------------------
# The candidates, in order


def _mirror_candidate(entry: Entry, spec: FileSpec) -> Candidate | None:
    value = env.mirror()
    if not value:
        return None
    rel = f"{entry.name}/{spec.filename}"
    if value.startswith(("http://", "https://")):
        url = value.rstrip("/") + "/" + urllib.parse.quote(rel)
        return Candidate(f"ZOO_MIRROR {url}", "http", url, True)
    if value.startswith("file://"):
        value = urllib.request.url2pathname(urllib.parse.urlparse(value).path)
    return Candidate(f"ZOO_MIRROR {Path(value).expanduser() / rel}", "local", Path(value).expanduser() / rel, False)


def _url_candidate(source: Source) -> Candidate:
    if source.url.startswith("file://"):
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(source.url).path))
        return Candidate(source.url, "local", path, False)
    return Candidate(source.url, "http", source.url, True)


def _package_candidate(entry: Entry, source: Source) -> Candidate:
    # The package folder for a built-in entry, the registry file's own folder for a user entry; the path
    # is resolved (symlinks too) and refused with a RegistryError if it leads outside that folder.
    return Candidate(source.describe(), "package", package_file(entry, source), False)


# A source kind (the registry's word) -> its candidate. The Hub is not marked network: its cache
# answers offline, and the transport is told to make no request then.
_SOURCE_KINDS: dict[str, Callable[[Entry, Source], Candidate]] = {
    "url": lambda entry, source: _url_candidate(source),
    "hf": lambda entry, source: Candidate(source.describe(), "hf", source, False),
    "package": _package_candidate,
}


def candidates(entry: Entry, spec: FileSpec) -> list[Candidate]:
    """The places to try for one file, in order: ``ZOO_MIRROR``, then the entry's own sources.

    Raises:
        RegistryError: a ``package`` source leads outside its entry's folder.
    """
    mirrored = _mirror_candidate(entry, spec)
    return ([mirrored] if mirrored else []) + [_SOURCE_KINDS[s.kind](entry, s) for s in spec.sources]


def deliver(candidate: Candidate, job: Job) -> Delivery:
    """Have the candidate's transport deliver the file (see ``TRANSPORTS``)."""
    return TRANSPORTS[candidate.kind](candidate.target, job)


# ----------------------------------------------------------------------------------------------
# Writing the partial


class PartialWriter:
    """Appends to the partial file while hashing and advancing the progress bar.

    A write error (a full disk) is this machine's, so it propagates as the ``OSError`` it is.
    """

    def __init__(self, job: Job, *, append: bool, total: int | None, hasher: Hasher):
        from tqdm import tqdm  # light, but only the transports need it

        self.job, self.hasher = job, hasher
        job.partial.parent.mkdir(parents=True, exist_ok=True)
        self.written = job.partial.stat().st_size if append else 0
        self._fh: IO[bytes] = open(job.partial, "ab" if append else "wb")  # noqa: SIM115 (closed in close)
        self._bar = tqdm(total=total, initial=self.written, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=job.label, leave=False, dynamic_ncols=True,
                         disable=None if job.progress else True)  # None: tqdm's rule, a bar only on a terminal

    def write(self, chunk: bytes) -> None:
        self._fh.write(chunk)
        self.hasher.update(chunk)
        self._bar.update(len(chunk))
        self.written += len(chunk)

    def close(self) -> None:
        self._bar.close()
        self._fh.close()

    def __enter__(self) -> PartialWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_room(job: Job, need: int | None) -> None:
    """Refuse before writing when the disk cannot hold what is still to come."""
    if need is None or need <= 0:
        return
    folder = job.partial.parent
    free = free_space(folder)
    if free < need:
        raise StorageError(f"Not enough free space for {job.label}: it needs {need:,} more bytes and the disk "
                           f"holding {folder} has {free:,}. Free space there or set ZOO_HOME to a folder on a "
                           f"larger disk, then retry.", path=str(folder), errno=errno.ENOSPC)


def _pump(read: Callable[[int], bytes], out: PartialWriter, limit: int | None) -> None:
    """Copy until the end, never past ``limit`` total bytes (reading at most one byte too many)."""
    while True:
        want = CHUNK if limit is None else max(0, min(CHUNK, limit - out.written)) + 1
        chunk = read(want)
        if not chunk:
            return
        if limit is not None and out.written + len(chunk) > limit:
            raise ChecksumMismatchError(
                f"Size mismatch for {out.job.label}: the source sent more than the declared {limit:,} bytes; "
                f"reading stopped there and the download was deleted.",
                path=str(out.job.partial), expected=f"{limit} bytes", actual=f"more than {limit} bytes",
                algorithm="size")
        out.write(chunk)


# ----------------------------------------------------------------------------------------------
# Local files, the package, the Hub


def copy_local(path: Path, job: Job) -> Delivery:
    """A local file (a folder mirror, a ``file://`` URL): copied while hashing, never resumed."""
    if not path.is_file():  # a FIFO or a device would block or never end: refused before opening
        raise SourceFailed(f"not a regular file: {path}" if path.exists() else f"no such file {path}")
    try:
        fh = open(path, "rb")  # noqa: SIM115 (closed below)
        size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError as err:
        raise SourceFailed(f"no such file {path}") from err
    except OSError as err:
        raise SourceFailed(f"cannot read {path}: {err.strerror or err}") from err
    with fh:
        if job.size is not None and size != job.size:
            raise _size_mismatch(job, size, "the file is")
        _check_room(job, size)
        with PartialWriter(job, append=False, total=size, hasher=(hasher := Hasher(job.want_sha1))) as out:
            _pump(_guarded_read(fh, path), out, job.size)
    return Delivery(job.partial, hasher.digests())


def _guarded_read(fh: IO[bytes], path: Path) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        try:
            return fh.read(n)
        except OSError as err:  # the source's disk, not ours
            raise SourceFailed(f"cannot read {path}: {err.strerror or err}") from err
    return read


def copy_package(path: Path, job: Job) -> Delivery:
    """A file shipped with its entry: in the installed ``zoo`` package, or beside a user registry file
    (``path`` is already resolved inside that folder by ``candidates``)."""
    if not path.exists():
        raise SourceFailed(f"not where its entry says ({path}); reinstall the package or put the file there")
    return copy_local(path, job)


def from_hub(source: Source, job: Job) -> Delivery:
    """A Hub file, fetched into (or found in) huggingface_hub's cache and hashed there: not copied."""
    try:
        local = hub.download(source, offline=job.offline, progress=job.progress, force=job.force)
    except OSError as err:
        if err.errno in _LOCAL_ERRNOS:
            raise  # the Hub cache's disk is full or read-only: this machine's problem, said as such
        raise SourceFailed(f"{type(err).__name__}: {_first_line(err)}") from err
    except Exception as err:  # the Hub raises many types; each becomes one reason in the report
        raise SourceFailed(f"{type(err).__name__}: {_first_line(err)}") from err
    if local is None:
        raise SourceFailed(f"offline and not in the Hugging Face cache {store.hub_cache()}", offline_skip=True)
    blob = Path(os.path.realpath(local))
    if job.size is not None and blob.stat().st_size != job.size:
        raise _size_mismatch(job, blob.stat().st_size, "the Hub's file is")
    facts = {"path": str(local), "blob": str(blob), "repo": source.hf_repo,
             "commit": local.parent.name if local.parent.parent.name == "snapshots" else None}
    return Delivery(local, hash_file(blob, job.want_sha1), in_place=True, checksum=hub.lfs_checksum(blob),
                    facts=facts)


# Errors of this machine's disk, not of the source: reported as such rather than as a failed source.
_LOCAL_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", errno.ENOSPC)})


def _first_line(err: BaseException) -> str:
    text = str(err)
    return text.splitlines()[0] if text else ""


def _size_mismatch(job: Job, actual: int, what: str) -> ChecksumMismatchError:
    return ChecksumMismatchError(
        f"Size mismatch for {job.label}: {what} {actual:,} bytes, the entry declares {job.size:,}; nothing "
        f"was kept.", path=str(job.partial), expected=f"{job.size} bytes", actual=f"{actual} bytes",
        algorithm="size")


# ----------------------------------------------------------------------------------------------
# HTTP


def _backoff(attempt: int, retry_after: str | None) -> float:
    delay = min(BACKOFF_BASE * (2 ** attempt), BACKOFF_MAX)
    if retry_after and retry_after.strip().isdigit():
        delay = min(max(delay, float(retry_after)), BACKOFF_MAX)
    return delay


def _user_agent() -> str:
    import zoo

    return f"zoo/{zoo.__version__} (+python-urllib)"


def _range_start(content_range: str | None) -> int | None:
    # "bytes 100-199/200"
    if not content_range or not content_range.startswith("bytes "):
        return None
    start = content_range[6:].split("-", 1)[0]
    return int(start) if start.isdigit() else None


def _resumable_offset(job: Job) -> int:
    """How much of the partial can be kept: all of it, unless it is longer than the declared size."""
    offset = job.partial.stat().st_size if job.partial.exists() else 0
    if job.size is not None and offset >= job.size:
        # Complete-but-unverified or overlong: it cannot be continued. Start over.
        _discard(job, f"it holds {offset:,} bytes and the entry declares {job.size:,}")
        return 0
    return offset


def _discard(job: Job, why: str) -> None:
    job.partial.unlink(missing_ok=True)
    warnings.warn(f"The partial download {job.partial} cannot be resumed ({why}); it was discarded and "
                  f"{job.label} is fetched from the start. The damage was on this machine, not at the source.",
                  ChecksumWarning, stacklevel=2)


def _open(url: str, offset: int) -> http.client.HTTPResponse:
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT)


def _receive(resp: http.client.HTTPResponse, job: Job, offset: int) -> Delivery:
    """Write one response's body into the partial: appended when it continues our Range, else anew."""
    resumed = bool(offset) and resp.status == 206 and _range_start(resp.headers.get("Content-Range")) == offset
    if not resumed:
        offset = 0  # the server ignored the Range (200) or answered another: start over, never mix
    length = resp.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if job.size is not None and length is not None and offset + length != job.size:
        raise _size_mismatch(job, offset + length, "the server's Content-Length says")
    total = offset + length if length is not None else job.size
    _check_room(job, None if total is None else total - offset)
    hasher = Hasher(job.want_sha1)
    if resumed:
        with open(job.partial, "rb") as fh:  # continue the hash over what is already there
            while chunk := fh.read(CHUNK):
                hasher.update(chunk)
    with PartialWriter(job, append=resumed, total=total, hasher=hasher) as out:
        _pump(_network_read(resp), out, job.size)
        if total is not None and out.written < total:
            raise ConnectionError(f"connection closed after {out.written} of {total} bytes")
    return Delivery(job.partial, hasher.digests(), resumed=resumed)


def _network_read(resp: http.client.HTTPResponse) -> Callable[[int], bytes]:
    def read(n: int) -> bytes:
        try:
            return resp.read(n)
        except (ConnectionError, TimeoutError):
            raise
        except OSError as err:  # a TLS error mid-body is the link's failure, not this disk's: retried
            raise ConnectionError(f"{type(err).__name__}: {err}") from err
    return read


def http_get(url: str, job: Job) -> Delivery:
    """GET ``url`` into the partial, resuming what is already there with a Range request.

    Retries timeouts, dropped connections and 408/429/5xx with exponential backoff (``RETRIES``,
    ``BACKOFF_BASE``); the partial file is kept on failure so the next call resumes it.
    """
    attempt = 0
    while True:
        offset = _resumable_offset(job)
        if job.size is not None:
            _check_room(job, job.size - offset)
        before = offset
        try:
            with _open(url, offset) as resp:
                return _receive(resp, job, offset)
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset:
                # Our partial is not a prefix the server can continue (it changed, or it is complete
                # but unverified): start again from zero.
                _discard(job, f"the server cannot continue from byte {offset:,}: HTTP 416")
                continue
            if err.code not in RETRY_STATUS or attempt >= RETRIES:
                raise SourceFailed(f"HTTP {err.code} {err.reason}" + (
                    f" after {attempt + 1} tries" if err.code in RETRY_STATUS else "")) from err
            time.sleep(_backoff(attempt, err.headers.get("Retry-After") if err.headers else None))
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
            reason = getattr(err, "reason", None) or err
            if job.partial.exists() and job.partial.stat().st_size > before:
                attempt = 0  # progress was made: the retry budget starts again
            # An unknown host name will not resolve on a retry: fail over to the next source at once.
            if attempt >= RETRIES or isinstance(reason, socket.gaierror):
                kept = job.partial.stat().st_size if job.partial.exists() else 0
                raise SourceFailed(f"{type(err).__name__}: {reason} after {attempt + 1} tries"
                                   + (f" ({kept} bytes kept in {job.partial.name}; the next call resumes)"
                                      if kept else "")) from err
            time.sleep(_backoff(attempt, None))
        attempt += 1


# A candidate's kind -> the function that delivers it.
TRANSPORTS: dict[str, Callable[[Any, Job], Delivery]] = {
    "http": http_get,
    "local": copy_local,
    "hf": from_hub,
    "package": copy_package,
}
