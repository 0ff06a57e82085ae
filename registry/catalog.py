"""The catalogue: every entry the zoo knows, looked up by name, alias or pattern.

Owns: loading the built-in entry files (``registry/entries/*.json``) and user registries
(``ZOO_REGISTRY`` paths and ``<config>/registry``), name ownership (a built-in name, alias or bare arch
is never taken over by a user entry), resolving ``arch`` to its default ``arch.tag``, fnmatch search with
natural sort, and the full torchvision/timm catalogues on request (imported lazily, only when asked).
A user registry file that cannot be read, parsed or added is skipped as a whole with a
``RegistryWarning``; the rest of the catalogue loads. Standard library only at import time.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from . import assets, env
from .errors import RegistryError, RegistryWarning, UnknownModelError, close_matches, shown
from .records import Entry
from .schema import parse_document

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
    "MAX_FILE_BYTES",
]

SOURCES = ("curated", "caffe", "torchvision", "timm", "zoo", "local", "all")
MAX_FILE_BYTES = 16 * 2**20  # a registry file is a few kB; this bounds what a hostile one can make us hold
MAX_DEPTH = 32  # an entry nests 5 levels deep; JSON nested past this is refused before it reaches the parser
_WARNED: dict = {}  # the warnings registry of skipped user files (see catalog())
_PARSED: OrderedDict[tuple, list[Entry] | RegistryError] = OrderedDict()  # see _load_user_file


def natural_key(text: str) -> tuple:
    """Sort key for the zoo's one natural order, of model names and file names alike: ``resnet18``
    before ``resnet101``, ``IMG1`` before ``img2`` before ``img10``. Runs of digits compare as numbers,
    the rest without regard to case; ties fall back to the exact text, so the order is total."""
    # re.split with a group puts the digit runs at the odd positions, so numbers only meet numbers.
    parts = re.split(r"(\d+)", text)
    return tuple(int(part) if i % 2 else part.casefold() for i, part in enumerate(parts)), text


def _finite(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text[:40]} is out of range")
    return value


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a registry may hold")


def _depth(data: object) -> int:
    """How deeply ``data`` nests, walked without recursion (a hostile file must not exhaust the stack)."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return deepest


def _decode(text: str, path: str) -> object:
    try:
        data = json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as err:
        raise RegistryError(f"is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})",
                            path=path) from err
    except RecursionError as err:
        raise RegistryError(f"nests deeper than JSON parsing allows; entries nest at most {MAX_DEPTH} levels",
                            path=path) from err
    except ValueError as err:  # an integer past Python's digit limit, a float that overflows, NaN
        raise RegistryError(f"holds a number that is out of range or not finite ({shown(str(err), 120)})",
                            path=path) from err
    if _depth(data) > MAX_DEPTH:
        raise RegistryError(f"nests deeper than {MAX_DEPTH} levels; an entry file is not that deep", path=path)
    return data


def _read_text(path: Path) -> str:
    where = str(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read forever
            raise RegistryError("is not a regular file; a registry file must be a plain JSON file", path=where)
        if info.st_size > MAX_FILE_BYTES:
            raise RegistryError(f"is {info.st_size:,} bytes; registry files are limited to {MAX_FILE_BYTES:,}",
                                path=where)
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise RegistryError(f"cannot be read ({err.strerror}); check its permissions", path=where) from err
    except ValueError as err:  # a NUL byte in the path
        raise RegistryError(f"cannot be read ({err})", path=where) from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RegistryError(f"is not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {err.start}); save it as "
                            "UTF-8", path=where) from err


def load_entry_file(path: str | Path, *, text: str | None = None, collection: str = "builtin") -> list[Entry]:
    """Parse one registry file (or ``text`` as if it were that file).

    Raises:
        RegistryError: naming the file (and entry and field when the fault is inside an entry): unreadable,
            not a regular file, too large, not UTF-8, not JSON, nested too deeply, numbers out of range, or
            an entry that breaks the schema.
    """
    path_s = str(path)
    data = _decode(_read_text(Path(path)) if text is None else text, path_s)
    try:
        return parse_document(data, path=path_s, collection=collection)
    except RecursionError as err:  # belt and braces: _depth bounds what the parser sees
        raise RegistryError("nests too deeply to check", path=path_s) from err


def _load_user_file(path: Path) -> list[Entry]:
    """``load_entry_file`` for a user file, parsed again only when the file changes (its inode, size or
    modification time), so that a program calling ``catalog()`` in a loop does not re-parse every file."""
    try:
        info = path.stat()
        key = (str(path), info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    except (OSError, ValueError):
        key = None
    if key is None or key not in _PARSED:
        try:
            result: list[Entry] | RegistryError = load_entry_file(path, collection="local")
        except RegistryError as err:
            result = err
        if key is None:
            _PARSED.clear()
        else:
            _PARSED[key] = result
            while len(_PARSED) > 64:
                _PARSED.popitem(last=False)
    else:
        result = _PARSED[key]
        _PARSED.move_to_end(key)
    if isinstance(result, RegistryError):
        raise result
    return result


def _user_files() -> tuple[list[Path], list[RegistryError]]:
    """The user's registry files in order, and a problem for each ``ZOO_REGISTRY`` path that is missing."""
    files: list[Path] = []
    problems: list[RegistryError] = []
    config_folder = env.config_dir() / "registry"
    for path in env.registry_paths():
        if path.is_dir():
            # os.walk does not follow symlinked folders: a link loop cannot make the walk endless.
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(Path(folder) / n for n in sorted(names) if n.endswith(".json") and not n.startswith("."))
        elif path.exists():
            files.append(path)
        elif path != config_folder:
            problems.append(RegistryError("does not exist; fix ZOO_REGISTRY (a list of files and folders)",
                                          path=str(path)))
    return files, problems


@dataclass(frozen=True, slots=True)
class ExternalName:
    """A name from the full torchvision or timm catalogue that has no curated entry."""

    name: str
    source: str

    @property
    def arch(self) -> str:
        return self.name.split(".", 1)[0]


class Catalog:
    """Entries by name with aliases and default tags; duplicates are errors, never overwrites.

    Ownership: a name, an alias and a bare arch belong to the first entry that has them, and built-in
    entries come first, so a user entry can never take over a built-in name, alias or bare arch (nor
    change which tag a built-in arch resolves to). ``skipped`` lists the user files that were refused.
    """

    def __init__(self, entries: Iterable[Entry] = ()):
        self._entries: dict[str, Entry] = {}
        self._aliases: dict[str, str] = {}
        self._defaults: dict[str, str] = {}
        self._by_arch: dict[str, list[str]] = {}
        self.skipped: list[RegistryError] = []
        for entry in entries:
            self._add(entry)

    def _state(self) -> tuple:
        return (dict(self._entries), dict(self._aliases), dict(self._defaults),
                {arch: list(names) for arch, names in self._by_arch.items()})

    def copy(self) -> Catalog:
        """A catalogue with the same entries, to add files to without changing this one."""
        other = Catalog()
        other._entries, other._aliases, other._defaults, other._by_arch = self._state()
        other.skipped = list(self.skipped)
        return other

    def add_file(self, entries: Sequence[Entry]) -> None:
        """Add one file's entries, all or none.

        Raises:
            RegistryError: an entry clashes with one already in the catalogue (nothing of the file is added).
        """
        saved = self._state()
        try:
            for entry in entries:
                self._add(entry)
        except RegistryError:
            self._entries, self._aliases, self._defaults, self._by_arch = saved
            raise

    def _owner(self, key: str) -> Entry | None:
        """The entry that owns ``key`` as a name, an alias or a bare arch."""
        name = key if key in self._entries else self._aliases.get(key) or self._bare(key)
        if name is None and self._by_arch.get(key):
            name = self._by_arch[key][0]
        return self._entries.get(name) if name else None

    def _add(self, entry: Entry) -> None:
        def clash(what: str, other: Entry, field: str = "name") -> RegistryError:
            return RegistryError(f"{what} is already used by {other.name!r} in {shown(other.origin_file)}; names, "
                                 "aliases and bare arches belong to the entry that has them first (a user registry "
                                 "cannot take a built-in one): choose another", path=entry.origin_file,
                                 entry=entry.name, field=field)

        if entry.name in self._entries or entry.name in self._aliases:
            raise clash(f"name {entry.name!r}", self._owner(entry.name))
        for alias in entry.aliases:
            if alias in (entry.name, entry.arch) or entry.aliases.count(alias) > 1:
                raise RegistryError(f"alias {alias!r} repeats the entry's own name, arch or another alias",
                                    path=entry.origin_file, entry=entry.name, field="aliases")
            owner = self._owner(alias)
            if owner is not None:
                raise clash(f"alias {alias!r}", owner, "aliases")
        if entry.default:
            self._check_default(entry, clash)
        self._entries[entry.name] = entry
        self._by_arch.setdefault(entry.arch, []).append(entry.name)
        for alias in entry.aliases:
            self._aliases[alias] = entry.name
        if entry.default:
            self._defaults[entry.arch] = entry.name

    def _check_default(self, entry: Entry, clash) -> None:
        if entry.arch in self._aliases:  # the bare arch resolves to that alias's entry: this default could not
            raise clash(f"arch {entry.arch!r}", self._owner(entry.arch), "default")
        if entry.arch in self._defaults:
            current = self._entries[self._defaults[entry.arch]]
            raise RegistryError(f"arch {entry.arch!r} already has a default tag ({current.name!r} in "
                                f"{shown(current.origin_file)})", path=entry.origin_file, entry=entry.name,
                                field="default")
        builtin = [n for n in self._by_arch.get(entry.arch, []) if self._entries[n].collection != "local"]
        if entry.collection == "local" and builtin:
            raise clash(f"bare arch {entry.arch!r} (default: true)", self._entries[builtin[0]], "default")

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(sorted(self._entries.values(), key=lambda e: natural_key(e.name)))

    def __contains__(self, name: str) -> bool:
        return self.resolve(name) is not None

    def names(self) -> list[str]:
        return [e.name for e in self]

    def _bare(self, arch: str) -> str | None:
        """The tag a bare arch resolves to: its default, else its only tag (built-in tags counted first)."""
        if arch in self._defaults:
            return self._defaults[arch]
        names = self._by_arch.get(arch, [])
        builtin = [n for n in names if self._entries[n].collection != "local"]
        pool = builtin or names
        return pool[0] if len(pool) == 1 else None

    def resolve(self, name: str) -> str | None:
        """The full ``arch.tag`` a name, alias or bare arch stands for, or None."""
        key = name.strip().lower()
        if key in self._entries:
            return key
        if key in self._aliases:
            return self._aliases[key]
        return self._bare(key)

    def get(self, name: str) -> Entry:
        """The entry a name, alias or bare arch stands for.

        Raises:
            UnknownModelError: with close matches, and the user files that were skipped.
        """
        resolved = self.resolve(name)
        if resolved is None:
            pool = [*self._entries, *self._aliases, *self._by_arch]
            raise UnknownModelError(name, close_matches(name.strip().lower(), pool),
                                    skipped=[err.path or "?" for err in self.skipped])
        return self._entries[resolved]

    def default_tag(self, arch: str) -> str | None:
        return self._bare(arch)

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
    if not any(ch in pattern for ch in "*?["):  # a bare word: a substring test is what `*word*` matches
        return any(pattern in n for n in names)
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


@lru_cache(maxsize=1)
def _builtin_catalog() -> Catalog:
    return Catalog(builtin_entries())


def catalog() -> Catalog:
    """Built-in entries plus the user's registries (checked each call: a changed file is read again).

    A user file that cannot be loaded, or that clashes with an entry already loaded, is skipped whole: a
    ``RegistryWarning`` names it and says why (once per process for the same file and reason), and
    ``Catalog.skipped`` keeps the error; built-in lookups and the other files are unaffected.
    """
    cat = _builtin_catalog().copy()
    files, problems = _user_files()
    for path in files:
        try:
            cat.add_file(_load_user_file(path))
        except RegistryError as err:
            problems.append(err)
    for err in problems:
        cat.skipped.append(err)
        # One registry for every call site: a command that reads the catalogue twice warns once per problem
        # (under the default filter; "always" and "error" filters still apply).
        # The filename is a pseudo-name on purpose: Python's warning display reads the named file's source
        # line, and a registry path may be a FIFO or a huge file.
        warnings.warn_explicit(RegistryWarning(err), RegistryWarning, filename="<zoo registry>", lineno=0,
                               module=__name__, registry=_WARNED)
    return cat


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
    libraries: seconds the first time in a process; the installed libraries do not change while it runs).

    torchvision names are ``builder.tv_<weights enum member>`` in lower case, for its classification
    builders; timm names are timm's own pretrained ``arch.tag`` names, feature backbones included, less
    those whose weights or preprocessing the zoo cannot have its way (the rules of
    ``zoo.external.timm_refusal``, restated here because the registry imports nothing above it; a test
    checks that the two agree on every name).
    """
    names = _external_names(source)
    return [n for n in names if _matches(pattern, (n.name,))] if pattern else list(names)


@lru_cache(maxsize=4)
def _external_names(source: str) -> tuple[ExternalName, ...]:
    out: list[ExternalName] = []
    if source in ("torchvision", "all"):
        out.extend(_torchvision_names())
    if source in ("timm", "all"):
        out.extend(_timm_names())
    return tuple(sorted(out, key=lambda n: natural_key(n.name)))


@lru_cache(maxsize=1)
def _torchvision_names() -> tuple[ExternalName, ...]:
    import torchvision.models as tvm  # heavy: only on request

    out = []
    for builder in tvm.list_models(module=tvm):
        try:
            weights = tvm.get_model_weights(builder)
        except (ValueError, KeyError):
            continue
        for member in weights:
            if re.search(r"-[0-9a-f]{8,}\.pth$", member.url):  # the checksum prefix the zoo verifies
                out.append(ExternalName(f"{builder}.tv_{member.name.lower()}", "torchvision"))
    return tuple(out)


def _timm_loadable(name: str, cfg: dict) -> bool:
    import math

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


@lru_cache(maxsize=1)
def _timm_names() -> tuple[ExternalName, ...]:
    import timm  # heavy: only on request

    return tuple(ExternalName(n, "timm") for n in timm.list_pretrained()
                 if _timm_loadable(n, timm.models.get_pretrained_cfg(n).to_dict()))


def labels_for(entry: Entry) -> tuple[str, ...] | None:
    """The entry's class labels: inline, a built-in label set, or a user entry's label file (see ``assets``)."""
    return assets.labels_for(entry)
