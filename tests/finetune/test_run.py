"""Run folders: loading, incomplete runs, evaluate/predict on real files, registering a run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from ftdata import make_folder, write_lenet_entry
from PIL import Image

import zoo
from zoo.errors import RegistryError, RunError
from zoo.finetune import fit, load_run, lr_find, register_run
from zoo.registry import list_models

torch.set_num_threads(2)


@pytest.fixture
def finished(tmp_path):
    base = write_lenet_entry(Path(os.environ["ZOO_CONFIG_DIR"]))
    data = make_folder(tmp_path / "data", {"ants": 10, "bees": 10})
    return fit(base, data, out=tmp_path / "my_run", epochs=6, lr=0.05, progress=False, device="cpu"), data


def test_missing_and_incomplete_runs(tmp_path, finished):
    with pytest.raises(RunError, match="no run folder"):
        load_run(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunError, match="config.json"):
        load_run(tmp_path / "plain")
    run, _ = finished
    (run.path / "model.safetensors").unlink()  # finished, then its weights went (a search's --keep does this)
    with pytest.raises(RunError, match=r"finished, but its weights \(model.safetensors\) are gone"):
        load_run(run.path)
    (run.path / "metrics.json").unlink()  # the weights come before the summary: this run never finished
    with pytest.raises(RunError, match="--resume"):
        load_run(run.path)


def test_evaluate_and_predict(tmp_path, finished):
    run, data = finished
    test = make_folder(tmp_path / "new", {"bees": 3, "ants": 2}, seed=9)
    (test / "ants" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    report = run.evaluate(test)
    assert report["n"] == 5 and [p for p, _ in report["skipped"]] == ["ants/broken.png"]
    assert report["per_class"]["bees"]["support"] == 3
    images = [*sorted((test / "bees").glob("*.png")), test / "ants" / "broken.png", Image.new("RGB", (20, 20))]
    preds = run.predict(images, top_k=5)
    assert [("error" in p) for p in preds] == [False, False, False, True, False]
    assert len(preds[0]["top"]) == 2  # capped at the number of classes
    assert abs(sum(t["probability"] for t in preds[0]["top"]) - 1) < 1e-5


def test_register_then_list_and_load(finished):
    run, _ = finished
    name, path = register_run(run.path, name="ants.ft1")
    assert name == "ants.ft1" and path.is_file()
    local = [e.name for e in list_models(source="local")]
    assert "ants.ft1" in local
    entry = zoo.get_entry("ants.ft1")
    assert entry.head.labels == ("ants", "bees") and entry.license == "MIT"
    model = zoo.load("ants.ft1")
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), run.model(x))
    with pytest.raises(RegistryError, match="taken"):
        register_run(run.path, name="ants.ft1")
    register_run(run.path, name="ants.ft1", force=True)
    with pytest.raises(RegistryError, match="arch.tag"):
        register_run(run.path, name="Bad Name!")
    default_name, _ = register_run(run.path)
    assert default_name == "my_run.local"
    assert json.loads(path.read_text())["entries"][0]["architecture"]["library"] == "run"


def test_a_registered_run_keeps_loading_after_its_folder_moves(tmp_path, finished):
    import shutil

    from zoo.registry.catalog import load_entry_file
    from zoo.registry.serialiser import entry_to_dict

    run, _ = finished
    x = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        expected = run.model(x)
    name, path = register_run(run.path, name="ants.moved")
    entry = zoo.get_entry("ants.moved")
    # Written through the schema's serialiser: reading the file back gives the same entry, as data.
    again = load_entry_file(path, collection="local")[0]
    assert entry_to_dict(again) == entry_to_dict(entry) == json.loads(path.read_text())["entries"][0]
    assert entry.files[0].checksum.trust == "local" and entry.tags == ("fine-tuned", "local")
    shutil.move(run.path, tmp_path / "elsewhere")
    with torch.no_grad():
        assert torch.allclose(zoo.load("ants.moved")(x), expected)


def test_history_counts_a_redone_epoch_once(finished):
    run, _ = finished
    rows = (run.path / "metrics.jsonl").read_text().splitlines()
    with open(run.path / "metrics.jsonl", "a") as fh:
        fh.write(rows[-1] + "\n")  # what a kill between the metrics line and the checkpoint leaves
    assert [r["epoch"] for r in run.history] == list(range(1, 7))


def test_lr_find_suggests_and_restores(tmp_path):
    base = write_lenet_entry(Path(os.environ["ZOO_CONFIG_DIR"]))
    data = make_folder(tmp_path / "data", {"a": 10, "b": 10, "c": 10})
    result = lr_find(base, data, strategy="full", batch_size=8, num_iter=40, start_lr=1e-5, end_lr=1.0, device="cpu")
    assert len(result.lrs) >= 10 and result.lrs == sorted(result.lrs)
    assert result.suggestion is not None and 1e-5 <= result.suggestion <= 1.0
    assert result.plot(tmp_path / "lr.png").is_file()


def test_sweep_restores_the_weights():
    from ftdata import tiny_model
    from torch.utils.data import TensorDataset

    from zoo.finetune.lr_find import sweep

    model = tiny_model(3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = TensorDataset(torch.randn(32, 3, 16, 16), torch.randint(0, 3, (32,)))
    result = sweep(model, data, num_iter=12, batch_size=8)
    assert len(result.lrs) > 5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
