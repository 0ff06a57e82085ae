"""The registry's schema: one frozen record per set of weights, parsed and validated from plain data.

Owns: ``Entry`` and its parts (``FileSpec``, ``Source``, ``Checksum``, ``Preprocessing``, ``Head``,
``Architecture``, ``Metric``), and ``parse_entry`` which turns a JSON object into an ``Entry`` or raises a
``RegistryError`` naming the file, the entry and the field. Standard library only.

An entry file is JSON::

    {"schema": 1,
     "preprocessing": {"imagenet_rgb_224": {...}},     # named shared blocks, referenced by name
     "entries": [{"name": "resnet50.tv_in1k", ...}]}
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import RegistryError

__all__ = [
    "SCHEMA_VERSION",
    "NAME_RE",
    "LICENSES",
    "Architecture",
    "Checksum",
    "Source",
    "FileSpec",
    "Preprocessing",
    "Head",
    "Metric",
    "Entry",
    "parse_entry",
    "entry_to_dict",
]

SCHEMA_VERSION = 1
# arch.tag: lower-case arch, a dot, a tag. Arch and tag may hold letters, digits, '_' and '-'.
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]*\.[a-z0-9][a-z0-9_\-]*$")
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

_HEX = re.compile(r"^[0-9a-f]+$")
_DIGEST_LENGTHS = {"sha256": 64, "sha1": 40, "git-blob-sha1": 40}


@dataclass(frozen=True, slots=True)
class Architecture:
    """How to build the network: a builder function of a library, with keyword arguments.

    ``library`` is ``torchvision`` / ``timm`` (their model builders), ``caffe`` (a graph converted from
    the entry's own ``.caffemodel``), ``zoo`` (the zoo's reference architectures) or ``run`` (a
    fine-tuned run directory).
    """

    library: str
    builder: str
    kwargs: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True, slots=True)
class Checksum:
    """The expected digest of a file, and how far to trust it.

    ``algorithm`` is ``sha256``, ``sha1`` (the Caffe zoo's published digests) or ``git-blob-sha1`` (the
    id git gives a committed file: sha1 over ``b"blob <length>\\0"`` + the bytes; used where the only
    published identity is a file's blob in a repository).

    ``prefix`` marks a digest the publisher gives only in part (torchvision's 8-hex file-name prefix):
    a download whose sha256 starts with the prefix is accepted and its full sha256 is pinned in the
    cache, and every later read of that cached file is checked against the pinned value.

    ``trust`` says who published the value and what a fetcher does with it:

    * ``publisher`` (default): the file's author published it. A mismatch deletes the download and raises.
    * ``third-party``: a mirror or another project published it (``note`` says who). Checked exactly
      like ``publisher``: a mismatch deletes and raises; the difference is only what a listing tells
      the user about provenance.
    * ``suspect``: a published value with a known reason to doubt it (``note`` says why, e.g. the same
      digest given for two different files). It is checked and the result reported (expected, actual),
      but a mismatch does not reject the file: the file enters the cache, the actual digest is pinned,
      and the fetcher warns with the note.
    * ``local``: written by the zoo itself (a user's fine-tuned run, a converted file). Checked like
      ``publisher``.
    """

    algorithm: Literal["sha256", "sha1", "git-blob-sha1"]
    value: str
    prefix: bool = False
    trust: str = "publisher"
    note: str = ""


@dataclass(frozen=True, slots=True)
class Source:
    """One place a file can be fetched from: ``url``, a Hugging Face Hub file (``hf_repo``,
    ``hf_filename``, ``hf_revision``) or a file shipped in the package (``package``)."""

    url: str | None = None
    hf_repo: str | None = None
    hf_filename: str | None = None
    hf_revision: str | None = None
    package: str | None = None

    @property
    def kind(self) -> str:
        return "url" if self.url else "hf" if self.hf_repo else "package"

    def describe(self) -> str:
        if self.url:
            return self.url
        if self.hf_repo:
            return f"hf://{self.hf_repo}/{self.hf_filename}@{self.hf_revision or 'main'}"
        return f"package:{self.package}"


@dataclass(frozen=True, slots=True)
class FileSpec:
    """A file an entry needs, with its sources in order of preference and one checksum."""

    role: str  # "weights", "mean", "deploy", ...
    filename: str
    format: str
    sources: tuple[Source, ...]
    checksum: Checksum | None
    size: int | None = None


@dataclass(frozen=True, slots=True)
class Preprocessing:
    """The input the weights expect, as plain numbers.

    Images are resized as ``crop_mode`` says (by default the shorter side to ``resize``, then
    centre-cropped to ``input_size[1:]``; see ``CROP_MODES``), with ``interpolation`` and ``antialias``,
    put in ``channel_order``, multiplied by ``scale`` (1.0 gives [0, 1], 255.0 gives Caffe's 0-255),
    then ``(x - mean) / std``. Caffe entries give ``mean_file`` (the role of a per-pixel mean file)
    instead of, or beside, a mean pixel; their ``std`` is 1.
    """

    input_size: tuple[int, int, int]
    resize: int
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    channel_order: str = "RGB"
    scale: float = 1.0
    mean_file: str | None = None
    crop_mode: str = "center"
    antialias: bool = True

    @property
    def crop(self) -> tuple[int, int]:
        return (self.input_size[1], self.input_size[2])


@dataclass(frozen=True, slots=True)
class Head:
    """The classifier the weights were trained with, and where it sits in the module tree."""

    num_classes: int  # 0: a feature backbone with no classifier (DINOv2, CLIP vision towers)
    labels: str | tuple[str, ...] | None = None  # a label-set name (registry/labels/NAME.txt) or the labels
    classifier: str | None = None  # module path of the final layer, e.g. "fc", "heads.head"
    first_conv: str | None = None


@dataclass(frozen=True, slots=True)
class Metric:
    """A reported figure: ``value`` of ``metric`` on ``dataset`` under ``protocol``, per ``source``."""

    dataset: str
    metric: str
    value: float
    protocol: str = ""
    source: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One set of weights. ``name`` is ``arch.tag``; ``default`` marks the tag a bare arch resolves to."""

    name: str
    architecture: Architecture
    files: tuple[FileSpec, ...]
    license: str
    preprocessing: Preprocessing
    head: Head
    aliases: tuple[str, ...] = ()
    default: bool = False
    origin: str = ""
    paper: str = ""
    citation: str = ""
    description: str = ""
    metrics: tuple[Metric, ...] = ()
    params: int | None = None
    recipe: str = ""
    tags: tuple[str, ...] = ()
    license_note: str = ""
    card: str | None = None  # the model card's file name under model_cards/
    origin_file: str = ""  # which registry file the entry came from (filled by the loader)
    collection: str = "builtin"  # "builtin" or "local" (user registries)

    @property
    def arch(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def library(self) -> str:
        return self.architecture.library

    @property
    def source(self) -> str:
        """The listing group: the library, or ``local`` for user registries."""
        return "local" if self.collection == "local" else self.architecture.library

    def file(self, role: str) -> FileSpec:
        for spec in self.files:
            if spec.role == role:
                return spec
        raise KeyError(f"entry {self.name!r} has no file with role {role!r}")

    def metric(self, metric: str) -> Metric | None:
        return next((m for m in self.metrics if m.metric == metric), None)


# ----------------------------------------------------------------------------------------------
# Parsing. Every check raises RegistryError(path=, entry=, field=).


class _Ctx:
    def __init__(self, path: str, entry: str):
        self.path, self.entry = path, entry

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
        value = float(value)
    # bool is an int in Python; a registry that says `"size": true` is wrong, not 1.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ctx.fail(prefix + key, f"must be {expected}, got {type(value).__name__} {value!r}")
    return value


def _no_extra(ctx: _Ctx, obj: dict, allowed: set[str], prefix: str = "") -> None:
    extra = sorted(set(obj) - allowed)
    if extra:
        raise ctx.fail(prefix + extra[0], f"is not a known field (allowed: {', '.join(sorted(allowed))})")


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
        raise ctx.fail(prefix + algo, f"must be lower-case hex, got {value!r}")
    want = _DIGEST_LENGTHS[algorithm]
    if is_prefix and not 8 <= len(value) < want:
        raise ctx.fail(prefix + algo, f"a prefix must have 8 to {want - 1} hex digits, got {len(value)}")
    if not is_prefix and len(value) != want:
        raise ctx.fail(prefix + algo, f"must have {want} hex digits, got {len(value)}")
    trust = _take(ctx, obj, "trust", str, required=False, default="publisher", prefix=prefix)
    if trust not in TRUST_LEVELS:
        raise ctx.fail(prefix + "trust", f"must be one of {', '.join(TRUST_LEVELS)}, got {trust!r}")
    return Checksum(algorithm=algorithm, value=value, prefix=is_prefix, trust=trust,
                    note=_take(ctx, obj, "note", str, required=False, default="", prefix=prefix))


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
        if not re.match(r"^(https?|file)://", url):
            raise ctx.fail(prefix + "url", f"must start with http://, https:// or file://, got {url!r}")
        return Source(url=url)
    if "package" in obj:
        return Source(package=_take(ctx, obj, "package", str, prefix=prefix))
    hf = _take(ctx, obj, "hf", dict, prefix=prefix)
    _no_extra(ctx, hf, {"repo", "filename", "revision"}, prefix + "hf.")
    return Source(hf_repo=_take(ctx, hf, "repo", str, prefix=prefix + "hf."),
                  hf_filename=_take(ctx, hf, "filename", str, prefix=prefix + "hf."),
                  hf_revision=_take(ctx, hf, "revision", str, required=False, prefix=prefix + "hf."))


def _parse_file(ctx: _Ctx, obj: Any, index: int) -> FileSpec:
    prefix = f"files[{index}]."
    if not isinstance(obj, dict):
        raise ctx.fail(prefix.rstrip("."), "must be an object")
    _no_extra(ctx, obj, {"role", "filename", "format", "sources", "checksum", "size"}, prefix)
    fmt = _take(ctx, obj, "format", str, prefix=prefix)
    if fmt not in FORMATS:
        raise ctx.fail(prefix + "format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    filename = _take(ctx, obj, "filename", str, prefix=prefix)
    if "/" in filename or "\\" in filename or filename in ("", ".", ".."):
        raise ctx.fail(prefix + "filename", f"must be a plain file name, got {filename!r}")
    sources = _take(ctx, obj, "sources", list, prefix=prefix)
    if not sources:
        raise ctx.fail(prefix + "sources", "must list at least one source")
    size = _take(ctx, obj, "size", int, required=False, prefix=prefix)
    if size is not None and size < 0:
        raise ctx.fail(prefix + "size", "must not be negative")
    checksum = _parse_checksum(ctx, obj.get("checksum"), prefix + "checksum.")
    parsed_sources = tuple(_parse_source(ctx, s, f"{prefix}sources[{i}].") for i, s in enumerate(sources))
    if checksum is None and not all(s.kind == "hf" for s in parsed_sources):
        # Hub files carry their LFS sha256 in the etag; anything else must name its digest.
        raise ctx.fail(prefix + "checksum", "is required for url and package sources")
    return FileSpec(role=_take(ctx, obj, "role", str, prefix=prefix), filename=filename, format=fmt,
                    sources=parsed_sources, checksum=checksum, size=size)


def _floats(ctx: _Ctx, obj: dict, key: str, prefix: str, default: tuple | None = None) -> tuple[float, ...]:
    value = _take(ctx, obj, key, list, required=default is None, default=default, prefix=prefix)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ctx.fail(prefix + key, f"must be a list of numbers, got {value!r}")
    return tuple(float(v) for v in value)


def _parse_preprocessing(ctx: _Ctx, obj: Any, presets: dict[str, Any]) -> Preprocessing:
    prefix = "preprocessing."
    if isinstance(obj, str):
        if obj not in presets:
            raise ctx.fail("preprocessing", f"names no preprocessing block in this file: {obj!r} "
                           f"(defined: {', '.join(sorted(presets)) or 'none'})")
        obj = presets[obj]
    if not isinstance(obj, dict):
        raise ctx.fail("preprocessing", "must be an object or the name of a shared block")
    _no_extra(ctx, obj, {"input_size", "resize", "interpolation", "mean", "std", "channel_order", "scale",
                         "mean_file", "crop_mode", "antialias"}, prefix)
    size = _take(ctx, obj, "input_size", list, prefix=prefix)
    if len(size) != 3 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ctx.fail(prefix + "input_size", f"must be [channels, height, width], got {size!r}")
    interpolation = _take(ctx, obj, "interpolation", str, required=False, default="bilinear", prefix=prefix)
    if interpolation not in INTERPOLATIONS:
        raise ctx.fail(prefix + "interpolation", f"must be one of {', '.join(INTERPOLATIONS)}")
    order = _take(ctx, obj, "channel_order", str, required=False, default="RGB", prefix=prefix)
    if order not in CHANNEL_ORDERS:
        raise ctx.fail(prefix + "channel_order", f"must be one of {', '.join(CHANNEL_ORDERS)}")
    channels = size[0]
    mean = _floats(ctx, obj, "mean", prefix, default=(0.0,) * channels)
    std = _floats(ctx, obj, "std", prefix, default=(1.0,) * channels)
    for key, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            raise ctx.fail(prefix + key, f"needs {channels} values (one per input channel), got {len(values)}")
    if any(s <= 0 for s in std):
        raise ctx.fail(prefix + "std", "must be positive")
    crop_mode = _take(ctx, obj, "crop_mode", str, required=False, default="center", prefix=prefix)
    if crop_mode not in CROP_MODES:
        raise ctx.fail(prefix + "crop_mode", f"must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
    resize = _take(ctx, obj, "resize", int, required=False, default=max(size[1:]), prefix=prefix)
    if resize < max(size[1:]):
        raise ctx.fail(prefix + "resize", f"must be at least the crop size {max(size[1:])}, got {resize}")
    return Preprocessing(
        input_size=(size[0], size[1], size[2]), resize=resize, interpolation=interpolation, mean=mean,
        std=std, channel_order=order, scale=_take(ctx, obj, "scale", float, required=False, default=1.0,
                                                  prefix=prefix),
        mean_file=_take(ctx, obj, "mean_file", str, required=False, prefix=prefix), crop_mode=crop_mode,
        antialias=_take(ctx, obj, "antialias", bool, required=False, default=True, prefix=prefix))


def _parse_head(ctx: _Ctx, obj: Any) -> Head:
    prefix = "head."
    if not isinstance(obj, dict):
        raise ctx.fail("head", "must be an object")
    _no_extra(ctx, obj, {"num_classes", "labels", "classifier", "first_conv"}, prefix)
    num_classes = _take(ctx, obj, "num_classes", int, prefix=prefix)
    if num_classes < 0:
        raise ctx.fail(prefix + "num_classes", "must be 0 (a feature backbone with no classifier) or more")
    labels = obj.get("labels")
    if isinstance(labels, list):
        if len(labels) != num_classes or not all(isinstance(x, str) for x in labels):
            raise ctx.fail(prefix + "labels", f"must be {num_classes} strings, one per class")
        labels = tuple(labels)
    elif labels is not None and not isinstance(labels, str):
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


_ENTRY_FIELDS = {
    "name", "aliases", "default", "architecture", "files", "license", "license_note", "origin", "paper",
    "citation", "description", "preprocessing", "head", "metrics", "params", "recipe", "tags", "card",
}


def parse_entry(obj: Any, *, path: str, index: int, presets: dict[str, Any] | None = None,
                collection: str = "builtin") -> Entry:
    """Parse one JSON object into an ``Entry``.

    Args:
        obj: the decoded JSON object.
        path: the file it came from (named in errors).
        index: its position in the file (named in errors when it has no name).
        presets: the file's named shared preprocessing blocks.
        collection: ``builtin`` or ``local``.

    Raises:
        RegistryError: naming the file, the entry and the field that is wrong.
    """
    ctx = _Ctx(path, f"#{index}")
    if not isinstance(obj, dict):
        raise ctx.fail("", "an entry must be a JSON object")
    name = _take(ctx, obj, "name", str)
    ctx.entry = name
    if not NAME_RE.match(name):
        raise ctx.fail("name", "must be 'arch.tag' in lower case (letters, digits, '_', '-'), "
                       "e.g. 'resnet50.tv_in1k'")
    _no_extra(ctx, obj, _ENTRY_FIELDS)
    arch = _take(ctx, obj, "architecture", dict)
    _no_extra(ctx, arch, {"library", "builder", "kwargs"}, "architecture.")
    library = _take(ctx, arch, "library", str, prefix="architecture.")
    if library not in LIBRARIES:
        raise ctx.fail("architecture.library", f"must be one of {', '.join(LIBRARIES)}, got {library!r}")
    architecture = Architecture(library=library, builder=_take(ctx, arch, "builder", str, prefix="architecture."),
                                kwargs=_take(ctx, arch, "kwargs", dict, required=False, default={},
                                             prefix="architecture."))
    files = _take(ctx, obj, "files", list, required=False, default=[])
    parsed_files = tuple(_parse_file(ctx, f, i) for i, f in enumerate(files))
    roles = [f.role for f in parsed_files]
    if len(set(roles)) != len(roles):
        raise ctx.fail("files", f"roles must be unique, got {roles}")
    license_ = _take(ctx, obj, "license", str)
    if license_ not in LICENSES:
        raise ctx.fail("license", f"{license_!r} is not on the allow-list ({', '.join(sorted(LICENSES))})")
    preprocessing = _parse_preprocessing(ctx, obj.get("preprocessing"), presets or {})
    if preprocessing.mean_file and preprocessing.mean_file not in roles:
        raise ctx.fail("preprocessing.mean_file", f"names no file role of this entry (roles: {roles})")
    aliases = _take(ctx, obj, "aliases", list, required=False, default=[])
    for alias in aliases:
        if not isinstance(alias, str) or not re.match(r"^[a-z0-9][a-z0-9_\-.]*$", alias):
            raise ctx.fail("aliases", f"aliases must be lower-case names, got {alias!r}")
    tags = _take(ctx, obj, "tags", list, required=False, default=[])
    params = _take(ctx, obj, "params", int, required=False)
    return Entry(
        name=name, architecture=architecture, files=parsed_files, license=license_,
        preprocessing=preprocessing, head=_parse_head(ctx, obj.get("head")), aliases=tuple(aliases),
        default=_take(ctx, obj, "default", bool, required=False, default=False),
        origin=_take(ctx, obj, "origin", str, required=False, default=""),
        paper=_take(ctx, obj, "paper", str, required=False, default=""),
        citation=_take(ctx, obj, "citation", str, required=False, default=""),
        description=_take(ctx, obj, "description", str, required=False, default=""),
        metrics=tuple(_parse_metric(ctx, m, i) for i, m in enumerate(
            _take(ctx, obj, "metrics", list, required=False, default=[]))),
        params=params, recipe=_take(ctx, obj, "recipe", str, required=False, default=""),
        tags=tuple(str(t) for t in tags),
        license_note=_take(ctx, obj, "license_note", str, required=False, default=""),
        card=_take(ctx, obj, "card", str, required=False), origin_file=path, collection=collection,
    )


def entry_to_dict(entry: Entry) -> dict[str, Any]:
    """The inverse of ``parse_entry`` (with preprocessing inlined): what ``zoo info --json`` prints and
    what a user registry file holds."""

    def checksum(c: Checksum | None) -> dict | None:
        if c is None:
            return None
        out: dict[str, Any] = {("sha256-prefix" if c.prefix else c.algorithm): c.value}
        if c.trust != "publisher":
            out["trust"] = c.trust
        if c.note:
            out["note"] = c.note
        return out

    def source(s: Source) -> dict:
        if s.url:
            return {"url": s.url}
        if s.package:
            return {"package": s.package}
        hf = {"repo": s.hf_repo, "filename": s.hf_filename}
        if s.hf_revision:
            hf["revision"] = s.hf_revision
        return {"hf": hf}

    p, h = entry.preprocessing, entry.head
    out: dict[str, Any] = {
        "name": entry.name,
        "aliases": list(entry.aliases),
        "default": entry.default,
        "architecture": {"library": entry.architecture.library, "builder": entry.architecture.builder,
                         "kwargs": dict(entry.architecture.kwargs)},
        "files": [{"role": f.role, "filename": f.filename, "format": f.format, "size": f.size,
                   "checksum": checksum(f.checksum), "sources": [source(s) for s in f.sources]}
                  for f in entry.files],
        "license": entry.license,
        "preprocessing": {"input_size": list(p.input_size), "resize": p.resize, "interpolation": p.interpolation,
                          "mean": list(p.mean), "std": list(p.std), "channel_order": p.channel_order,
                          "scale": p.scale, "mean_file": p.mean_file, "crop_mode": p.crop_mode,
                          "antialias": p.antialias},
        "head": {"num_classes": h.num_classes,
                 "labels": list(h.labels) if isinstance(h.labels, tuple) else h.labels,
                 "classifier": h.classifier, "first_conv": h.first_conv},
        "metrics": [{"dataset": m.dataset, "metric": m.metric, "value": m.value, "protocol": m.protocol,
                     "source": m.source} for m in entry.metrics],
    }
    for key in ("origin", "paper", "citation", "description", "recipe", "license_note", "card"):
        if getattr(entry, key):
            out[key] = getattr(entry, key)
    if entry.params is not None:
        out["params"] = entry.params
    if entry.tags:
        out["tags"] = list(entry.tags)
    # Drop None values so the output round-trips through parse_entry.
    for f in out["files"]:
        if f["size"] is None:
            del f["size"]
    out["preprocessing"] = {k: v for k, v in out["preprocessing"].items() if v is not None}
    out["head"] = {k: v for k, v in out["head"].items() if v is not None}
    return out
