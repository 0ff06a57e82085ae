"""Every byte of weights is verified: an entry cannot make a library read a file or URL on its own
(``architecture.kwargs`` through an allow-list, plain builder names), and the files an entry names besides
its downloads (card, label file, packaged source) stay inside their folder: the package for built-in
entries, the registry file's own folder for user entries, symlinks included."""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

import pytest

from zoo.registry import card_text, labels_for, package_file
from zoo.registry.catalog import get_entry, load_entry_file
from zoo.registry.errors import RegistryError
from zoo.registry.rules import MODEL_OPTIONS, confine, option_problem
from zoo.registry.schema import parse_entry

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from teamentry import TEAM_ENTRY as BASE  # noqa: E402


def entry(**changes) -> dict:
    obj = copy.deepcopy(BASE)
    obj.update(changes)
    return obj


def arch(library: str = "timm", builder: str = "resnet18", **kwargs) -> dict:
    return {"library": library, "builder": builder, "kwargs": kwargs}


def refused(obj: dict, field: str, *words: str, collection: str = "local") -> RegistryError:
    with pytest.raises(RegistryError) as info:
        parse_entry(obj, path="team/models.json", index=0, collection=collection)
    err = info.value
    assert err.field == field and err.path == "team/models.json"
    for word in words:
        assert word in str(err)
    assert "\n" not in str(err)
    return err


# ------------------------------------------------------------------------------------------------
# Options that would make a library read files or URLs.


@pytest.mark.parametrize("key,value,words", [
    ("checkpoint_path", "/tmp/evil.pth", "no checksum covers"),
    ("checkpoint_path", "model.safetensors", "no checksum covers"),  # a plain word is still a file to timm
    ("pretrained_cfg", {"url": "http://127.0.0.1/x.pth"}, "unverified"),
    ("pretrained_cfg_overlay", {"file": "/etc/passwd"}, "no checksum covers"),
    ("pretrained", True, "verified files"),
    ("weights_backbone", "DEFAULT", "no checksum covers"),
    ("cache_dir", "cache", "outside the zoo's cache"),
    ("file", "weights.pth", "unverified"),
    ("url", "http://127.0.0.1/w", "unverified"),
    ("num_classes", 5, "head.num_classes"),
    ("in_chans", 1, "preprocessing.input_size"),
    ("state_dict_path", "x", "read unverified"),       # an unknown option that names a file
    ("hf_hub_id", "org/repo", "read unverified"),
    ("some_new_option", 1, "not an allowed timm model option"),
    ("global_pool", "../../etc/passwd", "plain word"),  # an allowed option with a path for a value
    ("act_layer", "hf-hub:org/x", "plain word"),
    ("act_layer", "file:///etc/passwd", "plain word"),
    ("act_layer", "a" * 65, "plain word"),
    ("drop_rate", [[0.1]], "list of at most 16 plain numbers"),
    ("drop_rate", {"x": 1}, "boolean, a number"),
    ("img_size", 10**12, "boolean, a number"),
    ("img_size", list(range(17)), "at most 16"),
])
def test_timm_options_that_reach_files_are_refused(key, value, words):
    field = f"architecture.kwargs.{key}"
    refused(entry(architecture=arch(**{key: value})), field, words)
    refused(entry(architecture=arch(**{key: value})), field, words, collection="builtin")


@pytest.mark.parametrize("library,builder", [
    ("timm", "hf-hub:timm/resnet18.a1_in1k"), ("timm", "local-dir:/tmp/model"), ("timm", "../resnet18"),
    ("timm", "resnet18.a1_in1k/x"), ("timm", "resnet18.a1.in1k"), ("torchvision", "resnet50.tv_in1k"),
    ("torchvision", "resnet50 "), ("zoo", "lenet/../../x"), ("caffe", "file:x"),
    ("run", "hf-hub:org/repo"), ("run", "https://example.org/run"), ("run", "run\x00dir"),
])
def test_builders_with_a_scheme_or_path_are_refused(library, builder):
    refused(entry(architecture={"library": library, "builder": builder}), "architecture.builder")


def test_a_timm_builder_may_carry_its_pretrained_tag():
    # create_model("arch.tag", pretrained=False) takes the tag's config (input size), never its weights
    parsed = parse_entry(entry(architecture={"library": "timm", "builder": "resnet18.a1_in1k"}), path="x.json",
                         index=0)
    assert parsed.architecture.builder == "resnet18.a1_in1k"


def test_plain_options_of_every_library_pass():
    for library, options in MODEL_OPTIONS.items():
        for key in options:
            assert option_problem(library, key, 1) is None, (library, key)
    ok = parse_entry(entry(architecture=arch(drop_rate=0.1, global_pool="avg", img_size=[224, 224],
                                             act_layer="gelu_tanh", class_token=False)),
                     path="t.json", index=0)
    assert ok.architecture.kwargs["global_pool"] == "avg"
    parse_entry(entry(architecture={"library": "run", "builder": "/srv/runs/photos"}), path="t.json", index=0)


def test_every_builtin_entry_passes_the_option_rules():
    from zoo.registry.catalog import builtin_entries

    for e in builtin_entries():
        for key, value in e.architecture.kwargs.items():
            assert option_problem(e.library, key, value) is None, (e.name, key)


# ------------------------------------------------------------------------------------------------
# Paths an entry names: shape checked by the schema.


@pytest.mark.parametrize("field,value,words", [
    ("card", "/etc/passwd", "relative"),
    ("card", "../../../../etc/passwd.md", "'..'"),
    ("card", "cards/../../x.md", "'..'"),
    ("card", "C:\\x.md", "relative"),
    ("card", "~/.ssh/id_rsa.md", "relative"),
    ("card", "card.txt", ".md"),
    ("card", "a\x00.md", "control character"),
    ("head.labels", "../labels.txt", "'..'"),
    ("head.labels", "/etc/passwd.txt", "relative"),
    ("head.labels", "labels.csv", "label set"),
    ("files[0].sources[0].package", "../../../../etc/passwd", "'..'"),
    ("files[0].sources[0].package", "/etc/passwd", "relative"),
    ("files[0].sources[0].package", "file:///etc/passwd", "relative"),
    ("files[0].sources[0].hf.filename", "../../secret", "'..'"),
    ("files[0].sources[0].hf.repo", "org/../x", "repo id"),
    ("files[0].sources[0].url", "http://127.0.0.1:99999/x", "not a valid URL"),
    ("files[0].sources[0].url", "http:///x", "no host"),
    ("files[0].sources[0].url", "file://host/etc/passwd", "file:///"),
    ("files[0].sources[0].url", "http://x/a b", "no spaces"),
])
def test_paths_that_leave_their_folder_are_refused(field, value, words):
    obj = entry()
    if field == "card":
        obj["card"] = value
    elif field == "head.labels":
        obj["head"] = {"num_classes": 2, "labels": value}
    elif field.endswith("package"):
        obj["files"][0]["sources"] = [{"package": value}]
    elif field.endswith("hf.filename"):
        obj["files"][0]["sources"] = [{"hf": {"repo": "org/x", "filename": value}}]
    elif field.endswith("hf.repo"):
        obj["files"][0]["sources"] = [{"hf": {"repo": value, "filename": "model.safetensors"}}]
    else:
        obj["files"][0]["sources"] = [value]
    refused(obj, field, words)


def test_builtin_entries_name_label_sets_not_files():
    refused(entry(head={"num_classes": 2, "labels": "labels.txt"}), "head.labels", "label set", collection="builtin")


# ------------------------------------------------------------------------------------------------
# Confinement at read time: resolved, symlinks followed, must stay inside.


def _user_file(folder: Path, obj: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "team.json"
    path.write_text(json.dumps({"schema": 1, "entries": [obj]}))
    return path


def test_user_card_and_labels_are_read_from_the_registry_folder(tmp_path, monkeypatch):
    folder = tmp_path / "team"
    path = _user_file(folder, entry(card="cards/teamnet.md", head={"num_classes": 2, "labels": "labels/two.txt"}))
    (folder / "cards").mkdir()
    (folder / "cards" / "teamnet.md").write_text("# teamnet.v1\n")
    (folder / "labels").mkdir()
    (folder / "labels" / "two.txt").write_text("no\nyes\n")
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    found = get_entry("teamnet")
    assert card_text(found) == "# teamnet.v1\n"
    assert labels_for(found) == ("no", "yes")


def test_symlinks_out_of_the_registry_folder_are_refused(tmp_path, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("secret\n")
    (outside / "secret.txt").write_text("a\nb\n")
    folder = tmp_path / "team"
    path = _user_file(folder, entry(card="card.md", head={"num_classes": 2, "labels": "sub/labels.txt"},
                                    files=[{**BASE["files"][0], "sources": [{"package": "w.safetensors"}]}]))
    (folder / "card.md").symlink_to(outside / "secret.md")
    (folder / "sub").symlink_to(outside, target_is_directory=True)
    (outside / "labels.txt").write_text("a\nb\n")
    (folder / "w.safetensors").symlink_to(outside / "secret.txt")
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    found = get_entry("teamnet")
    for read, field in ((card_text, "card"), (labels_for, "head.labels"),
                        (lambda e: package_file(e, e.files[0].sources[0]), "files.sources.package")):
        with pytest.raises(RegistryError, match="leads outside") as info:
            read(found)
        assert info.value.field == field and info.value.path == str(path)


def test_a_symlink_inside_the_folder_is_fine(tmp_path):
    (tmp_path / "real.md").write_text("x")
    (tmp_path / "link.md").symlink_to(tmp_path / "real.md")
    assert confine(tmp_path, "link.md") == (tmp_path / "real.md").resolve()


def test_a_card_that_is_a_fifo_is_refused_without_blocking(tmp_path, monkeypatch):
    folder = tmp_path / "team"
    path = _user_file(folder, entry(card="card.md"))
    os.mkfifo(folder / "card.md")
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    with pytest.raises(RegistryError, match="not a regular file"):
        card_text(get_entry("teamnet"))


def test_label_file_must_hold_num_classes_labels(tmp_path, monkeypatch):
    folder = tmp_path / "team"
    path = _user_file(folder, entry(head={"num_classes": 3, "labels": "labels.txt"}))
    (folder / "labels.txt").write_text("no\nyes\n")
    monkeypatch.setenv("ZOO_REGISTRY", str(path))
    with pytest.raises(RegistryError, match="has 2 labels but head.num_classes is 3"):
        labels_for(get_entry("teamnet"))


def test_builtin_package_source_resolves_inside_the_zoo_package():
    lenet = get_entry("lenet.fmnist5")
    path = package_file(lenet, lenet.file("weights").sources[0])
    assert path.is_file() and path.name == "lenet_fmnist5.safetensors" and path.parent.name == "assets"


def test_user_package_source_resolves_beside_the_registry_file(tmp_path):
    folder = tmp_path / "team"
    path = _user_file(folder, entry(files=[{**BASE["files"][0], "sources": [{"package": "w/teamnet.safetensors"}]}]))
    (found,) = load_entry_file(path, collection="local")
    assert package_file(found, found.files[0].sources[0]) == (folder / "w" / "teamnet.safetensors").resolve()
