"""One schema test over every built-in entry and every model card.

Parametrized over whatever ``registry/entries/*.json`` holds, so entries other files add later (the zoo's
own ``zoo.json``) are held to the same rules: allowed and required fields, the naming rule, the licence
allow-list, checksum shape, unique names and aliases, one default per arch, label sets that exist, a
card whose front matter agrees with its entry, and a lossless ``parse_entry``/``entry_to_dict`` round trip.
Also the table of malformed entries that must be refused with the file, entry and field named.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from importlib import resources

import pytest
import yaml

from zoo.registry.catalog import Catalog, builtin_entries, labels_for
from zoo.registry.errors import RegistryError
from zoo.registry.schema import LICENSES, NAME_RE, Entry, parse_entry
from zoo.registry.serialiser import entry_to_dict

ENTRIES = builtin_entries()
BY_NAME = {e.name: e for e in ENTRIES}
CARDS = resources.files("zoo.model_cards")
DIGEST_LENGTH = {"sha256": 64, "sha1": 40, "git-blob-sha1": 40}
# Licences that are not SPDX ids must say what they mean.
NEEDS_NOTE = {"bvlc-unrestricted", "non-commercial", "unknown", "other"}
# Hugging Face card licence ids for the SPDX ids; anything else is "other" + license_name.
HF_LICENSE = {"Apache-2.0": "apache-2.0", "BSD-2-Clause": "bsd-2-clause", "BSD-3-Clause": "bsd-3-clause",
              "MIT": "mit", "CC-BY-4.0": "cc-by-4.0", "CC-BY-NC-4.0": "cc-by-nc-4.0",
              "CC-BY-SA-4.0": "cc-by-sa-4.0"}
WEIGHT_FORMAT = {"torchvision": {"pth", "safetensors"}, "timm": {"safetensors", "pth"}, "caffe": {"caffemodel"},
                 "zoo": {"safetensors"}}


def by_entry(fn):
    return pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])(fn)


def card_front_matter(name: str) -> tuple[dict, str]:
    text = (CARDS / name).read_text("utf-8")
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert match, f"model_cards/{name} has no YAML front matter between --- lines"
    return yaml.safe_load(match.group(1)), match.group(2)


# ------------------------------------------------------------------------------------------------
# The catalogue as a whole.


def test_builtin_catalogue_has_each_collection():
    libraries = Counter(e.library for e in ENTRIES)
    assert libraries["caffe"] == 11
    assert libraries["torchvision"] >= 15 and libraries["timm"] >= 5


def test_names_and_aliases_are_unique_and_catalogue_builds():
    names = [e.name for e in ENTRIES]
    keys = names + [a for e in ENTRIES for a in e.aliases]
    dupes = [k for k, n in Counter(keys).items() if n > 1]
    assert not dupes, f"names/aliases used twice: {dupes}"
    Catalog(ENTRIES)  # raises RegistryError on any clash


def test_one_default_per_arch_and_every_bare_arch_resolves():
    defaults = Counter(e.arch for e in ENTRIES if e.default)
    assert not [a for a, n in defaults.items() if n > 1]
    cat = Catalog(ENTRIES)
    unresolved = sorted({e.arch for e in ENTRIES if cat.resolve(e.arch) is None})
    assert not unresolved, f"bare arch names with several tags and no default: {unresolved}"


def test_every_card_file_belongs_to_an_entry():
    cards = {e.card for e in ENTRIES if e.card}
    files = {item.name for item in CARDS.iterdir() if item.name.endswith(".md")}
    assert not files - cards, f"cards with no entry: {sorted(files - cards)}"


# ------------------------------------------------------------------------------------------------
# Each entry.


@by_entry
def test_entry_fields(entry: Entry):
    assert NAME_RE.match(entry.name)
    assert entry.license in LICENSES
    if entry.license in NEEDS_NOTE:
        assert entry.license_note, f"{entry.name}: licence {entry.license!r} needs a license_note"
    assert entry.description.strip(), "every built-in entry says what it is"
    assert entry.origin or entry.library == "zoo"
    assert entry.preprocessing.resize >= max(entry.preprocessing.crop)
    assert all(s > 0 for s in entry.preprocessing.std)
    for alias in entry.aliases:
        assert alias != entry.arch, "an alias equal to the bare arch would shadow the default rule"


@by_entry
def test_entry_files_and_checksums(entry: Entry):
    roles = [f.role for f in entry.files]
    if entry.library == "zoo" and entry.tag == "scratch":
        # reference architectures: built by the zoo, trained with `zoo train`, no weights to fetch
        assert not entry.files and "reference-architecture" in entry.tags
    elif entry.library in WEIGHT_FORMAT:
        assert "weights" in roles
        assert entry.file("weights").format in WEIGHT_FORMAT[entry.library]
    for spec in entry.files:
        assert spec.sources, f"{spec.filename} has no source"
        c = spec.checksum
        if c is None:
            assert all(s.kind == "hf" for s in spec.sources), "only Hub files may rely on the Hub's etag"
            continue
        assert re.fullmatch(r"[0-9a-f]+", c.value)
        if c.prefix:
            assert c.algorithm == "sha256" and 8 <= len(c.value) < 64 and c.note
        else:
            assert len(c.value) == DIGEST_LENGTH[c.algorithm]
        if c.trust in ("third-party", "suspect"):
            assert c.note, f"{spec.filename}: a {c.trust} checksum must say why"
        for s in spec.sources:
            if s.kind == "hf":
                assert s.hf_repo and s.hf_filename
            elif s.kind == "url":
                assert s.url.startswith(("http://", "https://", "file://"))


@by_entry
def test_entry_labels_exist_with_num_classes(entry: Entry):
    labels = labels_for(entry)
    if entry.head.labels is None:
        return
    assert len(labels) == entry.head.num_classes
    assert all(label.strip() for label in labels)


@by_entry
def test_entry_metrics_are_sourced(entry: Entry):
    for m in entry.metrics:
        assert m.dataset and m.metric
        assert 0.0 <= m.value <= 100.0
        if entry.collection == "builtin" and entry.library != "zoo":
            assert m.source and m.protocol, f"{entry.name}: metric {m.metric} needs its source and protocol"
    metric_names = [m.metric for m in entry.metrics]
    assert len(metric_names) == len(set(metric_names)), "one value per metric name"


@by_entry
def test_entry_round_trips(entry: Entry):
    data = json.loads(json.dumps(entry_to_dict(entry)))
    again = parse_entry(data, path=entry.origin_file, index=0, collection=entry.collection)
    assert again == entry
    assert again.architecture.kwargs == entry.architecture.kwargs  # compare=False on the dataclass
    assert entry_to_dict(again) == entry_to_dict(entry)


@by_entry
def test_entry_has_a_card_that_agrees(entry: Entry):
    assert entry.card == f"{entry.name}.md", "every curated entry has a card named after it"
    meta, body = card_front_matter(entry.card)
    assert meta["zoo_entry"] == entry.name
    if entry.license in HF_LICENSE:
        assert meta["license"] == HF_LICENSE[entry.license]
    else:
        assert meta["license"] == "other" and meta["license_name"] == entry.license
    assert meta.get("library_name")
    assert isinstance(meta.get("tags"), list)
    reported = {}
    for item in meta.get("model-index", []):
        for result in item["results"]:
            for m in result["metrics"]:
                reported[m["type"]] = float(m["value"])
    assert reported == {m.metric: m.value for m in entry.metrics}
    assert f"# {entry.name}" in body
    for section in ("## Intended use", "## Preprocessing", "## Limitations"):
        assert section in body, f"card {entry.card} lacks {section}"
    if entry.citation:
        assert entry.citation.splitlines()[0] in body


# ------------------------------------------------------------------------------------------------
# Facts that the task pins for particular families.


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.library == "caffe"], ids=lambda e: e.name)
def test_caffe_entries_follow_caffe_conventions(entry: Entry):
    p = entry.preprocessing
    assert (p.channel_order, p.scale, p.std) == ("BGR", 255.0, (1.0, 1.0, 1.0))
    assert p.mean_file or any(p.mean), "Caffe weights need a mean pixel or a mean file"
    if p.mean_file:
        assert entry.file(p.mean_file).format == "binaryproto"
    assert entry.architecture.builder == "caffemodel"
    assert entry.architecture.kwargs["input"] == list(p.input_size)
    assert entry.head.num_classes == 1000 and entry.head.labels == "imagenet-1k"
    assert entry.file("weights").filename.endswith(".caffemodel")


def test_caffe_specific_trust_and_digests():
    nin = BY_NAME["nin_imagenet.caffe_in1k"].file("weights").checksum
    assert (nin.trust, nin.value) == ("suspect", "8e89c8fcd46e02780e16c867a5308e7bb7af0803")
    for ver in ("1_0", "1_1"):
        assert BY_NAME[f"squeezenet{ver}.caffe_in1k"].file("weights").checksum.algorithm == "git-blob-sha1"
        assert BY_NAME[f"squeezenet{ver}.caffe_in1k"].head.classifier is None
    for name in ("vgg16.caffe_in1k", "resnet152.caffe_msra_in1k"):
        assert BY_NAME[name].file("weights").checksum.trust == "third-party"
    assert BY_NAME["bvlc_alexnet.caffe_in1k"].file("weights").checksum.trust == "publisher"
    assert len(BY_NAME["bvlc_alexnet.caffe_in1k"].file("weights").sources) >= 2
    assert BY_NAME["bvlc_googlenet.caffe_in1k"].head.classifier == "loss3/classifier"


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.library == "torchvision"], ids=lambda e: e.name)
def test_torchvision_prefix_is_in_the_file_name(entry: Entry):
    spec = entry.file("weights")
    assert spec.checksum.prefix and f"-{spec.checksum.value}." in spec.filename
    assert spec.sources[0].url.endswith("/" + spec.filename)


# ------------------------------------------------------------------------------------------------
# Malformed entries: each refused with the file, the entry and the field named.


VALID = {
    "name": "mynet.team_v1",
    "architecture": {"library": "timm", "builder": "resnet18", "kwargs": {}},
    "files": [{"role": "weights", "filename": "mynet.safetensors", "format": "safetensors",
               "checksum": {"sha256": "ab" * 32}, "sources": ["http://127.0.0.1:1/mynet.safetensors"]}],
    "license": "MIT",
    "preprocessing": {"input_size": [3, 224, 224], "resize": 256},
    "head": {"num_classes": 3, "labels": ["cat", "dog", "owl"]},
}


def _edit(path: str, value, *, delete: bool = False) -> dict:
    obj = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target = obj
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if delete:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return obj


MALFORMED = [
    # (case id, edited entry, field the error must name, words the message must hold)
    ("no-license", _edit("license", None, delete=True), "license", "required"),
    ("licence-not-allowed", _edit("license", "WTFPL"), "license", "allow-list"),
    ("bare-name", _edit("name", "mynet"), "name", "arch.tag"),
    ("upper-case-name", _edit("name", "MyNet.v1"), "name", "lower case"),
    ("unknown-field", _edit("homepage", "http://x"), "homepage", "not a known field"),
    ("unknown-library", _edit("architecture.library", "keras"), "architecture.library", "one of"),
    ("short-sha256", _edit("files.0.checksum", {"sha256": "ab" * 10}), "files[0].checksum.sha256", "64 hex"),
    ("upper-hex", _edit("files.0.checksum", {"sha1": "AB" * 20}), "files[0].checksum.sha1", "lower-case hex"),
    ("prefix-too-short", _edit("files.0.checksum", {"sha256-prefix": "abc"}), "files[0].checksum.sha256-prefix",
     "8 to 63"),
    ("two-digests", _edit("files.0.checksum", {"sha256": "ab" * 32, "sha1": "ab" * 20}), "files[0].checksum",
     "exactly one"),
    ("bad-trust", _edit("files.0.checksum.trust", "vibes"), "files[0].checksum.trust", "one of"),
    ("no-checksum-for-url", _edit("files.0.checksum", None, delete=True), "files[0].checksum", "required"),
    ("ftp-url", _edit("files.0.sources", ["ftp://127.0.0.1/x"]), "files[0].sources[0].url", "http"),
    ("path-in-filename", _edit("files.0.filename", "../evil.safetensors"), "files[0].filename", "plain file name"),
    ("bad-format", _edit("files.0.format", "h5"), "files[0].format", "one of"),
    ("size-is-bool", _edit("files.0.size", True), "files[0].size", "must be int"),
    ("labels-count", _edit("head.labels", ["cat"]), "head.labels", "3 strings"),
    ("negative-classes", _edit("head.num_classes", -1), "head.num_classes", "0 (a feature backbone"),
    ("unknown-crop-mode", _edit("preprocessing.crop_mode", "stretch"), "preprocessing.crop_mode", "center, squash"),
    ("input-size-2d", _edit("preprocessing.input_size", [224, 224]), "preprocessing.input_size", "channels"),
    ("resize-below-crop", _edit("preprocessing.resize", 100), "preprocessing.resize", "at least the crop"),
    ("mean-wrong-length", _edit("preprocessing.mean", [0.5]), "preprocessing.mean", "3 values"),
    ("zero-std", _edit("preprocessing.std", [1, 0, 1]), "preprocessing.std", "positive"),
    ("mean-file-no-role", _edit("preprocessing.mean_file", "mean"), "preprocessing.mean_file", "no file role"),
    ("unknown-preset", _edit("preprocessing", "imagenet_bgr"), "preprocessing", "no preprocessing block"),
    ("alias-upper", _edit("aliases", ["MyNet"]), "aliases", "lower-case"),
    ("metric-not-number", _edit("metrics", [{"dataset": "d", "metric": "top1", "value": "high"}]),
     "metrics[0].value", "must be float"),
]


@pytest.mark.parametrize("obj,field,words", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_entry_names_file_entry_and_field(obj, field, words):
    with pytest.raises(RegistryError) as info:
        parse_entry(obj, path="team/models.json", index=4)
    err = info.value
    assert err.path == "team/models.json"
    assert err.field == field
    assert err.entry == obj["name"]
    text = str(err)
    assert "team/models.json" in text and obj["name"] in text and field in text and words in text


def test_valid_template_parses():
    entry = parse_entry(VALID, path="team/models.json", index=0, collection="local")
    assert entry.source == "local" and entry.head.labels == ("cat", "dog", "owl")


def test_entry_without_name_is_named_by_index():
    obj = _edit("name", None, delete=True)
    with pytest.raises(RegistryError) as info:
        parse_entry(obj, path="team/models.json", index=7)
    assert info.value.entry == "#7" and info.value.field == "name"
