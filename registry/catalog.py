"""The catalogue: every entry the zoo knows, looked up by name, alias or pattern.

Owns: loading the built-in entry files (``registry/entries/*.json``) and user registries
(``ZOO_REGISTRY`` paths and ``<config>/registry``), resolving ``arch`` to its default ``arch.tag``,
fnmatch search with natural sort, label sets, and the full torchvision/timm catalogues on request
(imported lazily, only when asked). Standard library only at import time.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from . import env
from .errors import RegistryError, UnknownModelError, close_matches
from .schema import SCHEMA_VERSION, Entry, parse_entry

__all__ = [
    "Catalog",
    "ExternalName",
    "builtin_entries",
    "catalog",
    "get_entry",
    "list_models",
    "list_external",
    "load_entry_file",
    "natural_key",
    "labels_for",
    "SOURCES",
]

SOURCES = ("curated", "caffe", "torchvision", "timm", "zoo", "local", "all")


def natural_key(text: str) -> tuple:
    """Sort key for the zoo's one natural order, of model names and file names alike: ``resnet18``
    before ``resnet101``, ``IMG1`` before ``img2`` before ``img10``. Runs of digits compare as numbers,
    the rest without regard to case; ties fall back to the exact text, so the order is total."""
    # re.split with a group puts the digit runs at the odd positions, so numbers only meet numbers.
    parts = re.split(r"(\d+)", text)
    return tuple(int(part) if i % 2 else part.casefold() for i, part in enumerate(parts)), text


# Top-level keys of an entry file; "comment" says where the file's facts come from.
_FILE_FIELDS = frozenset({"schema", "comment", "preprocessing", "entries"})


def load_entry_file(path: str | Path, *, text: str | None = None, collection: str = "builtin") -> list[Entry]:
    """Parse one registry file.

    Raises:
        RegistryError: naming the file (and entry and field when the fault is inside an entry).
    """
    path_s = str(path)
    try:
        data = json.loads(text if text is not None else Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RegistryError(f"is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})",
                            path=path_s) from err
    except OSError as err:
        raise RegistryError(f"cannot be read: {err.strerror}", path=path_s) from err
    if isinstance(data, list):  # a bare list of entries is accepted for hand-written user files
        data = {"schema": SCHEMA_VERSION, "entries": data}
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise RegistryError("must be a JSON object with an 'entries' list", path=path_s, field="entries")
    unknown = sorted(set(data) - _FILE_FIELDS)
    if unknown:
        raise RegistryError(f"has an unknown top-level field {unknown[0]!r} "
                            f"(allowed: {', '.join(sorted(_FILE_FIELDS))})", path=path_s, field=unknown[0])
    if data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise RegistryError(f"has schema {data.get('schema')!r}; this zoo reads schema {SCHEMA_VERSION}",
                            path=path_s, field="schema")
    presets = data.get("preprocessing", {})
    if not isinstance(presets, dict):
        raise RegistryError("must map names to preprocessing blocks", path=path_s, field="preprocessing")
    return [parse_entry(obj, path=path_s, index=i, presets=presets, collection=collection)
            for i, obj in enumerate(data["entries"])]


def _user_files() -> list[Path]:
    files: list[Path] = []
    for path in env.registry_paths():
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.json")))
        elif path.is_file():
            files.append(path)
    return files


@dataclass(frozen=True, slots=True)
class ExternalName:
    """A name from the full torchvision or timm catalogue that has no curated entry."""

    name: str
    source: str

    @property
    def arch(self) -> str:
        return self.name.split(".", 1)[0]


class Catalog:
    """Entries by name with aliases and default tags; duplicates are errors, never overwrites."""

    def __init__(self, entries: Iterable[Entry]):
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._defaults: dict[str, str] = {}
        for entry in entries:
            self._add(entry)
        # An arch with one tag resolves to it even when no entry says default.
        by_arch: dict[str, list[str]] = {}
        for name in self._entries:
            by_arch.setdefault(name.split(".", 1)[0], []).append(name)
        for arch, names in by_arch.items():
            if arch not in self._defaults and len(names) == 1:
                self._defaults[arch] = names[0]

    def _add(self, entry: Entry) -> None:
        def clash(what: str, other: str) -> RegistryError:
            return RegistryError(f"{what} is already used by {other}; names and aliases must be unique "
                                 f"(a user registry cannot overwrite an entry: give it another tag)",
                                 path=entry.origin_file, entry=entry.name, field="name")

        if entry.name in self._entries or entry.name in self._aliases:
            existing = self._entries.get(entry.name) or self._entries[self._aliases[entry.name]]
            raise clash(f"name {entry.name!r}", f"{existing.name!r} in {existing.origin_file}")
        for alias in entry.aliases:
            if alias in self._entries or alias in self._aliases or alias == entry.name:
                raise clash(f"alias {alias!r}", "another entry")
        if entry.default:
            if entry.arch in self._defaults:
                raise RegistryError(f"arch {entry.arch!r} already has a default tag "
                                    f"({self._defaults[entry.arch]!r})", path=entry.origin_file,
                                    entry=entry.name, field="default")
            self._defaults[entry.arch] = entry.name
        self._entries[entry.name] = entry
        for alias in entry.aliases:
            self._aliases[alias] = entry.name

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(sorted(self._entries.values(), key=lambda e: natural_key(e.name)))

    def __contains__(self, name: str) -> bool:
        return self.resolve(name) is not None

    def names(self) -> list[str]:
        return [e.name for e in self]

    def resolve(self, name: str) -> str | None:
        """The full ``arch.tag`` a name, alias or bare arch stands for, or None."""
        key = name.strip().lower()
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        return self._defaults.get(key)

    def get(self, name: str) -> Entry:
        """The entry a name, alias or bare arch stands for.

        Raises:
            UnknownModelError: with close matches.
        """
        resolved = self.resolve(name)
        if resolved is None:
            pool = [*self._entries, *self._aliases, *self._defaults]
            raise UnknownModelError(name, close_matches(name.strip().lower(), pool))
        return self._entries[resolved]

    def default_tag(self, arch: str) -> str | None:
        return self._defaults.get(arch)

    def search(self, pattern: str | None = None, *, source: str = "curated") -> list[Entry]:
        """Entries whose name or alias matches the fnmatch ``pattern`` (a bare word matches as a
        substring), from ``source``: ``curated`` (every built-in and local entry), a library name,
        ``local``, or ``all``."""
        out = []
        for entry in self:
            if source not in ("curated", "all") and entry.source != source:
                continue
            if pattern and not _matches(pattern, (entry.name, *entry.aliases)):
                continue
            out.append(entry)
        return out


def _matches(pattern: str, names: Iterable[str]) -> bool:
    pattern = pattern.lower()
    if not any(ch in pattern for ch in "*?["):
        pattern = f"*{pattern}*"
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


@lru_cache(maxsize=1)
def builtin_entries() -> tuple[Entry, ...]:
    """Every entry shipped with the package (``registry/entries/*.json``), without user registries.

    Example:
        >>> any(e.name == "bvlc_googlenet.caffe_in1k" for e in builtin_entries())
        True
    """
    entries: list[Entry] = []
    root = resources.files("zoo.registry") / "entries"
    for item in sorted(root.iterdir(), key=lambda p: p.name):
        if item.name.endswith(".json"):
            entries.extend(load_entry_file(f"registry/entries/{item.name}", text=item.read_text("utf-8")))
    return tuple(entries)


def catalog() -> Catalog:
    """Built-in entries plus the user's registries (re-read each call: they are small files)."""
    entries = list(builtin_entries())
    for path in _user_files():
        entries.extend(load_entry_file(path, collection="local"))
    return Catalog(entries)


def get_entry(name: str) -> Entry:
    """The entry a name, alias or bare arch stands for (see ``Catalog.get``)."""
    return catalog().get(name)


def list_models(pattern: str | None = None, *, source: str = "curated") -> list[Entry]:
    """Curated entries matching ``pattern``; never imports torch.

    Example:
        >>> [e.name for e in list_models("bvlc_*")][:2]
        ['bvlc_alexnet.caffe_in1k', 'bvlc_googlenet.caffe_in1k']
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
    return catalog().search(pattern, source=source)


def list_external(pattern: str | None = None, *, source: str = "all") -> list[ExternalName]:
    """Names in the full torchvision and/or timm catalogues that the zoo can load (imports those
    libraries: seconds).

    torchvision names are ``builder.tv_<weights enum member>`` in lower case, for its classification
    builders; timm names are timm's own pretrained ``arch.tag`` names, feature backbones included, less
    those whose weights or preprocessing the zoo cannot have its way (the rules of
    ``zoo.external.timm_refusal``, restated here because the registry imports nothing above it; a test
    checks that the two agree on every name).
    """
    out: list[ExternalName] = []
    if source in ("torchvision", "all"):
        import torchvision.models as tvm  # heavy: only on request

        for builder in tvm.list_models(module=tvm):
            try:
                weights = tvm.get_model_weights(builder)
            except (ValueError, KeyError):
                continue
            for member in weights:
                if re.search(r"-[0-9a-f]{8,}\.pth$", member.url):  # the checksum prefix the zoo verifies
                    out.append(ExternalName(f"{builder}.tv_{member.name.lower()}", "torchvision"))
    if source in ("timm", "all"):
        import math

        import timm  # heavy: only on request

        def loadable(name: str, cfg: dict) -> bool:
            crop_pct = cfg.get("crop_pct") or 0.875
            _, height, width = cfg["input_size"]
            scale = (math.floor(height / crop_pct), math.floor(width / crop_pct))
            longer = max(height, width)
            same_scale = height == width or scale == (math.floor(height * max(scale) / longer),
                                                      math.floor(width * max(scale) / longer))
            tokens = cfg["architecture"].endswith("_enc")  # an image encoder for a language model: no pooled vector
            combined = isinstance(cfg.get("classifier"), (tuple, list)) and name.startswith(("volo_", "efficientvim_"))
            return (str(cfg.get("hf_hub_id") or "").startswith("timm/") and not cfg.get("hf_hub_filename")
                    and crop_pct <= 1.0 and same_scale and not combined and not tokens
                    and cfg.get("interpolation") in ("nearest", "bilinear", "bicubic"))

        out.extend(ExternalName(n, "timm") for n in timm.list_pretrained()
                   if loadable(n, timm.models.get_pretrained_cfg(n).to_dict()))
    if pattern:
        out = [n for n in out if _matches(pattern, (n.name,))]
    return sorted(out, key=lambda n: natural_key(n.name))


def labels_for(entry: Entry) -> tuple[str, ...] | None:
    """The entry's class labels, reading a named label set from ``registry/labels/NAME.txt``."""
    labels = entry.head.labels
    if labels is None or isinstance(labels, tuple):
        return labels
    return _label_set(labels)


@lru_cache(maxsize=8)
def _label_set(name: str) -> tuple[str, ...]:
    item = resources.files("zoo.registry") / "labels" / f"{name}.txt"
    try:
        text = item.read_text("utf-8")
    except FileNotFoundError as err:
        raise RegistryError(f"label set {name!r} does not exist (expected registry/labels/{name}.txt)",
                            field="head.labels") from err
    return tuple(line.strip() for line in text.splitlines() if line.strip())
