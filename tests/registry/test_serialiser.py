"""Registry entries are written only through the schema's own serialiser, and the files in the package are
exactly its output: ``caffe.json`` is rendered from ``tools/caffe_entries.py`` (a drift between the two
fails here), and every built-in file is byte for byte what ``render_entries`` writes for its entries."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import stat
import sys
from importlib import resources
from pathlib import Path

import pytest

from zoo.registry.catalog import builtin_entries, load_entry_file
from zoo.registry.errors import RegistryError
from zoo.registry.records import Architecture
from zoo.registry.schema import parse_entry
from zoo.registry.serialiser import entry_to_dict, render_entries, write_entries

ROOT = Path(__file__).resolve().parents[2]
ENTRY_FILES = sorted(item.name for item in (resources.files("zoo.registry") / "entries").iterdir()
                     if item.name.endswith(".json"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from teamentry import TEAM_ENTRY as TEAM  # noqa: E402


@pytest.fixture
def gen_registry(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "tools"))
    for name in ("gen_registry", "caffe_entries", "citations"):
        sys.modules.pop(name, None)
    import gen_registry

    return gen_registry


def test_caffe_json_is_rendered_from_the_caffe_data(gen_registry):
    committed = (ROOT / "registry" / "entries" / "caffe.json").read_text("utf-8")
    assert gen_registry.caffe_text() == committed, (
        "registry/entries/caffe.json and tools/caffe_entries.py disagree: edit the data in caffe_entries.py and run "
        "`.venv/bin/python tools/gen_registry.py`")


def test_caffe_drift_is_caught(gen_registry, monkeypatch):
    data = gen_registry.caffe_entries()
    data[0]["metrics"][0]["value"] = 99.9
    monkeypatch.setattr(gen_registry, "caffe_entries", lambda: data)
    assert gen_registry.caffe_text() != (ROOT / "registry" / "entries" / "caffe.json").read_text("utf-8")


@pytest.mark.parametrize("name", ENTRY_FILES)
def test_builtin_files_are_exactly_the_serialisers_output(name):
    item = resources.files("zoo.registry") / "entries" / name
    text = item.read_text("utf-8")
    doc = json.loads(text)
    entries = load_entry_file(f"registry/entries/{name}", text=text)
    presets = {key: parse_entry({**doc["entries"][0], "preprocessing": block}, path=name, index=0).preprocessing
               for key, block in doc.get("preprocessing", {}).items()}
    rendered = render_entries(entries, path=f"registry/entries/{name}", comment=doc.get("comment", ""),
                              presets=presets or None, collection="builtin")
    assert rendered == text, f"registry/entries/{name} was edited by hand; regenerate it with its tools/ script"


@pytest.mark.parametrize("entry", builtin_entries(), ids=lambda e: e.name)
def test_entry_to_dict_gives_numbers_or_null(entry):
    data = entry_to_dict(entry)
    assert data["params"] is None or isinstance(data["params"], int)
    assert all(f["size"] is None or isinstance(f["size"], int) for f in data["files"])
    assert all(isinstance(m["value"], float) for m in data["metrics"])
    assert all(isinstance(v, int) for v in data["preprocessing"]["input_size"])
    assert list(data) == ["name", "aliases", "default", "description", "architecture", "files", "license",
                          "license_note", "origin", "paper", "citation", "preprocessing", "head", "metrics", "params",
                          "recipe", "tags", "card"]


def test_write_entries_round_trips_with_the_users_umask(tmp_path):
    entry = parse_entry(TEAM, path="t.json", index=0, collection="local")
    old = os.umask(0o022)
    try:
        path = write_entries(tmp_path / "reg" / "team.json", [entry], comment="our models")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by the team, like any file the user writes
    assert [p.name for p in path.parent.iterdir()] == ["team.json"]  # no partial left behind
    (again,) = load_entry_file(path, collection="local")
    assert entry_to_dict(again) == entry_to_dict(entry)
    assert json.loads(path.read_text())["comment"] == "our models"


def test_write_entries_refuses_an_entry_built_around_the_schema(tmp_path):
    entry = parse_entry(TEAM, path="t.json", index=0, collection="local")
    sneaky = dataclasses.replace(entry, architecture=Architecture("timm", "resnet18", {"checkpoint_path": "/x.pth"}))
    with pytest.raises(RegistryError, match="checkpoint_path") as info:
        write_entries(tmp_path / "team.json", [sneaky])
    assert info.value.field == "architecture.kwargs.checkpoint_path"
    assert not (tmp_path / "team.json").exists()


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_a_failed_write_is_one_line_and_leaves_no_partial(tmp_path, monkeypatch, code):
    from zoo.registry import serialiser

    def full_disk(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(serialiser.os, "replace", full_disk)
    with pytest.raises(RegistryError, match="cannot be written") as info:
        write_entries(tmp_path / "team.json", [parse_entry(TEAM, path="t.json", index=0, collection="local")])
    assert os.strerror(code) in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []
