"""The registry's record types: one frozen dataclass per part of an entry, plain data only.

Owns: ``Entry`` and its parts (``Architecture``, ``Checksum``, ``Source``, ``FileSpec``, ``Preprocessing``,
``Head``, ``Metric``). Building them from JSON, with every check, is ``schema.parse_entry``; writing them
back is ``schema.entry_to_dict``. Standard library only; imports nothing from this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Architecture", "Checksum", "Source", "FileSpec", "Preprocessing", "Head", "Metric", "Entry"]


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
    ``hf_filename``, ``hf_revision``) or ``package``: a path inside the installed ``zoo`` package for a
    built-in entry, beside its registry file for a user entry (``assets.package_file`` resolves it and
    refuses anything outside that folder)."""

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
    centre-cropped to ``input_size[1:]``; see ``schema.CROP_MODES``), with ``interpolation`` and ``antialias``,
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
    # the labels, a label-set name (registry/labels/NAME.txt), or for a user entry a .txt file beside its
    # registry file (read by assets.labels_for, never from outside that folder)
    labels: str | tuple[str, ...] | None = None
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
    card: str | None = None  # the model card: under model_cards/, or beside a user entry's registry file
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
