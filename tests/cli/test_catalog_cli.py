"""``zoo list``, ``zoo info`` and ``zoo card`` as a user runs them (in-process through ``main``, with exit
codes and both streams): numbers in ``--json`` are numbers or null, a card outside its folder is an error,
and a broken or name-grabbing user registry file is one ``Warning:`` line while the rest keeps working."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from zoo.registry import builtin_entries

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clirun import zoo_cli  # noqa: E402
from teamentry import TEAM_ENTRY as USER_ENTRY  # noqa: E402


def registry(path: Path, *entries: dict, monkeypatch=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": 1, "entries": list(entries)}))
    if monkeypatch is not None:
        monkeypatch.setenv("ZOO_REGISTRY", str(path))
    return path


def test_list_json_numbers_are_numbers_or_null(capsys, tmp_path, monkeypatch):
    registry(tmp_path / "team.json", USER_ENTRY, monkeypatch=monkeypatch)
    code, out, err = zoo_cli(capsys, "list", "--json")
    assert code == 0 and not err
    rows = {row["name"]: row for row in map(json.loads, out.splitlines())}
    assert len(rows) == len(builtin_entries()) + 1
    for row in rows.values():
        assert row["top1"] is None or isinstance(row["top1"], float)
        assert row["params"] is None or isinstance(row["params"], int)
    assert rows["teamnet.v1"]["top1"] is None and rows["teamnet.v1"]["params"] is None
    assert rows["resnet50.tv2_in1k"]["top1"] == 80.858 and rows["resnet50.tv2_in1k"]["params"] == 25557032


def test_info_json_numbers_are_numbers_or_null(capsys, tmp_path, monkeypatch):
    registry(tmp_path / "team.json", USER_ENTRY, monkeypatch=monkeypatch)
    code, out, _ = zoo_cli(capsys, "info", "teamnet", "--json")
    data = json.loads(out)
    assert code == 0 and data["params"] is None and data["files"][0]["size"] is None
    assert data["preprocessing"]["resize"] == 64 and data["head"]["num_classes"] == 2
    code, out, _ = zoo_cli(capsys, "info", "bvlc_alexnet", "--json")
    data = json.loads(out)
    assert data["metrics"][0]["value"] == 57.1 and data["params"] is None
    assert data["preprocessing"]["input_size"] == [3, 227, 227]


@pytest.mark.parametrize("card", ["/etc/passwd", "../../../../../../etc/passwd", "x/../../passwd.md"])
def test_card_outside_its_folder_is_an_error(capsys, tmp_path, monkeypatch, card):
    registry(tmp_path / "team.json", {**USER_ENTRY, "card": card}, monkeypatch=monkeypatch)
    code, out, err = zoo_cli(capsys, "card", "teamnet.v1")
    assert code == 1 and out == ""
    assert "root:" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("Warning: ") and "field 'card'" in lines[0]
    assert lines[-1].startswith("Error: Unknown model 'teamnet.v1'") and str(tmp_path / "team.json") in lines[-1]


def test_card_through_a_symlink_out_is_an_error(capsys, tmp_path, monkeypatch):
    (tmp_path / "outside.md").write_text("the secret\n")
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "card.md").symlink_to(tmp_path / "outside.md")
    registry(tmp_path / "team" / "team.json", {**USER_ENTRY, "card": "card.md"}, monkeypatch=monkeypatch)
    code, out, err = zoo_cli(capsys, "card", "teamnet")
    assert code == 1 and "secret" not in out + err
    assert err.startswith("Error: ") and "leads outside" in err and len(err.strip().splitlines()) == 1


def test_user_card_beside_its_registry_file_prints(capsys, tmp_path, monkeypatch):
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "teamnet.md").write_text("---\nlicense: mit\n---\n# teamnet.v1\n")
    registry(tmp_path / "team" / "team.json", {**USER_ENTRY, "card": "teamnet.md"}, monkeypatch=monkeypatch)
    code, out, _ = zoo_cli(capsys, "card", "teamnet")
    assert code == 0 and out.endswith("# teamnet.v1\n")


def test_broken_user_file_is_one_warning_line_and_the_rest_works(capsys, tmp_path, monkeypatch):
    broken = tmp_path / "reg" / "broken.json"
    broken.parent.mkdir()
    broken.write_bytes(b"\xff\xfe{not json")
    registry(tmp_path / "reg" / "good.json", USER_ENTRY)
    monkeypatch.setenv("ZOO_REGISTRY", str(tmp_path / "reg"))
    code, out, err = zoo_cli(capsys, "list")
    assert code == 0 and "teamnet.v1" in out and "resnet50.tv2_in1k" in out
    (line,) = err.strip().splitlines()
    assert line.startswith("Warning: file ") and str(broken) in line and "not UTF-8" in line and "skipped" in line
    code, out, err = zoo_cli(capsys, "info", "resnet50")
    assert code == 0 and out.startswith("resnet50.tv2_in1k") and err.count("Warning: ") == 1


def test_builtin_download_works_beside_a_broken_user_file(capsys, tmp_path, monkeypatch):
    broken = registry(tmp_path / "broken.json", {**USER_ENTRY, "architecture": {"library": "timm",
                                                                              "builder": "hf-hub:org/x"}})
    monkeypatch.setenv("ZOO_REGISTRY", str(broken))
    monkeypatch.setenv("ZOO_OFFLINE", "1")  # the embedded model ships in the package: no network
    from huggingface_hub import constants

    # main() turns huggingface_hub offline for the whole process; the tests after this one need it back
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", constants.HF_HUB_OFFLINE)
    code, out, err = zoo_cli(capsys, "download", "lenet.fmnist5", "-q")
    assert code == 0, err
    assert Path(out.split()[0]).name == "lenet_fmnist5.safetensors"
    (line,) = [x for x in err.splitlines() if x.startswith("Warning: ")]
    assert str(broken) in line and "architecture.builder" in line


def test_user_alias_cannot_take_the_bare_builtin_name(capsys, tmp_path, monkeypatch):
    path = registry(tmp_path / "team.json", {**USER_ENTRY, "aliases": ["resnet50"]}, monkeypatch=monkeypatch)
    code, out, err = zoo_cli(capsys, "info", "resnet50")
    assert code == 0 and out.startswith("resnet50.tv2_in1k")
    (line,) = err.strip().splitlines()
    assert str(path) in line and "registry/entries/torchvision.json" in line and "alias 'resnet50'" in line
