"""The one image loader: every picture that enters a zoo model (extraction, fine-tuning, prediction)
is opened here.

Owns: ``open_image`` (paths, bytes, file objects, PIL images, numpy arrays -> a PIL image in the mode the
model wants, with EXIF orientation applied and alpha composited on white), ``find_images`` (image files
in a folder, in the zoo's one natural order, ``zoo.registry.catalog.natural_key``), ``ImageDataset``
and ``collate_skip`` (a torch Dataset that reports unreadable files instead of crashing, also from
DataLoader worker processes).

Real folders hold rotated phone photos, palette GIFs with transparency, CMYK JPEGs from print shops,
16-bit PNGs from scanners, truncated downloads, files named ``.jpg`` that are not images, FIFOs and
device nodes, and now and then a decompression bomb. Each is handled on purpose and reported with the
file's name; nothing is silently replaced by a grey picture (``ImageFile.LOAD_TRUNCATED_IMAGES`` is
never touched), and only regular files are ever opened.

Imports PIL, numpy and (for the dataset, inside the functions, so this module stays torch-free)
torch; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from zoo.registry.catalog import natural_key

from .errors import ImageError

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "open_image",
    "find_images",
    "sniff_image",
    "natural_key",
    "ImageDataset",
    "Skipped",
    "Batch",
    "collate_skip",
]

# What a photo folder holds. Exotic formats (PSD, EPS, PDF, FITS, ...) are where Pillow's CVEs live;
# they are not opened at all.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")  # JPEG also opens MPO (phone photos)

# 50 megapixels: a 8660 x 5773 photo still opens; a bomb that would need gigabytes does not.
# Pillow's own limit (89 MP warn, 179 MP error) is left as it is for the rest of the process.
MAX_PIXELS = 50_000_000

# Leading bytes of the formats above (the "cheap check": 16 bytes instead of a decode).
_SIGNATURES: tuple[tuple[bytes, ...], ...] = (
    (b"\xff\xd8\xff",),  # JPEG
    (b"\x89PNG\r\n\x1a\n",),  # PNG
    (b"GIF87a", b"GIF89a"),
    (b"BM",),
    (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"),  # TIFF, BigTIFF
)

_ALPHA_MODES = {"RGBA", "LA", "RGBa", "La", "PA"}
_BACKGROUND = (255, 255, 255)


def sniff_image(head: bytes) -> bool:
    """True when ``head`` (a file's first 16 bytes) starts like an image format the zoo opens."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return any(head.startswith(sig) for group in _SIGNATURES for sig in group)


def find_images(folder: str | os.PathLike, *, recursive: bool = True,
                rejected: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Image files under ``folder``, in natural order of their path relative to it.

    A file counts when its extension is an image extension (``IMAGE_EXTENSIONS``, any case) and its
    first bytes look like one of those formats. Other files (``notes.txt``, ``.DS_Store``) are ignored
    silently; hidden files and folders (names starting with ``.``) are skipped.

    Args:
        folder: the folder to walk.
        recursive: also walk sub-folders (sorted the same way).
        rejected: if given, files that *claim* to be images (an image extension) but whose bytes are
            not, or that are not regular files (FIFOs, sockets, devices: never opened), are appended as
            ``(path, reason)``, so a caller can report them instead of losing them.

    Returns:
        The image paths, naturally sorted (``img2.jpg`` before ``img10.jpg``).

    Raises:
        ImageError: when ``folder`` is not a folder.

    Example:
        >>> find_images("photos/")            # doctest: +SKIP
        [PosixPath('photos/cat1.jpg'), PosixPath('photos/cat2.png'), PosixPath('photos/sub/dog.jpg')]
    """
    root = Path(folder)
    if not root.is_dir():
        raise ImageError(f"{root}: not a folder. Pass a folder of images, or image files.", path=str(root))
    found: list[Path] = []
    walker = os.walk(root) if recursive else [(str(root), [], os.listdir(root))]
    for dirpath, dirnames, filenames in walker:
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            problem = _sniff(path)
            if problem is None:
                found.append(path)
            elif problem and rejected is not None:
                rejected.append((path, problem))
    found.sort(key=lambda p: tuple(natural_key(part) for part in p.relative_to(root).parts))
    return found


def _sniff(path: Path) -> str | None:
    """None when ``path`` is a regular file that starts like an image; "" for a sub-folder (not a
    file at all); else why it is refused."""
    try:
        with _open_regular(path) as fh:
            head = fh.read(16)
    except IsADirectoryError:
        return ""
    except ImageError as err:
        return _reason(err, path)
    except OSError as err:
        return f"cannot be read: {err.strerror or err}"
    if sniff_image(head):
        return None
    return f"not an image: its bytes match no image format despite the {path.suffix} extension"


_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"))


def _open_regular(path: str | os.PathLike) -> Any:
    """Open a regular file for reading, refusing anything else before it is opened: a FIFO would
    block the open until something writes to it, and a device may have side effects.

    Raises:
        IsADirectoryError: ``path`` is a folder.
        ImageError: a FIFO, socket or device (named), a missing file, or a name the OS refuses.
        OSError: the file cannot be opened (permissions, ...).
    """
    where = os.fsdecode(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError as err:
        raise ImageError(f"{where}: no such file.", path=where) from err
    except ValueError as err:  # a NUL byte in the name
        raise ImageError(f"{where!r}: not a valid file name ({err}).", path=where) from err
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(21, "Is a directory", where)
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise ImageError(f"{where}: {kind}, not an image file; not opened.", path=where)
    # O_NONBLOCK: if the path was swapped for a FIFO since the check, the open still returns at once
    # (and fstat below refuses it); reads from a regular file are unaffected.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ImageError(f"{where}: not a regular file; not opened.", path=where)
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def _opened(fp: Any, where: str) -> Iterator[Any]:
    """A binary file object for ``fp``: a path is opened here (regular files only), a file object
    is used as it is (and left open)."""
    if not isinstance(fp, (str, os.PathLike)):
        yield fp
        return
    try:
        fh = _open_regular(fp)
    except IsADirectoryError as err:
        raise ImageError(f"{where}: a folder, not an image file.", path=where) from err
    except ImageError:
        raise
    except OSError as err:
        raise ImageError(f"{where}: cannot be read: {err.strerror or err}.", path=where) from err
    with fh:
        yield fh


def _describe(src: Any) -> str:
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    name = getattr(src, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(src, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return f"<{type(src).__name__}>"


def _from_array(arr: np.ndarray, where: str) -> Image.Image:
    """HWC / HW arrays: uint8 as is, floats taken as [0, 1], uint16 as 16-bit."""
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(f"{where}: an array image must be HxW or HxWxC with C in 1, 3, 4 (height, width, "
                         f"channels last), got shape {arr.shape}. Transpose a CHW array with "
                         "arr.transpose(1, 2, 0).", path=where)
    if arr.dtype == np.uint8:
        out = arr
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.size and (np.nanmin(arr) < -1e-3 or np.nanmax(arr) > 1 + 1e-3):
            raise ImageError(f"{where}: a float array image must hold values in [0, 1], got "
                             f"[{np.nanmin(arr):.3g}, {np.nanmax(arr):.3g}]. Divide by 255 for 0-255 data.",
                             path=where)
        out = np.round(np.clip(np.nan_to_num(arr), 0, 1) * 255).astype(np.uint8)
    elif arr.dtype == np.uint16:
        out = _scale16(arr.astype(np.float64))
    elif arr.dtype == np.bool_:
        out = arr.astype(np.uint8) * 255
    else:
        raise ImageError(f"{where}: array dtype {arr.dtype} is not an image type; use uint8 (0-255), "
                         "uint16, or float in [0, 1].", path=where)
    mode = "L" if out.ndim == 2 else ("RGB" if out.shape[2] == 3 else "RGBA")
    return Image.fromarray(np.ascontiguousarray(out), mode=mode)


def _scale16(values: np.ndarray) -> np.ndarray:
    """0-65535 -> 0-255, rounding (65535 / 257 = 255 exactly)."""
    return np.clip(np.round(values / 257.0), 0, 255).astype(np.uint8)


def _to_8bit(im: Image.Image) -> Image.Image:
    """I;16*, I and F images -> L. Pillow's ``convert("L")`` clips 16-bit values at 255 instead of
    scaling them, turning most scanner images white; this scales.

    ``I;16`` is 0-65535. ``I`` (32-bit) from PNG/TIFF holds 16-bit data: scaled from 0-65535 when its
    values fit, else by its own range. ``F``: [0, 1] data is scaled by 255, anything else by its range.
    """
    arr = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16"):
        return Image.fromarray(_scale16(arr), mode="L")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
    if im.mode == "I" and lo >= 0 and hi <= 65535:
        return Image.fromarray(_scale16(arr), mode="L")
    if im.mode == "F" and lo >= 0 and hi <= 1:
        return Image.fromarray(np.round(arr * 255).astype(np.uint8), mode="L")
    span = hi - lo if hi > lo else 1.0
    return Image.fromarray(np.round((arr - lo) / span * 255).astype(np.uint8), mode="L")


def _flatten_alpha(im: Image.Image) -> Image.Image:
    """Composite on white: dropping alpha would show whatever colour sat under transparent pixels
    (often black), which is not what a viewer shows."""
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, _BACKGROUND + (255,))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _convert(im: Image.Image, mode: str) -> Image.Image:
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in _ALPHA_MODES:
        grey = im.mode in ("LA", "La")
        im = _flatten_alpha(im)
        if grey:
            im = im.convert("L")
    elif im.mode.startswith("I") or im.mode == "F":
        im = _to_8bit(im)
    elif im.mode == "1":
        im = im.convert("L")
    # CMYK (Pillow undoes Adobe's inverted CMYK on decode), YCbCr, LAB, HSV, L -> mode.
    return im if im.mode == mode else im.convert(mode)


def open_image(src: Any, *, mode: str = "RGB", max_pixels: int | None = MAX_PIXELS,
               draft: int | None = None) -> Image.Image:
    """Open one image the way a model should see it.

    EXIF orientation is applied (a portrait phone photo comes out portrait); palette images with
    transparency, LA and RGBA are composited on white; CMYK becomes RGB; 16-bit and 32-bit greyscale
    are scaled to 8 bits (not clipped); 1-bit becomes L; then the image is converted to ``mode``.
    The pixels are fully decoded here, so a truncated file fails here and not later in a batch.

    Args:
        src: a path (str or PathLike), bytes, a binary file object, a PIL image, or a numpy array (HxW or
            HxWxC, C in 1/3/4; uint8, uint16, or float in [0, 1]).
        mode: ``"RGB"`` or ``"L"``.
        max_pixels: refuse images with more pixels than this (checked from the header, before any
            pixel is decoded). ``None`` keeps only Pillow's own limit.
        draft: JPEG only: let libjpeg decode at 1/2, 1/4 or 1/8 scale as long as both sides stay
            >= ``draft`` pixels. Much faster for big photos that are resized anyway, but the pixels
            differ slightly from a full decode followed by the resize (DCT scaling is not the same
            filter); off by default.

    Returns:
        A loaded PIL image in ``mode``.

    Raises:
        ImageError: naming the file, when it is missing, not an image, truncated or corrupt, of a
            format the zoo does not open, or larger than ``max_pixels``.

    Example:
        >>> im = open_image("photos/IMG_0001.jpg")   # doctest: +SKIP
        >>> im.mode, im.size                         # doctest: +SKIP
        ('RGB', (3024, 4032))
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', got {mode!r}")
    where = _describe(src)
    if isinstance(src, Image.Image):
        return _convert(ImageOps.exif_transpose(src) or src, mode)
    if isinstance(src, np.ndarray):
        return _convert(_from_array(src, where), mode)
    if isinstance(src, (bytes, bytearray, memoryview)):
        fp: Any = io.BytesIO(bytes(src))
    elif isinstance(src, (str, os.PathLike)) or hasattr(src, "read"):
        fp = src  # a path is opened by _opened (regular files only)
    else:
        raise ImageError(f"{where}: cannot open an image from a {type(src).__name__}; pass a path, bytes, a "
                         "file object, a PIL image or a numpy array.", path=where)
    try:
        with warnings.catch_warnings():
            # Pillow warns between its two bomb limits; a warning is not a refusal, so make it one.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _opened(fp, where) as fh, Image.open(fh, formats=_FORMATS) as im:
                w, h = im.size
                if max_pixels is not None and max(w, 1) * max(h, 1) > max_pixels:
                    raise ImageError(
                        f"{where}: {w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
                        "(a possible decompression bomb); not decoded. Pass max_pixels=None to "
                        "open_image for a trusted huge image, or downscale it first.", path=where)
                if draft and im.format in ("JPEG", "MPO"):
                    im.draft("RGB" if mode == "RGB" else "L", (draft, draft))
                im.load()
                im = ImageOps.exif_transpose(im) or im
                return _convert(im, mode)
    except ImageError:
        raise
    except FileNotFoundError as err:
        raise ImageError(f"{where}: no such file.", path=where) from err
    except UnidentifiedImageError as err:
        raise ImageError(f"{where}: not an image the zoo opens (JPEG, PNG, WebP, BMP, GIF, TIFF).",
                         path=where) from err
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{where}: refused as a possible decompression bomb ({err}).", path=where) from err
    except OSError as err:
        reason = str(err) or type(err).__name__
        if "truncated" in reason.lower():
            reason = f"truncated ({reason}); the file is incomplete: download or copy it again"
        raise ImageError(f"{where}: cannot be decoded: {reason}.", path=where) from err
    except (ValueError, SyntaxError, EOFError, IndexError, struct.error) as err:
        # Pillow's plugins raise these on corrupt headers.
        raise ImageError(f"{where}: corrupt image data: {err}.", path=where) from err


# ----------------------------------------------------------------------------------------------
# Dataset


@dataclass(frozen=True, slots=True)
class Skipped:
    """What ``ImageDataset`` returns for an item it cannot read: the index, the path and the reason.

    ``collate_skip`` drops these from the batch and hands them to the caller on ``Batch.failures``,
    which is how failures travel back from DataLoader worker processes.
    """

    index: int
    path: str
    reason: str


class Batch(tuple):
    """A collated ``(inputs, targets)`` pair (unpacks like one) that also carries ``failures``: the
    ``Skipped`` items dropped from it. ``inputs`` is None when every item failed."""

    failures: tuple[Skipped, ...]

    def __new__(cls, items: Iterable = (), failures: Iterable[Skipped] = ()):
        obj = super().__new__(cls, items)
        obj.failures = tuple(failures)
        return obj

    def __reduce__(self):  # keep failures when the batch is pickled from a worker
        return (Batch, (tuple(self), self.failures))


def collate_skip(batch: Sequence[Any]) -> Batch:
    """DataLoader ``collate_fn`` that drops unreadable items (``None`` or ``Skipped``) and reports them.

    Returns:
        ``Batch((inputs, targets), failures=...)``: ``inputs`` stacked, ``targets`` a tensor of labels
        (or of dataset indices when the dataset has no labels), ``failures`` the ``Skipped`` items.
        When every item failed, ``inputs`` and ``targets`` are None.

    Example:
        >>> loader = DataLoader(ImageDataset(paths, tf), batch_size=32, collate_fn=collate_skip)  # doctest: +SKIP
        >>> for batch in loader:                                                          # doctest: +SKIP
        ...     x, y = batch
        ...     for f in batch.failures: print("skipped", f.path, f.reason)
    """
    from torch.utils.data import default_collate

    good = [item for item in batch if item is not None and not isinstance(item, Skipped)]
    failures = [item for item in batch if isinstance(item, Skipped)]
    if not good:
        return Batch((None, None), failures)
    return Batch(default_collate(good), failures)


class ImageDataset:
    """A torch map-style Dataset over image files: item ``i`` is ``(transform(image), label)``, or
    ``(transform(image), i)`` without labels.

    An unreadable file does not raise: the item is a ``Skipped`` record, the failure is appended to
    ``failures`` (in this process), and ``collate_skip`` drops it from the batch while reporting it on
    ``Batch.failures`` (which also works across DataLoader worker processes).

    Args:
        paths: image paths (or anything ``open_image`` accepts).
        transform: PIL image -> tensor, e.g. ``model.transforms``.
        labels: one label per path, or None.
        mode: ``"RGB"`` or ``"L"``, passed to ``open_image``.
        draft: passed to ``open_image`` (JPEG reduced-size decoding); None decodes fully.

    Example:
        >>> ds = ImageDataset(find_images("photos/"), model.transforms)   # doctest: +SKIP
    """

    def __init__(self, paths: Sequence[Any], transform: Callable[[Image.Image], Any] | None,
                 labels: Sequence[Any] | None = None, mode: str = "RGB", *, draft: int | None = None):
        if labels is not None and len(labels) != len(paths):
            raise ValueError(f"{len(labels)} labels for {len(paths)} images; give one label per image")
        self.paths = list(paths)
        self.transform = transform
        self.labels = list(labels) if labels is not None else None
        self.mode = mode
        self.draft = draft
        self.failures: list[tuple[str, str]] = []

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Any, Any] | Skipped:
        src = self.paths[index]
        try:
            image = open_image(src, mode=self.mode, draft=self.draft)
            x = self.transform(image) if self.transform is not None else image
        except ImageError as err:
            skipped = Skipped(index, _describe(src), _reason(err, src))
            self.failures.append((skipped.path, skipped.reason))
            return skipped
        return x, (self.labels[index] if self.labels is not None else index)


def _reason(err: ImageError, src: Any) -> str:
    """The message without the leading path, which the failure record carries separately."""
    text = str(err)
    prefix = f"{_describe(src)}: "
    return text[len(prefix):] if text.startswith(prefix) else text
