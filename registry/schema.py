"""The registry's schema: plain JSON in, validated frozen records out.

Owns: the schema's constants (naming rule, licence allow-list, formats, bounds), and ``parse_entry`` and
``parse_document``, which turn JSON into ``Entry`` records or raise a one-line ``RegistryError`` naming the
file, the entry and the field. The record types live in ``records`` and are re-exported here; what an
entry may ask of a library or of the file system is ``rules``; writing entries back is ``serialiser``.
Standard library only.

An entry file is JSON::

    {"schema": 1,
     "comment": "where these facts come from",
     "preprocessing": {"imagenet_rgb_224": {...}},     # named shared blocks, referenced by name
     "entries": [{"name": "resnet50.tv_in1k", ...}]}
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from . import rules
from .errors import RegistryError
from .records import Architecture, Checksum, Entry, FileSpec, Head, Metric, Preprocessing, Source

__all__ = [
    "SCHEMA_VERSION", "NAME_RE", "LICENSES", "CROP_MODES",
    "Architecture", "Checksum", "Source", "FileSpec", "Preprocessing", "Head", "Metric", "Entry",
    "parse_entry", "parse_document",
]

SCHEMA_VERSION = 1
# arch.tag: lower-case arch, a dot, a tag. Arch and tag may hold letters, digits, '_' and '-'. Names and
# file names become path components of the cache (files/<name>/<filename>.lock): well under 255 bytes.
NAME_RE = re.compile(r"^(?=.{3,128}$)[a-z0-9][a-z0-9_\-]*\.[a-z0-9][a-z0-9_\-]*$")
ALIAS_RE = re.compile(r"^[a-z0-9][a-z0-9_\-.]{0,127}$")
MAX_FILENAME_BYTES = 200
LABEL_SET_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")  # a built-in label set: registry/labels/NAME.txt
LIBRARIES = ("torchvision", "timm", "caffe", "zoo", "run")
# SPDX ids where one exists; the Caffe zoo's own words where it does not.
LICENSES = frozenset({
    "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "MIT", "CC-BY-4.0", "CC-BY-NC-4.0",
    "CC-BY-SA-4.0", "bvlc-unrestricted", "non-commercial", "unknown", "other",
})
CHECKSUM_ALGORITHMS = ("sha256", "sha1", "git-blob-sha1")
TRUST_LEVELS = ("publisher", "third-party", "suspect", "local")
FORMATS = ("safetensors", "pth", "caffemodel", "binaryproto", "prototxt", "json")
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
CHANNEL_ORDERS = ("RGB", "BGR", "L")
# How an image reaches the input size (timm's ``crop_mode`` words): ``center`` resizes the shorter side
# to ``resize`` and centre-crops; ``squash`` resizes both sides (aspect not kept) to ``resize`` scaled to
# the crop's shape, then centre-crops (``resize`` equal to the input size feeds the whole image, as
# Caffe feeds its small nets); ``border`` resizes the longer side and pads to the input size.
CROP_MODES = ("center", "squash", "border")
# Bounds that keep a hostile number from reaching an allocation: sides, channels, classes, counts.
MAX_SIDE = 16_384
MAX_CHANNELS = 1_024
MAX_CLASSES = 10_000_000
MAX_INT = 2**53  # JSON's exact integers

_FILE_FIELDS = frozenset({"schema", "comment", "preprocessing", "entries"})
_ENTRY_FIELDS = ("name", "aliases", "default", "description", "architecture", "files", "license", "license_note",
                 "origin", "paper", "citation", "preprocessing", "head", "metrics", "params", "recipe", "tags",
                 "card")
_PREPROCESSING_FIELDS = ("input_size", "resize", "interpolation", "mean", "std", "channel_order", "scale",
                         "mean_file", "crop_mode", "antialias")
_HEX = re.compile(r"^[0-9a-f]+$")
_DIGEST_LENGTHS = {"sha256": 64, "sha1": 40, "git-blob-sha1": 40}
_HF_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95})?$")
_HF_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,254}$")


# ----------------------------------------------------------------------------------------------
# Parsing. Every check raises RegistryError(path=, entry=, field=).


class _Ctx:
    def __init__(self, path: str, entry: str, collection: str):
        self.path, self.entry, self.collection = path, entry, collection

    def fail(self, field_name: str, message: str) -> RegistryError:
        return RegistryError(message, path=self.path, entry=self.entry, field=field_name)


def _take(ctx: _Ctx, obj: dict, key: str, kind: type | tuple[type, ...], *, required: bool = True,
          default: Any = None, prefix: str = "") -> Any:
    if key not in obj or obj[key] is None:
        if required:
            raise ctx.fail(prefix + key, "is required")
        return default
    value = obj[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value) if abs(value) <= MAX_INT else math.inf
    # bool is an int in Python; a registry that says `"size": true` is wrong, not 1.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ctx.fail(prefix + key, f"must be {expected}, got {type(value).__name__} {rules.brief(value)}")
    problem = None
    if isinstance(value, float) and not math.isfinite(value):
        problem = f"must be a finite number, got {rules.brief(value)}"
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        problem = f"must be at most 2**53 in size, got {rules.brief(value)}"
    elif isinstance(value, str):
        problem = rules.text_problem(value)
    if problem:
        raise ctx.fail(prefix + key, problem)
    return value


def _key(key: str) -> str:
    """A JSON key as a field name in an error: itself when short and printable, else its short repr."""
    return key if len(key) <= 40 and key.isprintable() else rules.brief(key, 40)


def _count(ctx: _Ctx, obj: dict, key: str, prefix: str = "") -> int | None:
    value = _take(ctx, obj, key, int, required=False, prefix=prefix)
    if value is not None and value < 0:
        raise ctx.fail(prefix + key, "must not be negative")
    return value


def _no_extra(ctx: _Ctx, obj: dict, allowed: Iterable[str], prefix: str = "") -> None:
    extra = sorted(set(obj) - set(allowed))
    if extra:
        raise ctx.fail(prefix + _key(extra[0]), f"is not a known field (allowed: {', '.join(sorted(allowed))})")


def _check(ctx: _Ctx, field_name: str, problem: str | None) -> None:
    if problem:
        raise ctx.fail(field_name, problem)


def _parse_checksum(ctx: _Ctx, obj: Any, prefix: str) -> Checksum | None:
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise ctx.fail(prefix.rstrip("."), "must be an object like {\"sha256\": \"<64 hex>\"}")
    _no_extra(ctx, obj, {*CHECKSUM_ALGORITHMS, "sha256-prefix", "trust", "note"}, prefix)
    algos = [a for a in (*CHECKSUM_ALGORITHMS, "sha256-prefix") if a in obj]
    if len(algos) != 1:
        raise ctx.fail(prefix.rstrip("."), "needs exactly one of sha256, sha1, git-blob-sha1, sha256-prefix")
    algo = algos[0]
    value = _take(ctx, obj, algo, str, prefix=prefix)
    is_prefix = algo == "sha256-prefix"
    algorithm = "sha256" if is_prefix else algo
    if not _HEX.match(value):
        raise ctx.fail(prefix + algo, f"must be lower-case hex, got {rules.brief(value)}")
    want = _DIGEST_LENGTHS[algorithm]
    if is_prefix and not 8 <= len(value) < want:
        raise ctx.fail(prefix + algo, f"a prefix must have 8 to {want - 1} hex digits, got {len(value)}")
    if not is_prefix and len(value) != want:
        raise ctx.fail(prefix + algo, f"must have {want} hex digits, got {len(value)}")
    trust = _take(ctx, obj, "trust", str, required=False, default="publisher", prefix=prefix)
    if trust not in TRUST_LEVELS:
        raise ctx.fail(prefix + "trust", f"must be one of {', '.join(TRUST_LEVELS)}, got {rules.brief(trust)}")
    return Checksum(algorithm=algorithm, value=value, prefix=is_prefix, trust=trust,
                    note=_take(ctx, obj, "note", str, required=False, default="", prefix=prefix))


def _url_problem(url: str) -> str | None:
    import urllib.parse

    if not re.match(r"^(https?|file)://", url):
        return f"must start with http://, https:// or file://, got {rules.brief(url)}"
    if rules.text_problem(url, multiline=False) or any(ch.isspace() for ch in url) or len(url) > 4096:
        return f"must be one line of at most 4096 characters with no spaces, got {rules.brief(url)}"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError on a port out of range)
    except ValueError as err:
        return f"is not a valid URL ({err}): {rules.brief(url)}"
    if parts.scheme != "file" and not parts.hostname:
        return f"names no host: {rules.brief(url)}"
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path.startswith("/")):
        return f"must be file:///absolute/path, got {rules.brief(url)}"
    return None


def _parse_source(ctx: _Ctx, obj: Any, prefix: str) -> Source:
    if isinstance(obj, str):
        obj = {"url": obj}
    if not isinstance(obj, dict):
        raise ctx.fail(prefix.rstrip("."), "must be a URL string or an object")
    _no_extra(ctx, obj, {"url", "hf", "package"}, prefix)
    kinds = [k for k in ("url", "hf", "package") if k in obj]
    if len(kinds) != 1:
        raise ctx.fail(prefix.rstrip("."), "needs exactly one of url, hf, package")
    if "url" in obj:
        url = _take(ctx, obj, "url", str, prefix=prefix)
        _check(ctx, prefix + "url", _url_problem(url))
        return Source(url=url)
    if "package" in obj:
        # A file of the installed zoo package (built-ins) or beside the registry file (user entries).
        package = _take(ctx, obj, "package", str, prefix=prefix)
        _check(ctx, prefix + "package", rules.relative_path_problem(package))
        return Source(package=package)
    hf = _take(ctx, obj, "hf", dict, prefix=prefix)
    hp = prefix + "hf."
    _no_extra(ctx, hf, {"repo", "filename", "revision"}, hp)
    repo = _take(ctx, hf, "repo", str, prefix=hp)
    if not _HF_REPO.match(repo) or ".." in repo or "--" in repo:
        raise ctx.fail(hp + "repo", f"must be a Hub repo id like 'org/name', got {rules.brief(repo)}")
    filename = _take(ctx, hf, "filename", str, prefix=hp)
    _check(ctx, hp + "filename", rules.relative_path_problem(filename))
    revision = _take(ctx, hf, "revision", str, required=False, prefix=hp)
    if revision is not None and (not _HF_REVISION.match(revision) or ".." in revision):
        raise ctx.fail(hp + "revision", f"must be a branch, tag or commit, got {rules.brief(revision)}")
    return Source(hf_repo=repo, hf_filename=filename, hf_revision=revision)


def _parse_file(ctx: _Ctx, obj: Any, index: int) -> FileSpec:
    prefix = f"files[{index}]."
    if not isinstance(obj, dict):
        raise ctx.fail(prefix.rstrip("."), "must be an object")
    _no_extra(ctx, obj, {"role", "filename", "format", "sources", "checksum", "size"}, prefix)
    fmt = _take(ctx, obj, "format", str, prefix=prefix)
    if fmt not in FORMATS:
        raise ctx.fail(prefix + "format", f"must be one of {', '.join(FORMATS)}, got {rules.brief(fmt)}")
    filename = _take(ctx, obj, "filename", str, prefix=prefix)
    if rules.relative_path_problem(filename) or "/" in filename or len(filename.encode()) > MAX_FILENAME_BYTES:
        raise ctx.fail(prefix + "filename", f"must be a plain file name of at most {MAX_FILENAME_BYTES} bytes, "
                       f"got {rules.brief(filename)}")
    sources = _take(ctx, obj, "sources", list, prefix=prefix)
    if not sources:
        raise ctx.fail(prefix + "sources", "must list at least one source")
    size = _count(ctx, obj, "size", prefix)
    checksum = _parse_checksum(ctx, obj.get("checksum"), prefix + "checksum.")
    parsed_sources = tuple(_parse_source(ctx, s, f"{prefix}sources[{i}].") for i, s in enumerate(sources))
    if checksum is None and not all(s.kind == "hf" for s in parsed_sources):
        # Hub files carry their LFS sha256 in the etag; anything else must name its digest.
        raise ctx.fail(prefix + "checksum", "is required for url and package sources")
    role = _take(ctx, obj, "role", str, prefix=prefix)
    if not ALIAS_RE.match(role):
        raise ctx.fail(prefix + "role", f"must be a lower-case word like 'weights', got {rules.brief(role)}")
    return FileSpec(role=role, filename=filename, format=fmt, sources=parsed_sources, checksum=checksum, size=size)


def _floats(ctx: _Ctx, obj: dict, key: str, prefix: str, default: tuple) -> tuple[float, ...]:
    value = _take(ctx, obj, key, list, required=False, default=default, prefix=prefix)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value):
        raise ctx.fail(prefix + key, f"must be a list of finite numbers, got {rules.brief(value)}")
    return tuple(float(v) for v in value)


def _choice(ctx: _Ctx, obj: dict, key: str, choices: tuple[str, ...], default: str, prefix: str) -> str:
    value = _take(ctx, obj, key, str, required=False, default=default, prefix=prefix)
    if value not in choices:
        raise ctx.fail(prefix + key, f"must be one of {', '.join(choices)}, got {rules.brief(value)}")
    return value


def _parse_preprocessing(ctx: _Ctx, obj: Any, presets: Mapping[str, Any]) -> Preprocessing:
    prefix = "preprocessing."
    if isinstance(obj, str):
        if obj not in presets:
            raise ctx.fail("preprocessing", f"names no preprocessing block in this file: {rules.brief(obj)} "
                           f"(defined: {', '.join(sorted(presets)) or 'none'})")
        obj = presets[obj]
    if not isinstance(obj, dict):
        raise ctx.fail("preprocessing", "must be an object or the name of a shared block")
    _no_extra(ctx, obj, _PREPROCESSING_FIELDS, prefix)
    size = _take(ctx, obj, "input_size", list, prefix=prefix)
    if (len(size) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
            or size[0] > MAX_CHANNELS or max(size[1:]) > MAX_SIDE):
        raise ctx.fail(prefix + "input_size", f"must be [channels <= {MAX_CHANNELS}, height, width <= {MAX_SIDE}], "
                       f"got {rules.brief(size)}")
    channels = size[0]
    mean = _floats(ctx, obj, "mean", prefix, default=(0.0,) * channels)
    std = _floats(ctx, obj, "std", prefix, default=(1.0,) * channels)
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            raise ctx.fail(prefix + key, f"needs {channels} values (one per input channel), got {len(values)}")
    if any(s <= 0 for s in std):
        raise ctx.fail(prefix + "std", "must be positive")
    resize = _take(ctx, obj, "resize", int, required=False, default=max(size[1:]), prefix=prefix)
    if not max(size[1:]) <= resize <= 4 * MAX_SIDE:
        raise ctx.fail(prefix + "resize", f"must be at least the crop size {max(size[1:])} (and at most "
                       f"{4 * MAX_SIDE}), got {resize}")
    mean_file = _take(ctx, obj, "mean_file", str, required=False, prefix=prefix)
    return Preprocessing(
        input_size=(size[0], size[1], size[2]), resize=resize,
        interpolation=_choice(ctx, obj, "interpolation", INTERPOLATIONS, "bilinear", prefix), mean=mean, std=std,
        channel_order=_choice(ctx, obj, "channel_order", CHANNEL_ORDERS, "RGB", prefix),
        scale=_take(ctx, obj, "scale", float, required=False, default=1.0, prefix=prefix), mean_file=mean_file,
        crop_mode=_choice(ctx, obj, "crop_mode", CROP_MODES, "center", prefix),
        antialias=_take(ctx, obj, "antialias", bool, required=False, default=True, prefix=prefix))


def _labels_problem(labels: str, collection: str) -> str | None:
    if LABEL_SET_RE.match(labels):
        return None
    if collection == "local" and labels.endswith(".txt"):  # a label file beside the user's registry file
        return rules.relative_path_problem(labels)
    where = "; a user entry may also name a .txt file beside its registry file" if collection == "local" else ""
    return f"must name a label set (registry/labels/NAME.txt) like 'imagenet-1k'{where}, got {rules.brief(labels)}"


def _parse_head(ctx: _Ctx, obj: Any) -> Head:
    prefix = "head."
    if not isinstance(obj, dict):
        raise ctx.fail("head", "must be an object")
    _no_extra(ctx, obj, {"num_classes", "labels", "classifier", "first_conv"}, prefix)
    num_classes = _take(ctx, obj, "num_classes", int, prefix=prefix)
    if not 0 <= num_classes <= MAX_CLASSES:
        raise ctx.fail(prefix + "num_classes", f"must be 0 (a feature backbone with no classifier) to {MAX_CLASSES}")
    labels = obj.get("labels")
    if isinstance(labels, list):
        if (len(labels) != num_classes or not all(isinstance(x, str) for x in labels)
                or any(rules.text_problem(x, multiline=False) for x in labels)):
            raise ctx.fail(prefix + "labels", f"must be {num_classes} strings, one per class, each on one line")
        labels = tuple(labels)
    elif isinstance(labels, str):
        _check(ctx, prefix + "labels", _labels_problem(labels, ctx.collection))
    elif labels is not None:
        raise ctx.fail(prefix + "labels", "must be a label-set name or a list of strings")
    return Head(num_classes=num_classes, labels=labels,
                classifier=_take(ctx, obj, "classifier", str, required=False, prefix=prefix),
                first_conv=_take(ctx, obj, "first_conv", str, required=False, prefix=prefix))


def _parse_metric(ctx: _Ctx, obj: Any, index: int) -> Metric:
    prefix = f"metrics[{index}]."
    if not isinstance(obj, dict):
        raise ctx.fail(prefix.rstrip("."), "must be an object")
    _no_extra(ctx, obj, {"dataset", "metric", "value", "protocol", "source"}, prefix)
    return Metric(dataset=_take(ctx, obj, "dataset", str, prefix=prefix),
                  metric=_take(ctx, obj, "metric", str, prefix=prefix),
                  value=_take(ctx, obj, "value", float, prefix=prefix),
                  protocol=_take(ctx, obj, "protocol", str, required=False, default="", prefix=prefix),
                  source=_take(ctx, obj, "source", str, required=False, default="", prefix=prefix))


def _parse_architecture(ctx: _Ctx, obj: Any) -> Architecture:
    arch = _take(ctx, obj, "architecture", dict)
    _no_extra(ctx, arch, {"library", "builder", "kwargs"}, "architecture.")
    library = _take(ctx, arch, "library", str, prefix="architecture.")
    if library not in LIBRARIES:
        raise ctx.fail("architecture.library", f"must be one of {', '.join(LIBRARIES)}, got {rules.brief(library)}")
    builder = _take(ctx, arch, "builder", str, prefix="architecture.")
    _check(ctx, "architecture.builder", rules.builder_problem(library, builder))
    kwargs = _take(ctx, arch, "kwargs", dict, required=False, default={}, prefix="architecture.")
    for key, value in kwargs.items():
        _check(ctx, f"architecture.kwargs.{_key(key)}", rules.option_problem(library, key, value))
    return Architecture(library=library, builder=builder, kwargs=dict(kwargs))


def _strings(ctx: _Ctx, obj: dict, key: str, pattern: re.Pattern | None = None) -> tuple[str, ...]:
    values = _take(ctx, obj, key, list, required=False, default=[])
    for value in values:
        if not isinstance(value, str) or rules.text_problem(value, multiline=False) or (
                pattern is not None and not pattern.match(value)):
            raise ctx.fail(key, f"must be a list of lower-case names, got {rules.brief(value)}")
    return tuple(values)


def _parse_card(ctx: _Ctx, obj: dict) -> str | None:
    card = _take(ctx, obj, "card", str, required=False)
    if card is not None:
        _check(ctx, "card", rules.relative_path_problem(card) or (
            None if card.endswith(".md") else f"must name a Markdown file (.md), got {rules.brief(card)}"))
    return card


def parse_entry(obj: Any, *, path: str, index: int, presets: Mapping[str, Any] | None = None,
                collection: str = "builtin") -> Entry:
    """Parse one JSON object into an ``Entry``.

    Args:
        obj: the decoded JSON object.
        path: the file it came from (named in errors; a user entry's card and label file sit beside it).
        index: its position in the file (named in errors when it has no name).
        presets: the file's named shared preprocessing blocks.
        collection: ``builtin`` or ``local``.

    Raises:
        RegistryError: naming the file, the entry and the field that is wrong.
    """
    ctx = _Ctx(path, f"#{index}", collection)
    if not isinstance(obj, dict):
        raise ctx.fail("", "an entry must be a JSON object")
    name = _take(ctx, obj, "name", str)
    ctx.entry = name
    if not NAME_RE.match(name):
        raise ctx.fail("name", "must be 'arch.tag' in lower case (letters, digits, '_', '-'; at most 128 "
                       "characters), e.g. 'resnet50.tv_in1k'")
    _no_extra(ctx, obj, _ENTRY_FIELDS)
    files = tuple(_parse_file(ctx, f, i) for i, f in enumerate(_take(ctx, obj, "files", list, required=False,
                                                                      default=[])))
    roles = [f.role for f in files]
    if len(set(roles)) != len(roles):
        raise ctx.fail("files", f"roles must be unique, got {rules.brief(roles)}")
    license_ = _take(ctx, obj, "license", str)
    if license_ not in LICENSES:
        raise ctx.fail("license", f"{rules.brief(license_)} is not on the allow-list ({', '.join(sorted(LICENSES))})")
    preprocessing = _parse_preprocessing(ctx, obj.get("preprocessing"), presets or {})
    if preprocessing.mean_file and preprocessing.mean_file not in roles:
        raise ctx.fail("preprocessing.mean_file", f"names no file role of this entry (roles: {roles})")
    text = {key: _take(ctx, obj, key, str, required=False, default="")
            for key in ("description", "license_note", "origin", "paper", "citation", "recipe")}
    return Entry(
        name=name, architecture=_parse_architecture(ctx, obj), files=files, license=license_,
        preprocessing=preprocessing, head=_parse_head(ctx, obj.get("head")),
        aliases=_strings(ctx, obj, "aliases", ALIAS_RE),
        default=_take(ctx, obj, "default", bool, required=False, default=False),
        metrics=tuple(_parse_metric(ctx, m, i) for i, m in enumerate(
            _take(ctx, obj, "metrics", list, required=False, default=[]))),
        params=_count(ctx, obj, "params"), tags=_strings(ctx, obj, "tags"),
        card=_parse_card(ctx, obj), origin_file=path, collection=collection, **text)


def parse_document(data: Any, *, path: str, collection: str = "builtin") -> list[Entry]:
    """Parse a whole decoded entry file (an object with ``entries``, or a bare list of entries).

    Raises:
        RegistryError: naming the file (and the entry and field when the fault is inside an entry).
    """
    if isinstance(data, list):  # a bare list of entries is accepted for hand-written user files
        data = {"schema": SCHEMA_VERSION, "entries": data}
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise RegistryError("must be a JSON object with an 'entries' list", path=path, field="entries")
    unknown = sorted(set(data) - _FILE_FIELDS)
    if unknown:
        raise RegistryError(f"has an unknown top-level field {rules.brief(unknown[0], 40)} "
                            f"(allowed: {', '.join(sorted(_FILE_FIELDS))})", path=path, field=_key(unknown[0]))
    if data.get("schema", SCHEMA_VERSION) != SCHEMA_VERSION:
        raise RegistryError(f"has schema {rules.brief(data.get('schema'))}; this zoo reads schema {SCHEMA_VERSION}",
                            path=path, field="schema")
    presets = data.get("preprocessing", {})
    if not isinstance(presets, dict):
        raise RegistryError("must map names to preprocessing blocks", path=path, field="preprocessing")
    return [parse_entry(obj, path=path, index=i, presets=presets, collection=collection)
            for i, obj in enumerate(data["entries"])]
