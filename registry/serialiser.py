"""The serialiser: the one way registry entries are written, so that what is written is what is read.

Owns: ``entry_to_dict`` (an ``Entry`` as the JSON object ``parse_entry`` reads back; also what
``zoo info --json`` prints), ``render_entries`` (an entry file's text, checked by parsing it back) and
``write_entries`` (that text written atomically with the user's umask). The built-in files
(``tools/gen_registry.py``, ``tools/gen_zoo_entries.py``), user registry files, registered runs and
imported models are all written through these. Standard library only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .errors import RegistryError
from .records import Checksum, Entry, Preprocessing, Source
from .schema import SCHEMA_VERSION, parse_document, parse_entry

__all__ = ["checked", "entry_to_dict", "preprocessing_to_dict", "render_entries", "write_entries"]


def preprocessing_to_dict(p: Preprocessing) -> dict[str, Any]:
    """A ``Preprocessing`` as the JSON object ``parse_entry`` reads (every field, ``mean_file`` null if none)."""
    return {"input_size": list(p.input_size), "resize": p.resize, "interpolation": p.interpolation,
            "mean": list(p.mean), "std": list(p.std), "channel_order": p.channel_order, "scale": p.scale,
            "mean_file": p.mean_file, "crop_mode": p.crop_mode, "antialias": p.antialias}


def _checksum_to_dict(c: Checksum | None) -> dict | None:
    if c is None:
        return None
    out: dict[str, Any] = {("sha256-prefix" if c.prefix else c.algorithm): c.value}
    if c.trust != "publisher":
        out["trust"] = c.trust
    if c.note:
        out["note"] = c.note
    return out


def _source_to_dict(s: Source) -> dict:
    if s.url:
        return {"url": s.url}
    if s.package:
        return {"package": s.package}
    return {"hf": {"repo": s.hf_repo, "filename": s.hf_filename, "revision": s.hf_revision}}


def entry_to_dict(entry: Entry, *, presets: Mapping[str, Preprocessing] | None = None) -> dict[str, Any]:
    """The inverse of ``parse_entry``: every field, numbers as numbers and absent values as ``null``.

    This is what ``zoo info --json`` prints and what ``write_entries`` writes.

    Args:
        entry: the entry.
        presets: named shared preprocessing blocks; an entry whose preprocessing equals one gets its name.
    """
    p, h, a = entry.preprocessing, entry.head, entry.architecture
    shared = next((name for name, block in (presets or {}).items() if block == p), None)
    return {
        "name": entry.name, "aliases": list(entry.aliases), "default": entry.default,
        "description": entry.description,
        "architecture": {"library": a.library, "builder": a.builder, "kwargs": dict(a.kwargs)},
        "files": [{"role": f.role, "filename": f.filename, "format": f.format, "size": f.size,
                   "checksum": _checksum_to_dict(f.checksum), "sources": [_source_to_dict(s) for s in f.sources]}
                  for f in entry.files],
        "license": entry.license, "license_note": entry.license_note, "origin": entry.origin,
        "paper": entry.paper, "citation": entry.citation,
        "preprocessing": shared or preprocessing_to_dict(p),
        "head": {"num_classes": h.num_classes, "labels": list(h.labels) if isinstance(h.labels, tuple) else h.labels,
                 "classifier": h.classifier, "first_conv": h.first_conv},
        "metrics": [{"dataset": m.dataset, "metric": m.metric, "value": m.value, "protocol": m.protocol,
                     "source": m.source} for m in entry.metrics],
        "params": entry.params, "recipe": entry.recipe, "tags": list(entry.tags), "card": entry.card,
    }


def checked(entry: Entry) -> Entry:
    """``entry`` after every check a registry file gets: written as this module writes it and parsed back.

    For entries built in code from records (a library's catalogue, a registered run), so that they obey
    the same rules as a file (no option that reads files, no path out of its folder).

    Raises:
        RegistryError: the entry breaks a schema rule, or changes when written and read back.
    """
    path = entry.origin_file or "<built in code>"
    again = parse_entry(entry_to_dict(entry), path=path, index=0, collection=entry.collection)
    if entry_to_dict(again) != entry_to_dict(entry):
        raise RegistryError("changes when written and read back; build it from valid records", path=path,
                            entry=entry.name)
    return again


def render_entries(entries: Iterable[Entry], *, path: str | Path, comment: str = "",
                   presets: Mapping[str, Preprocessing] | None = None, collection: str = "local") -> str:
    """The text of an entry file holding ``entries``, checked by parsing it back.

    Raises:
        RegistryError: an entry does not survive the round trip (it breaks a schema rule).
    """
    entries = list(entries)
    doc: dict[str, Any] = {"schema": SCHEMA_VERSION}
    if comment:
        doc["comment"] = comment
    if presets:
        doc["preprocessing"] = {name: preprocessing_to_dict(block) for name, block in presets.items()}
    doc["entries"] = [entry_to_dict(e, presets=presets) for e in entries]
    text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    again = parse_document(json.loads(text), path=str(path), collection=collection)
    for before, after in zip(entries, again, strict=True):
        if entry_to_dict(before) != entry_to_dict(after):
            raise RegistryError("changes when written and read back; build entries with parse_entry",
                                path=str(path), entry=before.name)
    return text


def write_entries(path: str | Path, entries: Iterable[Entry], *, comment: str = "",
                  presets: Mapping[str, Preprocessing] | None = None, collection: str = "local") -> Path:
    """Write ``entries`` to the entry file ``path``, atomically and with the user's umask.

    The one way to write registry entries (a user registry file, a registered run, the built-in files).

    Args:
        path: the file to write (its folder is made).
        entries: the entries, e.g. from ``parse_entry``.
        comment: where the entries' facts come from.
        presets: named shared preprocessing blocks (see ``entry_to_dict``).
        collection: ``local`` for user registries, ``builtin`` for the package's own files.

    Returns:
        The path written.

    Raises:
        RegistryError: an entry breaks a schema rule, or the file cannot be written (the reason named).

    Example:
        >>> write_entries(tmp / "team.json", [parse_entry(obj, path="x", index=0)])  # doctest: +SKIP
    """
    path = Path(path)
    text = render_entries(entries, path=path, comment=comment, presets=presets, collection=collection)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)  # 0o666 & ~umask, as open() does
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, path)
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise RegistryError(f"cannot be written ({err.strerror}); check that its folder is writable and the "
                            "disk has room", path=str(path)) from err
    return path
