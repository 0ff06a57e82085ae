"""Small file-system helpers shared by the cache, checkpoints and run directories.

Owns: atomic writes (temporary file beside the target, fsync, rename) with the user's umask, the
free-space check before a large write, and streaming digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write", "atomic_path", "write_json", "file_digest", "git_blob_sha1", "user_mode", "free_space",
           "CHUNK"]

CHUNK = 1 << 20
_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    # Python has no getter: Linux reports it in /proc without changing it; elsewhere set-and-restore,
    # under a lock so two threads of this process cannot see the temporary 0.
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def user_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give a new file: ``0o666`` less the umask.

    ``mkstemp`` creates its files ``0o600`` (private on purpose); a file the zoo publishes (cache,
    mirror, run folder) must be as readable as any other file the user writes.
    """
    return 0o666 & ~_umask()


def free_space(folder: str | Path) -> int:
    """Bytes free for this user on the disk holding ``folder`` (or its nearest existing parent)."""
    folder = Path(folder)
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return shutil.disk_usage(folder).free


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (safetensors' ``save_file``);
    on success it is fsynced, given the user's umask (see ``user_mode``) and renamed over ``path``, on
    error removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, user_mode())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Write ``path`` so that readers see the old file or the whole new one, never a part.

    The data goes to a unique temporary file in the same folder, is flushed and fsynced, then
    renamed over the target. On error the temporary file is removed and the target is untouched.
    """
    with atomic_path(path) as tmp, open(tmp, mode) as fh:
        yield fh
        fh.flush()


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write ``data`` as indented JSON."""
    with atomic_write(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=False)
        fh.write("\n")


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a whole file, streamed (``sha256``, ``sha1`` or ``git-blob-sha1``)."""
    if algorithm == "git-blob-sha1":
        return git_blob_sha1(path)
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1(path: str | Path) -> str:
    """SHA-1 over ``b"blob <size>\\0" + bytes``: the id git gives a file, which is what GitHub-hosted
    files (SqueezeNet's caffemodels) publish."""
    size = os.path.getsize(path)
    h = hashlib.sha1(f"blob {size}\0".encode())
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
