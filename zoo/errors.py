"""Errors raised by the core (fetching, weights, models, images).

Every error names the thing, says what is wrong and says what to do; attributes carry the facts.
The root, ``ZooError``, lives in ``zoo.registry.errors`` so the catalogue can raise it without torch.
"""

from __future__ import annotations

import errno

from zoo.registry.errors import RegistryError, UnknownModelError, ZooError, close_matches

__all__ = [
    "ZooError",
    "UnknownModelError",
    "RegistryError",
    "close_matches",
    "DownloadError",
    "ChecksumMismatchError",
    "OfflineError",
    "MirrorError",
    "StorageError",
    "describe_os_error",
    "UnsafeWeightsError",
    "WeightsError",
    "UnknownLayerError",
    "ImageError",
    "DataError",
    "RunError",
    "ConfigError",
    "CaffeError",
    "ExportError",
]


class DownloadError(ZooError, OSError):
    """Every source of a file failed. ``attempts`` lists (source, reason) pairs."""

    def __init__(self, message: str, *, attempts: list[tuple[str, str]] | None = None):
        self.attempts = attempts or []
        super().__init__(message)


class ChecksumMismatchError(ZooError, OSError):
    """A file's digest is not the one its entry names; the file was deleted."""

    def __init__(self, message: str, *, path: str = "", expected: str = "", actual: str = "",
                 algorithm: str = "sha256"):
        self.path, self.expected, self.actual, self.algorithm = path, expected, actual, algorithm
        super().__init__(message)


class OfflineError(ZooError, OSError):
    """Offline mode is on and a needed file is not in the cache. ``missing`` lists the files."""

    def __init__(self, message: str, *, missing: list[str] | None = None):
        self.missing = missing or []
        super().__init__(message)


class MirrorError(DownloadError):
    """Some entries could not be mirrored; the others were, and the manifest lists both.

    ``failed`` maps entry names to reasons; ``written`` lists the mirror files that were written.
    """

    def __init__(self, message: str, *, failed: dict[str, str], written: list | None = None):
        self.failed, self.written = failed, written or []
        super().__init__(message, attempts=list(failed.items()))


class StorageError(ZooError, OSError):
    """This machine could not write (or read) a file: a full disk, a read-only folder, no permission.

    ``path`` names the file or folder; ``errno`` is the operating system's error number.
    """

    def __init__(self, message: str, *, path: str = "", errno: int | None = None):  # noqa: A002 (OSError's word)
        super().__init__(message)
        self.path, self.errno = path, errno

    def __str__(self) -> str:  # OSError would format (errno, strerror); ours is the message
        return str(self.args[0]) if self.args else ""

    @classmethod
    def from_os_error(cls, err: OSError, path: object = None, *, doing: str = "writing",
                      remedy: str = "set ZOO_HOME to a writable folder with free space") -> StorageError:
        """The one-line error for ``err``, which happened while ``doing`` something to ``path``."""
        return cls(describe_os_error(err, path, doing=doing, remedy=remedy), path=str(path or err.filename or ""),
                   errno=err.errno)


_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_READ_ONLY = (errno.EROFS,)
_DENIED = (errno.EACCES, errno.EPERM)


def describe_os_error(err: OSError, path: object = None, *, doing: str = "writing",
                      remedy: str = "choose a writable folder with free space") -> str:
    """One line naming the path, what went wrong and what to do, for an operating-system error.

    Args:
        err: the error.
        path: the file or folder concerned (defaults to the error's own ``filename``).
        doing: what was being done (``"writing"``, ``"downloading into"``...).
        remedy: what to do instead (said for a full disk, a read-only or a foreign folder).

    Returns:
        The message, without a trailing newline.
    """
    where = path if path is not None else err.filename
    where = f" {where}" if where else ""
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno in _FULL:
        return (f"No space left on the disk holding{where} ({doing}: {reason}). Free space there, or {remedy}, "
                f"then run the command again.")
    if err.errno in _READ_ONLY:
        return f"Cannot write{where}: it is on a read-only file system ({doing}). To fix it, {remedy}."
    if err.errno in _DENIED:
        return f"Permission denied for{where} ({doing}: {reason}). Make it writable by you, or {remedy}."
    return f"{reason}:{where or ' (no path given)'} ({doing}). Check that the path exists and is usable."


class WeightsError(ZooError, ValueError):
    """A weights file cannot be read or does not fit the network."""


class UnsafeWeightsError(WeightsError):
    """A pickle asked for something other than tensors and plain containers: refused, never run."""


class UnknownLayerError(ZooError, KeyError):
    """A layer name that the model does not have. ``valid`` lists the names it has."""

    def __init__(self, layer: str, valid: list[str], *, model: str = ""):
        self.layer, self.valid = layer, valid
        near = close_matches(layer, valid, n=5)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        shown = ", ".join(valid[:40]) + (" ..." if len(valid) > 40 else "")
        super().__init__(f"{model + ' has ' if model else ''}no layer {layer!r}.{hint} "
                         f"Valid layers: {shown} (`zoo info` / `Extractor.layers()` list them all).")


class ImageError(ZooError, ValueError):
    """An image cannot be used: unreadable, truncated, too large, or not an image. ``path`` names it."""

    def __init__(self, message: str, *, path: str = ""):
        self.path = path
        super().__init__(message)


class DataError(ZooError, ValueError):
    """A data folder or data set cannot be used as asked (no classes, one class, empty class...)."""


class RunError(ZooError, ValueError):
    """A run directory is missing, incomplete or inconsistent."""


class ConfigError(ZooError, ValueError):
    """A training or fine-tuning option the zoo cannot use. ``option`` names it; ``valid`` lists the
    accepted values or names, when there is a fixed set."""

    def __init__(self, message: str, *, option: str = "", valid: tuple[str, ...] | list[str] = ()):
        self.option, self.valid = option, tuple(valid)
        super().__init__(message)


class CaffeError(ZooError, ValueError):
    """A Caffe file is malformed or uses something the converter does not support."""


class ExportError(ZooError, RuntimeError):
    """A model cannot be exported as asked, its export does not match it, or an export folder cannot be
    used (missing files, an unknown format version)."""
