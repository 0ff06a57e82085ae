"""Errors raised by the core (fetching, weights, models, images).

Every error names the thing, says what is wrong and says what to do; attributes carry the facts.
The root, ``ZooError``, lives in ``zoo.registry.errors`` so the catalogue can raise it without torch.
"""

from __future__ import annotations

from zoo.registry.errors import RegistryError, UnknownModelError, ZooError, close_matches

__all__ = [
    "ZooError",
    "UnknownModelError",
    "RegistryError",
    "close_matches",
    "DownloadError",
    "ChecksumMismatchError",
    "OfflineError",
    "UnsafeWeightsError",
    "WeightsError",
    "UnknownLayerError",
    "ImageError",
    "DataError",
    "RunError",
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


class CaffeError(ZooError, ValueError):
    """A Caffe file is malformed or uses something the converter does not support."""


class ExportError(ZooError, RuntimeError):
    """A model cannot be exported as asked, its export does not match it, or an export folder cannot be
    used (missing files, an unknown format version)."""
