"""The catalogue: names, aliases and bare arches resolve; search is fnmatch with a natural sort; user
registries (``ZOO_REGISTRY`` files and folders, the config folder) load under the same schema; a malformed
or hostile one, or one that would take a built-in name, is skipped with a warning naming the file, entry and
field while the rest of the catalogue loads; listing imports no torch."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.registry.catalog import (MAX_FILE_BYTES, Catalog, builtin_entries, catalog, get_entry, labels_for,
                                  list_models, load_entry_file, natural_key)
from zoo.registry.errors import RegistryError, RegistryWarning, UnknownModelError, ZooError
from zoo.registry.schema import parse_entry

USER_ENTRY = {
    "name": "teamnet.photos_v1",
    "aliases": ["teamnet_latest"],
    "architecture": {"library": "timm", "builder": "resnet18"},
    "files": [{"role": "weights", "filename": "teamnet.safetensors", "format": "safetensors",
               "checksum": {"sha256": "cd" * 32}, "sources": ["http://127.0.0.1:1/teamnet.safetensors"]}],
    "license": "Apache-2.0",
    "preprocessing": {"input_size": [3, 160, 160], "resize": 182},
    "head": {"num_classes": 2, "labels": ["no", "yes"]},
}


def user_entry(**changes) -> dict:
    obj = copy.deepcopy(USER_ENTRY)
    obj.update(changes)
    return obj


def write_registry(path: Path, entries: list[dict], **top) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": 1, **top, "entries": entries}), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------
# Resolution.


@pytest.mark.parametrize("name,expected", [
    ("resnet50", "resnet50.tv2_in1k"),            # torchvision's DEFAULT is V2
    ("resnet18", "resnet18.tv_in1k"),
    ("resnet50.tv_in1k", "resnet50.tv_in1k"),
    ("resnet50.tv_imagenet1k_v1", "resnet50.tv_in1k"),  # torchvision's own member name, as an alias
    ("resnet50.a1_in1k", "resnet50.a1_in1k"),     # timm weights: reachable by full name, never the default
    ("caffe_resnet50", "resnet50.caffe_msra_in1k"),
    ("bvlc_googlenet", "bvlc_googlenet.caffe_in1k"),
    ("caffe_googlenet", "bvlc_googlenet.caffe_in1k"),
    ("vgg16", "vgg16.tv_in1k"),
    ("caffe_vgg16", "vgg16.caffe_in1k"),
    ("squeezenet1_1", "squeezenet1_1.tv_in1k"),
    ("caffe_squeezenet1_1", "squeezenet1_1.caffe_in1k"),
    ("nin_imagenet", "nin_imagenet.caffe_in1k"),
    ("convnext_tiny", "convnext_tiny.tv_in1k"),
    ("  ResNet50  ", "resnet50.tv2_in1k"),        # case and surrounding space do not matter
])
def test_resolution(name, expected):
    assert get_entry(name).name == expected


def test_unknown_name_suggests_close_matches():
    with pytest.raises(UnknownModelError) as info:
        get_entry("resnet5")
    err = info.value
    assert isinstance(err, KeyError) and isinstance(err, ZooError)
    assert err.name == "resnet5" and err.suggestions
    assert any(s.startswith("resnet5") for s in err.suggestions)
    assert "Did you mean" in str(err) and "zoo list" in str(err)


def _entry(name: str, default: bool = False, aliases: tuple[str, ...] = ()) -> object:
    return parse_entry(user_entry(name=name, default=default, aliases=list(aliases)), path="t.json", index=0)


def test_single_tag_arch_resolves_without_default_but_two_tags_need_one():
    cat = Catalog([_entry("solo.v1"), _entry("pair.a"), _entry("pair.b")])
    assert cat.resolve("solo") == "solo.v1"
    assert cat.resolve("pair") is None
    with pytest.raises(UnknownModelError):
        cat.get("pair")
    assert Catalog([_entry("pair.a"), _entry("pair.b", default=True)]).resolve("pair") == "pair.b"


@pytest.mark.parametrize("entries,words", [
    ([("x.a", False, ()), ("x.a", False, ())], "name 'x.a' is already used"),
    ([("x.a", False, ("shared",)), ("y.b", False, ("shared",))], "alias 'shared' is already used"),
    ([("x.a", False, ()), ("y.b", False, ("x.a",))], "alias 'x.a' is already used"),
    ([("x.a", True, ()), ("x.b", True, ())], "already has a default tag"),
])
def test_catalog_clashes_are_errors_not_overwrites(entries, words):
    with pytest.raises(RegistryError, match=words):
        Catalog([_entry(*e) for e in entries])


# ------------------------------------------------------------------------------------------------
# Search.


def test_fnmatch_pattern_and_natural_sort():
    names = [e.name for e in list_models("resnet*.tv*")]
    # Natural order compares digit runs as numbers: 18 < 34 < 50 < 101 < 152 ('.tv' sorts before '.tv_').
    assert names == ["resnet18.tv_in1k", "resnet34.tv_in1k", "resnet50.tv2_in1k", "resnet50.tv_in1k",
                     "resnet101.tv2_in1k", "resnet101.tv_in1k", "resnet152.tv2_in1k", "resnet152.tv_in1k"]


def test_bare_word_matches_as_substring_and_aliases_match():
    assert {e.name for e in list_models("googlenet")} == {"googlenet.tv_in1k", "bvlc_googlenet.caffe_in1k",
                                                          "googlenet.scratch"}
    assert [e.name for e in list_models("caffe_nin")] == ["nin_imagenet.caffe_in1k"]
    assert list_models("no-such-model-anywhere") == []


def test_source_filter():
    caffe = list_models(source="caffe")
    assert len(caffe) == 11 and all(e.library == "caffe" for e in caffe)
    assert all(e.library == "timm" for e in list_models("resnet50*", source="timm"))
    assert len(list_models()) == len(list_models(source="all")) == len(builtin_entries())
    with pytest.raises(ValueError, match="source must be one of"):
        list_models(source="keras")


def test_natural_key():
    assert sorted(["resnet101", "resnet18", "resnet2", "resnet50"], key=natural_key) == \
        ["resnet2", "resnet18", "resnet50", "resnet101"]


# ------------------------------------------------------------------------------------------------
# User registries.


def test_zoo_registry_file(tmp_path, monkeypatch):
    path = write_registry(tmp_path / "team.json", [USER_ENTRY])
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    entry = get_entry("teamnet")
    assert entry.name == "teamnet.photos_v1" and entry.collection == "local" and entry.source == "local"
    assert entry.origin_file == str(path)
    assert get_entry("teamnet_latest") == entry
    assert [e.name for e in list_models(source="local")] == ["teamnet.photos_v1"]
    assert "teamnet.photos_v1" in {e.name for e in list_models()}


def test_zoo_registry_folder_and_several_paths(tmp_path, monkeypatch):
    write_registry(tmp_path / "reg" / "a.json", [user_entry(name="alpha.v1", aliases=[])])
    write_registry(tmp_path / "reg" / "nested" / "b.json", [user_entry(name="beta.v1", aliases=[])])
    (tmp_path / "reg" / "README.txt").write_text("not a registry file")
    other = write_registry(tmp_path / "other.json", [user_entry(name="gamma.v1", aliases=[])])
    monkeypatch.setenv("ZOO_REGISTRY", os.pathsep.join([str(tmp_path / "reg"), str(other)]))
    assert [e.name for e in list_models(source="local")] == ["alpha.v1", "beta.v1", "gamma.v1"]


def test_config_folder_registry(monkeypatch, tmp_path):
    config = tmp_path / "config"
    monkeypatch.setenv("ZOO_CONFIG_DIR", str(config))
    write_registry(config / "registry" / "mine.json", [USER_ENTRY])
    assert get_entry("teamnet.photos_v1").source == "local"


def test_bare_list_file_is_accepted(tmp_path, monkeypatch):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([USER_ENTRY]))
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    assert get_entry("teamnet").name == "teamnet.photos_v1"


def test_shared_preprocessing_block(tmp_path, monkeypatch):
    block = {"input_size": [3, 96, 96], "resize": 110, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    path = write_registry(tmp_path / "team.json", [user_entry(preprocessing="small_rgb")],
                          preprocessing={"small_rgb": block})
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    assert get_entry("teamnet").preprocessing.input_size == (3, 96, 96)


MALFORMED_FILES = [
    # (case id, file bytes, entry named in the error or None, field, words)
    ("not-json", b'{"schema": 1, "entries": [', None, None, "not valid JSON"),
    ("no-entries", b'{"schema": 1}', None, "entries", "'entries' list"),
    ("future-schema", b'{"schema": 99, "entries": []}', None, "schema", "schema 99"),
    ("unknown-top-level", b'{"schema": 1, "entries": [], "models": []}', None, "models", "unknown top-level"),
    ("entry-missing-license", json.dumps({"entries": [{k: v for k, v in USER_ENTRY.items() if k != "license"}]}),
     "teamnet.photos_v1", "license", "required"),
    ("entry-bad-checksum", json.dumps({"entries": [user_entry(files=[{**USER_ENTRY["files"][0],
                                                                       "checksum": {"md5": "00"}}])]}),
     "teamnet.photos_v1", "files[0].checksum.md5", "not a known field"),
    ("second-entry-bad", json.dumps({"entries": [user_entry(name="good.v1", aliases=[]),
                                                 user_entry(name="bad.v1", aliases=[], head={"num_classes": "two"})]}),
     "bad.v1", "head.num_classes", "must be int"),
    ("entry-bad-preprocessing", json.dumps({"entries": [user_entry(preprocessing={"input_size": [3, 224, 224],
                                                                                   "channel_order": "RGBA"})]}),
     "teamnet.photos_v1", "preprocessing.channel_order", "one of"),
    # Hostile bytes: each a one-line RegistryError naming the file, never a traceback.
    ("latin-1", json.dumps({"entries": [user_entry(description="caf\u00e9")]}, ensure_ascii=False).encode("latin-1"),
     None, None,
     "not UTF-8 text"),
    ("deeply-nested", b'{"entries": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", None, None, "nests deeper"),
    ("nested-below-parser-limit", b'{"entries": [' + b"[" * 500 + b"]" * 500 + b"]}", None, None, "nests deeper"),
    ("raw-nul-byte", b'{"schema": 1, "entries": [\x00]}', None, None, "not valid JSON"),
    ("escaped-nul-in-name", json.dumps({"entries": [user_entry(name="team\u0000net.v1")]}), "#0",
     "name", "control character"),
    ("escaped-nul-in-filename", json.dumps({"entries": [user_entry(files=[{**USER_ENTRY["files"][0],
                                                                          "filename": "a\u0000.safetensors"}])]}),
     "teamnet.photos_v1", "files[0].filename", "control character"),
    ("terminal-escape-in-description", json.dumps({"entries": [user_entry(description="\u001b]0;owned\u0007")]}),
     "teamnet.photos_v1", "description", "control character"),
    ("huge-integer", b'{"entries": [{"name": "x.y", "params": 1' + b"0" * 5000 + b"}]}", None, None, "out of range"),
    ("float-overflow", json.dumps({"entries": [user_entry()]}).replace('"resize": 182', '"resize": 1e999').encode(),
     None, None, "out of range"),
    ("nan", json.dumps({"entries": [user_entry()]}).replace('"resize": 182', '"resize": NaN').encode(), None, None,
     "NaN is not a number"),
    ("huge-side", json.dumps({"entries": [user_entry(preprocessing={"input_size": [3, 10**15, 10**15]})]}),
     "teamnet.photos_v1", "preprocessing.input_size", "width <= 16384"),
    ("entries-not-a-list", b'{"entries": {"name": "x"}}', None, "entries", "'entries' list"),
    ("entry-not-an-object", b'{"entries": ["resnet50"]}', "#0", "", "JSON object"),
    ("aliases-wrong-type", json.dumps({"entries": [user_entry(aliases="teamnet")]}), "teamnet.photos_v1",
     "aliases", "must be list"),
]


def _write_malformed(tmp_path, text) -> Path:
    path = tmp_path / "team" / "broken.json"
    path.parent.mkdir()
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


@pytest.mark.parametrize("text,entry,field,words", [c[1:] for c in MALFORMED_FILES],
                         ids=[c[0] for c in MALFORMED_FILES])
def test_malformed_user_registry_names_file_entry_and_field(tmp_path, text, entry, field, words):
    path = _write_malformed(tmp_path, text)
    with pytest.raises(RegistryError) as info:
        load_entry_file(path, collection="local")
    err = info.value
    assert err.path == str(path) and str(path) in str(err)
    assert err.entry == entry and err.field == field
    assert words in str(err)
    assert "\n" not in str(err) and len(str(err)) < 600  # one line, however large the hostile value
    if field:
        assert field in str(err)


@pytest.mark.parametrize("text", [c[1] for c in MALFORMED_FILES], ids=[c[0] for c in MALFORMED_FILES])
def test_broken_user_file_is_skipped_with_a_warning_and_the_rest_loads(tmp_path, monkeypatch, text):
    path = _write_malformed(tmp_path, text)
    good = write_registry(tmp_path / "team" / "good.json", [user_entry(name="goodnet.v1", aliases=[])])
    monkeypatch.setenv("ZOO_REGISTRY", str(path.parent))
    with pytest.warns(RegistryWarning) as caught:
        names = {e.name for e in list_models()}
    assert names == {e.name for e in builtin_entries()} | {"goodnet.v1"}
    assert get_entry("resnet50").name == "resnet50.tv2_in1k" and get_entry("goodnet").origin_file == str(good)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and str(path) in messages[0] and "skipped" in messages[0]
    assert "\n" not in messages[0]


def test_unknown_name_says_which_user_files_were_skipped(tmp_path, monkeypatch):
    path = write_registry(tmp_path / "team.json", [user_entry(license="WTFPL")])
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    with pytest.warns(RegistryWarning), pytest.raises(UnknownModelError) as info:
        get_entry("teamnet")
    assert info.value.skipped == [str(path)] and str(path) in str(info.value)


def test_unreadable_things_in_a_registry_folder_are_skipped_not_waited_on(tmp_path, monkeypatch):
    folder = tmp_path / "reg"
    folder.mkdir()
    os.mkfifo(folder / "fifo.json")  # reading it would block for ever
    (folder / "loop").symlink_to(folder, target_is_directory=True)  # a walk that follows links never ends
    (folder / "huge.json").write_bytes(b"")
    os.truncate(folder / "huge.json", MAX_FILE_BYTES + 1)
    write_registry(folder / "ok.json", [USER_ENTRY])
    monkeypatch.setenv("ZOO_REGISTRY", os.pathsep.join([str(folder), str(tmp_path / "missing.json")]))
    with pytest.warns(RegistryWarning) as caught:
        cat = catalog()
    assert get_entry("teamnet").name == "teamnet.photos_v1"
    reasons = {Path(err.path).name: str(err) for err in cat.skipped}
    assert "not a regular file" in reasons["fifo.json"]
    assert "limited to" in reasons["huge.json"]
    assert "does not exist" in reasons["missing.json"]
    assert len(caught) >= 3


@pytest.mark.parametrize("clash,words", [
    ({"name": "resnet50.tv_in1k", "aliases": []}, "name 'resnet50.tv_in1k' is already used"),
    ({"name": "mine.v1", "aliases": ["caffe_resnet50"]}, "alias 'caffe_resnet50' is already used"),
    ({"name": "resnet50.team", "aliases": [], "default": True}, "already has a default tag"),
    # the bare arch of a built-in: resolved before defaults, it would have taken `zoo.load("resnet50")`
    ({"name": "mine.v1", "aliases": ["resnet50"]}, "alias 'resnet50' is already used by 'resnet50.tv2_in1k'"),
    ({"name": "mine.v1", "aliases": ["vgg16"]}, "alias 'vgg16' is already used by 'vgg16.tv_in1k'"),
    ({"name": "mine.v1", "aliases": ["resnet50.tv_imagenet1k_v1"]}, "alias 'resnet50.tv_imagenet1k_v1'"),
    ({"name": "nin_imagenet.team", "aliases": [], "default": True}, "already has a default tag"),
])
def test_user_entry_cannot_take_a_builtin_name(tmp_path, monkeypatch, clash, words):
    path = write_registry(tmp_path / "team.json", [user_entry(**clash)])
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    before = {name: get_entry(name).name for name in ("resnet50", "vgg16", "caffe_resnet50", "nin_imagenet")}
    with pytest.warns(RegistryWarning, match=re.escape(words)) as caught:
        cat = catalog()
    (err,) = cat.skipped
    assert err.path == str(path) and words in str(err)
    assert "registry/entries/" in str(err) and str(path) in str(err)  # both files named
    assert str(path) in str(caught[0].message)
    after = {name: cat.get(name).name for name in before}
    assert after == before and all(e.collection == "builtin" for e in cat)


def test_user_entry_cannot_change_how_a_builtin_single_tag_arch_resolves():
    builtin = parse_entry(user_entry(name="solo.a", aliases=[]), path="registry/entries/x.json", index=0)
    local = parse_entry(user_entry(name="solo.b", aliases=[]), path="team.json", index=0, collection="local")
    cat = Catalog([builtin])
    cat.add_file([local])
    assert cat.resolve("solo") == "solo.a" and cat.resolve("solo.b") == "solo.b"


def test_a_clashing_file_is_added_all_or_nothing():
    cat = Catalog([_entry("x.a")])
    first = parse_entry(user_entry(name="y.a", aliases=["y_latest"]), path="t.json", index=0, collection="local")
    second = parse_entry(user_entry(name="x.a", aliases=[]), path="t.json", index=1, collection="local")
    with pytest.raises(RegistryError, match="already used"):
        cat.add_file([first, second])
    assert cat.resolve("y.a") is None and cat.resolve("y_latest") is None and len(cat) == 1


def test_duplicate_across_two_user_files_skips_the_second(tmp_path, monkeypatch):
    first = write_registry(tmp_path / "reg" / "a.json", [USER_ENTRY])
    second = write_registry(tmp_path / "reg" / "b.json", [USER_ENTRY])
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "reg"))
    with pytest.warns(RegistryWarning, match="already used") as caught:
        assert get_entry("teamnet").origin_file == str(first)
    message = str(caught[0].message)
    assert str(second) in message and str(first) in message


def test_user_registry_changes_are_seen_without_restart(tmp_path, monkeypatch):
    path = tmp_path / "team.json"
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    with pytest.warns(RegistryWarning, match="does not exist"):
        assert list_models(source="local") == []
    write_registry(path, [USER_ENTRY])
    assert len(list_models(source="local")) == 1


# ------------------------------------------------------------------------------------------------
# Labels.


def test_labels():
    assert len(labels_for(get_entry("resnet50"))) == 1000
    assert labels_for(get_entry("bvlc_alexnet"))[0] == "tench"  # Caffe and torchvision share the index order
    assert labels_for(parse_entry(USER_ENTRY, path="t.json", index=0)) == ("no", "yes")


def test_missing_label_set_is_an_error():
    entry = parse_entry(user_entry(head={"num_classes": 5, "labels": "no-such-set"}), path="t.json", index=0)
    with pytest.raises(RegistryError, match="no-such-set"):
        labels_for(entry)


# ------------------------------------------------------------------------------------------------
# The catalogue path stays free of heavy imports.


def test_list_models_imports_no_torch():
    code = ("import sys, zoo; names = [e.name for e in zoo.list_models()]; zoo.get_entry('resnet50'); "
            "heavy = sorted(m for m in ('torch', 'torchvision', 'timm', 'PIL', 'numpy') if m in sys.modules); "
            "assert not heavy, heavy; assert len(names) > 30, names")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_registry_package_is_standard_library_only():
    import ast
    import importlib

    # zoo.registry re-exports a function named catalog, so fetch the module itself.
    root = Path(importlib.import_module("zoo.registry.catalog").__file__).parent
    stdlib = set(sys.stdlib_module_names)
    for source in root.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                mods = [node.module]
            else:
                continue
            for mod in mods:
                top = mod.split(".")[0]
                # list_external imports torchvision/timm inside the function, on request only.
                if top in ("torchvision", "timm"):
                    continue
                assert top in stdlib or top == "__future__", f"{source.name} imports {mod}"
