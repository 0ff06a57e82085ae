"""Image-folder data for fine-tuning: scanning, the stratified split and its manifest, the skip list.

Owns: ``scan`` (a folder of class folders, or ``train/``, ``val/`` and ``test/`` folders holding class
folders), ``Split`` (which file is in which part, with its class index and sha256, saved as
``split.json`` so a run can be reproduced and audited), ``load_split``, ``scan_labelled`` (for
``evaluate``: a folder labelled with a run's classes) and the class-balance report.

Every file is read once at scan time: its bytes are hashed (the feature cache keys on file contents)
and decoded with the shared loader (``zoo.images.open_image``); files that fail are skipped and listed
with the reason, never silently dropped. May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo._io import file_digest, write_json
from zoo.errors import DataError, ImageError, RunError

__all__ = ["Split", "Sample", "scan", "scan_labelled", "load_split", "balance_table", "SPLIT_NAMES",
           "skipped_tsv"]

SPLIT_NAMES = ("train", "val", "test")
# Folder names accepted for each part when a data folder is already split.
_PART_DIRS = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test",)}


@dataclass(frozen=True, slots=True)
class Sample:
    """One image: ``path`` relative to the data folder (POSIX), its class index and its sha256."""

    path: str
    label: int
    sha256: str = ""


@dataclass(slots=True)
class Split:
    """Which image belongs to which part. ``root`` is the data folder; paths in the parts are relative
    to it, so the manifest still holds when the folder moves.

    Attributes:
        root: the data folder.
        classes: class names; a sample's ``label`` indexes this list.
        parts: ``train``, ``val`` (and ``test``) lists of ``Sample``.
        skipped: ``(relative path, reason)`` for every file that could not be used.
        seed, valid_pct: how ``val`` was drawn (``valid_pct`` is None when the folder had ``val/``).
        layout: ``classes`` (one folder per class) or ``split`` (``train/`` and ``val/`` folders).
    """

    root: Path
    classes: list[str]
    parts: dict[str, list[Sample]]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seed: int = 0
    valid_pct: float | None = 0.2
    layout: str = "classes"

    @property
    def train(self) -> list[Sample]:
        return self.parts.get("train", [])

    @property
    def val(self) -> list[Sample]:
        return self.parts.get("val", [])

    @property
    def test(self) -> list[Sample]:
        return self.parts.get("test", [])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def paths(self, part: str) -> list[Path]:
        """Absolute paths of a part's images, in manifest order."""
        return [self.root / s.path for s in self.parts.get(part, [])]

    def labels(self, part: str) -> list[int]:
        return [s.label for s in self.parts.get(part, [])]

    def hashes(self, part: str) -> list[str]:
        return [s.sha256 for s in self.parts.get(part, [])]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class and part: ``{class: {"train": n, "val": n, ...}}``."""
        out = {name: {part: 0 for part in self.parts} for name in self.classes}
        for part, samples in self.parts.items():
            for s in samples:
                out[self.classes[s.label]][part] += 1
        return out

    def to_json(self) -> dict[str, Any]:
        """The manifest: every file with its class and digest, the seed and how the split was drawn."""
        return {
            "format": "zoo-split",
            "version": 1,
            "root": str(self.root),
            "layout": self.layout,
            "seed": self.seed,
            "valid_pct": self.valid_pct,
            "classes": list(self.classes),
            "counts": self.counts(),
            "parts": {part: [{"path": s.path, "label": s.label, "sha256": s.sha256} for s in samples]
                      for part, samples in self.parts.items()},
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
        }

    def save(self, path: str | Path) -> Path:
        """Write the manifest atomically (``split.json``)."""
        write_json(path, self.to_json())
        return Path(path)


def load_split(path: str | Path, *, root: str | Path | None = None, verify: bool = False) -> Split:
    """Read a manifest written by ``Split.save``.

    Args:
        path: the manifest file (in a run folder: ``RunDir.split``).
        root: the data folder, when it moved since the manifest was written.
        verify: re-hash every file and fail when one changed or is gone.

    Raises:
        RunError: the manifest is missing or malformed.
        DataError: ``verify`` found a missing or changed file.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text("utf-8"))
        parts = {part: [Sample(s["path"], int(s["label"]), s.get("sha256", "")) for s in samples]
                 for part, samples in data["parts"].items()}
        split = Split(root=Path(root) if root is not None else Path(data["root"]), classes=list(data["classes"]),
                      parts=parts, skipped=[(s["path"], s["reason"]) for s in data.get("skipped", [])],
                      seed=int(data.get("seed", 0)), valid_pct=data.get("valid_pct"),
                      layout=data.get("layout", "classes"))
    except FileNotFoundError as err:
        raise RunError(f"no split manifest at {path}: the run folder is incomplete "
                       "(start the run again without --resume).") from err
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise RunError(f"the split manifest {path} is damaged ({err}); start the run again without --resume.") from err
    if verify:
        for part in split.parts:
            for s in split.parts[part]:
                full = split.root / s.path
                if not full.is_file():
                    raise DataError(f"{full} is listed in {path} but is gone; restore it or start a new run.")
                if s.sha256 and file_digest(full) != s.sha256:
                    raise DataError(f"{full} changed since {path} was written; restore it or start a new run.")
    return split


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _check(path: Path) -> tuple[str, str | None]:
    """(sha256, None) for a usable image, ("", reason) for one the loader refuses."""
    from zoo.images import open_image

    try:
        data = path.read_bytes()
    except OSError as err:
        return "", f"cannot be read: {err.strerror or err}"
    try:
        open_image(data)
    except ImageError as err:
        return "", str(err).replace("\t", " ").replace("\n", " ")
    except Exception as err:  # noqa: BLE001 - a decoder bug on a user's file must not end the scan
        return "", f"{type(err).__name__}: {err}".replace("\t", " ").replace("\n", " ")
    return _sha256(data), None


def _class_dirs(folder: Path) -> list[Path]:
    from zoo.images import natural_key

    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: natural_key(p.name))


def _find_part(root: Path, part: str) -> Path | None:
    for name in _PART_DIRS[part]:
        if (root / name).is_dir():
            return root / name
    return None


def _scan_classes(root: Path, folder: Path, classes: Sequence[str] | None, *, what: str
                  ) -> tuple[list[str], list[Sample], list[tuple[str, str]], dict[str, int]]:
    """Every image under ``folder``'s class folders, checked. Returns (classes, samples, skipped,
    usable images per class)."""
    from zoo.images import find_images

    dirs = _class_dirs(folder)
    if not dirs:
        loose = find_images(folder, recursive=False)
        hint = (f" It holds {len(loose)} image(s) directly: move them into one sub-folder per class "
                f"(e.g. {folder}/cats/, {folder}/dogs/).") if loose else \
               f" Make one sub-folder per class (e.g. {folder}/cats/, {folder}/dogs/) holding its images."
        raise DataError(f"{what} {folder} has no class folders.{hint}")
    names = [d.name for d in dirs]
    if classes is None:
        classes = names
    else:
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise DataError(f"{what} {folder} has class folder(s) {unknown} that are not among the classes "
                            f"{list(classes)}; rename or remove them.")
    index = {name: i for i, name in enumerate(classes)}
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    usable = {name: 0 for name in names}
    for d in dirs:
        rejected: list[tuple[Path, str]] = []
        found = find_images(d, recursive=True, rejected=rejected)
        skipped.extend((path.relative_to(root).as_posix(), reason) for path, reason in rejected)
        for path in found:
            rel = path.relative_to(root).as_posix()
            digest, reason = _check(path)
            if reason is not None:
                skipped.append((rel, reason))
                continue
            samples.append(Sample(rel, index[d.name], digest))
            usable[d.name] += 1
    return list(classes), samples, skipped, usable


def _empty_class_error(folder: Path, usable: dict[str, int], skipped: list[tuple[str, str]]) -> DataError:
    empty = [name for name, n in usable.items() if n == 0]
    details = []
    for name in empty:
        reasons = [f"{p}: {r}" for p, r in skipped if f"/{name}/" in f"/{p}"]
        details.append(f"{folder / name}" + (f" (skipped {len(reasons)}: {'; '.join(reasons[:3])})"
                                            if reasons else " (no image files)"))
    return DataError(f"class(es) {empty} have no usable image: {', '.join(details)}. Add readable images "
                     "(JPEG, PNG, WebP, BMP, GIF, TIFF) to each class folder, or remove the folder.")


def _stratified(samples: list[Sample], num_classes: int, valid_pct: float, seed: int
                ) -> tuple[list[Sample], list[Sample]]:
    """Per class: shuffle (seeded), put ``round(n * valid_pct)`` in val, at least one on each side when
    the class has two or more images, so every class is seen in training and checked in validation."""
    from zoo.images import natural_key

    rng = random.Random(seed)
    by_class: dict[int, list[Sample]] = {c: [] for c in range(num_classes)}
    for s in samples:
        by_class[s.label].append(s)
    train: list[Sample] = []
    val: list[Sample] = []
    for c in range(num_classes):
        items = sorted(by_class[c], key=lambda s: natural_key(s.path))
        rng.shuffle(items)
        n = len(items)
        n_val = round(n * valid_pct)
        if n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        else:
            n_val = 0
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val


def scan(data_dir: str | Path, *, valid_pct: float = 0.2, seed: int = 0) -> Split:
    """Scan an image folder and split it.

    Two layouts are read: ``DATA/<class>/*.jpg`` (a stratified ``valid_pct`` split, drawn with
    ``seed``), or ``DATA/train/<class>/``, ``DATA/val/<class>/`` and optionally ``DATA/test/<class>/``
    (used as given; with ``train/`` alone, val is drawn from it). Images in sub-folders of a class
    folder belong to that class.

    Args:
        data_dir: the data folder.
        valid_pct: fraction of each class held out for validation (0 < valid_pct < 1).
        seed: the seed of the split.

    Returns:
        The split, with the skip list of files the loader refused.

    Raises:
        DataError: no such folder, no class folders, fewer than two classes, or a class with no usable
            image; each message names the folder or class and says what to do.

    Example:
        >>> split = scan("photos/", valid_pct=0.2, seed=0)      # doctest: +SKIP
        >>> split.classes, len(split.train), len(split.val)     # doctest: +SKIP
    """
    root = Path(data_dir).expanduser()
    if not root.exists():
        raise DataError(f"data folder {root} does not exist. Pass a folder holding one sub-folder of "
                        "images per class (or train/ and val/ folders that do).")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a folder. Pass a folder holding one sub-folder of images per class.")
    if not 0.0 < valid_pct < 1.0:
        raise DataError(f"valid_pct must be between 0 and 1 (exclusive), got {valid_pct}; 0.2 holds out a fifth.")
    root = root.resolve()
    train_dir = _find_part(root, "train")
    parts: dict[str, list[Sample]] = {}
    skipped: list[tuple[str, str]] = []
    if train_dir is not None:
        classes, samples, skipped, usable = _scan_classes(root, train_dir, None, what="training folder")
        _require_classes(train_dir, classes, usable, skipped)
        val_dir = _find_part(root, "val")
        if val_dir is not None:
            _, val, more, _ = _scan_classes(root, val_dir, classes, what="validation folder")
            skipped += more
            if not val:
                raise DataError(f"validation folder {val_dir} has no usable image; add images or remove it "
                                "(val is then drawn from train with valid_pct).")
            parts["train"], parts["val"] = samples, val
            layout, pct = "split", None
        else:
            parts["train"], parts["val"] = _stratified(samples, len(classes), valid_pct, seed)
            layout, pct = "split", valid_pct
        test_dir = _find_part(root, "test")
        if test_dir is not None:
            _, test, more, _ = _scan_classes(root, test_dir, classes, what="test folder")
            skipped += more
            parts["test"] = test
    else:
        classes, samples, skipped, usable = _scan_classes(root, root, None, what="data folder")
        _require_classes(root, classes, usable, skipped)
        parts["train"], parts["val"] = _stratified(samples, len(classes), valid_pct, seed)
        layout, pct = "classes", valid_pct
    if not parts["val"]:
        raise DataError(f"{root}: every class has a single image, so nothing is left for validation; "
                        "add at least two images per class.")
    return Split(root=root, classes=classes, parts=parts, skipped=skipped, seed=seed, valid_pct=pct,
                 layout=layout)


def _require_classes(folder: Path, classes: list[str], usable: dict[str, int],
                     skipped: list[tuple[str, str]]) -> None:
    if len(classes) < 2:
        raise DataError(f"{folder} has one class folder ({classes[0]!r}); a classifier needs at least two. "
                        "Add a folder of images for each other class.")
    if any(n == 0 for n in usable.values()):
        raise _empty_class_error(folder, usable, skipped)


def scan_labelled(data_dir: str | Path, classes: Sequence[str]) -> tuple[Split, str]:
    """The images of a folder labelled with known ``classes`` (for ``evaluate``).

    ``DATA/<class>/`` is used directly; a folder with ``test/`` (else ``val/``) uses that part. Class
    folders may be a subset of ``classes``.

    Returns:
        (a Split whose ``test`` part holds every usable image, the folder that was read).

    Raises:
        DataError: no such folder, no class folders, a class folder the run does not know, no image.
    """
    root = Path(data_dir).expanduser()
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder. Pass a folder with one "
                        "sub-folder per class, named as the run's classes.")
    root = root.resolve()
    folder = _find_part(root, "test") or _find_part(root, "val") or root
    _, samples, skipped, _ = _scan_classes(root, folder, list(classes), what="data folder")
    if not samples:
        raise DataError(f"{folder} holds no usable image in its class folders"
                        f"{f' (skipped {len(skipped)})' if skipped else ''}.")
    split = Split(root=root, classes=list(classes), parts={"test": samples}, skipped=skipped, layout="eval",
                  valid_pct=None)
    return split, str(folder)


def balance_table(split: Split) -> str:
    """A plain-text table of images per class and part, with the share of the largest class."""
    counts = split.counts()
    parts = list(split.parts)
    width = max(len("class"), *(len(c) for c in split.classes))
    lines = ["  ".join([f"{'class':<{width}}", *(f"{p:>6}" for p in parts)])]
    for name in split.classes:
        lines.append("  ".join([f"{name:<{width}}", *(f"{counts[name][p]:>6}" for p in parts)]))
    lines.append("  ".join([f"{'total':<{width}}", *(f"{len(split.parts[p]):>6}" for p in parts)]))
    train = [counts[c].get("train", 0) for c in split.classes]
    if train and min(train) > 0 and max(train) / min(train) >= 3:
        lines.append(f"note: classes are imbalanced (largest/smallest = {max(train) / min(train):.1f} in train); "
                     "accuracy alone may mislead: read per-class recall.")
    return "\n".join(lines)


def skipped_tsv(skipped: Iterable[tuple[str, str]]) -> str:
    """The skip list as TSV (``path<TAB>reason``) with a header."""
    rows = ["path\treason"] + [f"{p}\t{r}" for p, r in skipped]
    return "\n".join(rows) + "\n"
