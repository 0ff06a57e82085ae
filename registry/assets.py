"""The files an entry names besides its downloads: its model card, its label set, its packaged sources.

Owns: where each may live and how it is read. A built-in entry's files live in the installed package
(``model_cards/``, ``registry/labels/``, the ``zoo`` package for ``package`` sources); a user entry's
live in its registry file's own folder. Each path is resolved and must stay inside that folder
(``rules.confine``: no absolute path, no ``..``, no symlink out), must be a regular file (a FIFO would
block), and is read as bounded UTF-8 text. Standard library only.
"""

from __future__ import annotations

import stat
from functools import lru_cache
from importlib import resources
from pathlib import Path

from .errors import RegistryError
from .records import Entry, Source
from .rules import confine

__all__ = ["card_text", "entry_folder", "labels_for", "package_file", "MAX_TEXT_BYTES"]

MAX_TEXT_BYTES = 4 * 2**20  # a card or a label list; far above any real one


def _package_folder(package: str) -> Path:
    return Path(str(resources.files(package)))


def entry_folder(entry: Entry) -> Path:
    """The folder an entry's card, label file and packaged sources are confined to.

    Built-in entries: the installed ``zoo`` package. User entries: the folder of the registry file that
    defines them.
    """
    if entry.collection == "local":
        return Path(entry.origin_file).resolve().parent
    return _package_folder("zoo")


def _read(path: Path, *, entry: Entry, field: str) -> str:
    where = dict(path=entry.origin_file or None, entry=entry.name, field=field)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise RegistryError(f"{path} is not a regular file", **where)
        if info.st_size > MAX_TEXT_BYTES:
            raise RegistryError(f"{path} is {info.st_size:,} bytes; at most {MAX_TEXT_BYTES:,} are read", **where)
        raw = path.read_bytes()
    except FileNotFoundError as err:
        hint = "reinstall the package" if entry.collection != "local" else "put it beside the registry file"
        raise RegistryError(f"{path} does not exist; {hint}", **where) from err
    except OSError as err:
        raise RegistryError(f"{path} cannot be read ({err.strerror})", **where) from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RegistryError(f"{path} is not UTF-8 text (offset {err.start}); save it as UTF-8", **where) from err


def card_text(entry: Entry) -> str:
    """The entry's model card (Markdown with front matter).

    Raises:
        RegistryError: the entry has no card, or its card is missing, unreadable or outside its folder.
    """
    if not entry.card:
        raise RegistryError(f"entry {entry.name!r} has no model card; `zoo info {entry.name}` shows what the "
                            "registry knows", entry=entry.name, field="card")
    root = entry_folder(entry) if entry.collection == "local" else _package_folder("zoo.model_cards")
    path = confine(root, entry.card, path=entry.origin_file or None, entry=entry.name, field="card")
    return _read(path, entry=entry, field="card")


def labels_for(entry: Entry) -> tuple[str, ...] | None:
    """The entry's class labels: inline, a built-in label set (``registry/labels/NAME.txt``), or for a user
    entry a ``.txt`` file beside its registry file, one label per line.

    Raises:
        RegistryError: the label set is missing, outside its folder, or does not hold ``num_classes`` labels.
    """
    labels = entry.head.labels
    if labels is None or isinstance(labels, tuple):
        return labels
    if entry.collection == "local" and labels.endswith(".txt"):
        path = confine(entry_folder(entry), labels, path=entry.origin_file, entry=entry.name, field="head.labels")
        found = tuple(line.strip() for line in _read(path, entry=entry, field="head.labels").splitlines()
                      if line.strip())
    else:
        found = _label_set(labels)
    if len(found) != entry.head.num_classes:
        raise RegistryError(f"label set {labels!r} has {len(found)} labels but head.num_classes is "
                            f"{entry.head.num_classes}", path=entry.origin_file or None, entry=entry.name,
                            field="head.labels")
    return found


@lru_cache(maxsize=8)
def _label_set(name: str) -> tuple[str, ...]:
    root = _package_folder("zoo.registry") / "labels"
    path = confine(root, f"{name}.txt", field="head.labels")
    if not path.is_file():
        raise RegistryError(f"label set {name!r} does not exist (expected registry/labels/{name}.txt)",
                            field="head.labels")
    text = path.read_text("utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def package_file(entry: Entry, source: Source) -> Path:
    """The file a ``package`` source names: in the ``zoo`` package for built-in entries, beside the registry
    file for user entries; resolved and checked to stay inside that folder.

    Raises:
        RegistryError: the path leads outside its folder.
    """
    return confine(entry_folder(entry), source.package or "", path=entry.origin_file or None, entry=entry.name,
                   field="files.sources.package")
