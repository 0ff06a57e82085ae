"""``fit`` end to end on real image files: strategies, the feature cache, resume after SIGKILL, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from ftdata import make_folder, tiny_model, write_lenet_entry

import zoo
from zoo.errors import DataError, RunError, UnknownLayerError
from zoo.finetune import features as features_mod
from zoo.finetune.fit import fit

torch.set_num_threads(2)


@pytest.fixture
def base():
    return write_lenet_entry(Path(os.environ["ZOO_CONFIG_DIR"]))


@pytest.fixture
def data(tmp_path):
    return make_folder(tmp_path / "data", {"ants": 12, "bees": 12, "cats": 12})


def test_linear_run_lowers_loss_writes_a_complete_run_and_reloads(tmp_path, base, data):
    captured = {}
    run = fit(base, data, out=tmp_path / "run", epochs=12, lr=0.05, progress=False, device="cpu",
              on_setup=lambda s: captured.update(setup=s))
    history = run.history
    assert len(history) == 12 and history[-1]["train_loss"] < history[0]["train_loss"]
    names = set(os.listdir(run.path))
    assert {"model.safetensors", "model.json", "config.json", "split.json", "metrics.jsonl", "metrics.json",
            "skipped.tsv", "README.md", "checkpoint.pt", "curves.png", "confusion.png"} <= names
    assert run.base == base and run.config.strategy == "linear" and run.kind == "finetune"
    assert run.command.startswith("zoo.finetune.fit(") and "epochs=12" in run.command
    assert run.classes == ["ants", "bees", "cats"]
    card = (run.path / "README.md").read_text()
    assert base in card and "licence: MIT" in card and "zoo.load(" in card and "ants" in card
    assert run.summary["val"]["n"] == 6 and "confusion" in run.summary["val"]
    # zoo.load(run) predicts exactly what the trained model did.
    trained = captured["setup"].model.eval()
    loaded = zoo.load(run.path)
    assert loaded.labels == ("ants", "bees", "cats")
    x = torch.stack([loaded.transforms(zoo.open_image(p, mode="L")) for p in run.split.paths("val")])
    with torch.no_grad():
        assert torch.allclose(loaded(x), trained(x), atol=1e-5)
    preds = run.predict(run.split.paths("val"), top_k=2)
    assert all(len(p["top"]) == 2 and p["top"][0]["probability"] >= p["top"][1]["probability"] for p in preds)
    report = run.evaluate(data)
    assert report["n"] == 36 and 0.0 <= report["accuracy"] <= 1.0


def test_second_linear_run_reads_cached_features(tmp_path, base, data, monkeypatch):
    calls = []
    real = features_mod.extract
    monkeypatch.setattr(features_mod, "extract", lambda *a, **k: (calls.append(len(a[1])), real(*a, **k))[1])
    first = fit(base, data, out=tmp_path / "r1", epochs=2, progress=False, device="cpu")
    assert sum(calls) == 36 and not first.summary["features"]["train"]["hit"]
    calls.clear()
    second = fit(base, data, out=tmp_path / "r2", epochs=2, progress=False, device="cpu")
    assert calls == [] and second.summary["features"]["train"]["hit"]
    # Same pretrained weights, same files, same seed: the same head comes out.
    assert first.summary["val"]["confusion"] == second.summary["val"]["confusion"]


@pytest.mark.parametrize("strategy, extra", [("partial", {"unfreeze_from": "features.conv2"}),
                                             ("full", {}), ("linear", {"cut": "features.pool2", "head": "mlp",
                                                                       "cache_features": False})])
def test_strategies_train(tmp_path, base, data, strategy, extra):
    run = fit(base, data, out=tmp_path / "run", strategy=strategy, epochs=4, lr=3e-3, batch_size=8,
              progress=False, device="cpu", **extra)
    history = run.history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    groups = run.record["plan"]["groups"]
    if strategy == "full":
        assert len(groups) >= 3 and groups[0]["lr_scale"] < groups[-1]["lr_scale"] == 1.0
    if strategy == "partial":
        assert run.record["plan"]["unfreeze_from"] == "features.conv2"
    model = run.model
    assert model(torch.zeros(1, 1, 16, 16)).shape == (1, 3)


def test_errors(tmp_path, base, data):
    with pytest.raises(UnknownLayerError, match="features.conv1") as err:
        fit(base, data, out=tmp_path / "a", cut="layer99", progress=False, device="cpu")
    assert "features.conv1" in err.value.valid
    with pytest.raises(DataError, match="does not exist"):
        fit(base, tmp_path / "nope", out=tmp_path / "b", progress=False)
    fit(base, data, out=tmp_path / "c", epochs=1, progress=False, device="cpu")
    with pytest.raises(RunError, match="--resume"):
        fit(base, data, out=tmp_path / "c", epochs=1, progress=False, device="cpu")
    with pytest.raises(RunError, match="config.json"):
        fit(base, data, out=tmp_path / "d", resume=True, progress=False)


def test_the_saved_weights_are_the_best_epochs(tmp_path, base, data):
    snapshots, wrecked = {}, []

    def wreck(info):
        # Noise on every weight at the start of the last epoch: that epoch is the worst.
        if info["epoch"] == 3 and not wrecked:
            with torch.no_grad():
                for p in info["model"].parameters():
                    p.add_(torch.randn_like(p) * 2.0)
            wrecked.append(True)

    def snap(info):
        snapshots[info["epoch"]] = {k: v.detach().clone() for k, v in info["model"].state_dict().items()}

    run = fit(base, data, out=tmp_path / "run", strategy="full", epochs=4, lr=3e-3, batch_size=8, progress=False,
              device="cpu", callbacks={"on_step_end": [wreck], "on_epoch_end": [snap]})
    losses = {r["epoch"]: r["val_loss"] for r in run.history}
    # The validation accuracy decides (a run's monitor), an accuracy tie goes to the lower loss.
    best = max(run.history, key=lambda r: (r["val_acc"], -r["val_loss"]))["epoch"]
    assert best != 4 and run.summary["weights_epoch"] == best == run.summary["best_epoch"]["epoch"]
    saved = zoo.load(run.path).state_dict()
    assert all(torch.equal(saved[k], v) for k, v in snapshots[best].items())
    assert not all(torch.equal(saved[k], v) for k, v in snapshots[4].items())
    assert f"The saved weights are epoch {best}'s of 4" in (run.path / "README.md").read_text()
    assert not (run.path / "best.safetensors").exists()
    # The report is the saved weights': the best epoch's validation loss, not the last one's.
    assert run.summary["val"]["loss"] == pytest.approx(losses[best], rel=1e-4)


def test_python_model_object(tmp_path, data):
    run = fit(tiny_model(), data, out=tmp_path / "run", epochs=3, lr=0.05, progress=False, device="cpu")
    assert run.summary["val"]["n"] == 6


_CHILD = textwrap.dedent("""
    import sys, time, torch
    from pathlib import Path
    torch.set_num_threads(1)
    from zoo.finetune.fit import fit
    out = Path(sys.argv[3])
    def slow(info):
        # After the first checkpoint, report progress and slow down so the parent can kill mid-epoch.
        if (out / "checkpoint.pt").exists():
            (out / "progress").write_text(str(info["step"]))
            time.sleep(0.05)
    fit(sys.argv[1], sys.argv[2], out=out, strategy="full", epochs=3, lr=3e-3, batch_size=4, seed=5,
        progress=False, device="cpu", callbacks={"on_step_end": [slow]})
""")


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_to_the_same_result(tmp_path, base, data):
    out = tmp_path / "killed"
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    child = subprocess.Popen([sys.executable, str(script), base, str(data), str(out)], env=os.environ.copy())
    try:
        steps_per_epoch = 8  # 29-30 training images, batch 4
        while True:
            if child.poll() is not None:
                pytest.fail(f"the child ended (code {child.returncode}) before it could be killed")
            progress = out / "progress"
            if progress.exists() and progress.read_text().strip().isdigit() \
                    and int(progress.read_text()) >= steps_per_epoch + 3:
                break
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert not (out / "model.safetensors").exists()
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)  # whole, never partial
    assert ckpt["epoch"] >= 1
    resumed = fit(base, data, out=out, resume=True, progress=False, device="cpu")
    straight = fit(base, data, out=tmp_path / "straight", strategy="full", epochs=3, lr=3e-3, batch_size=4, seed=5,
                   progress=False, device="cpu")
    a, b = resumed.history, straight.history
    assert [r["epoch"] for r in a] == [1, 2, 3]
    assert a[-1]["train_loss"] == pytest.approx(b[-1]["train_loss"], rel=0.05, abs=0.02)
    assert a[-1]["val_loss"] == pytest.approx(b[-1]["val_loss"], rel=0.05, abs=0.02)
    assert abs(resumed.summary["val"]["accuracy"] - straight.summary["val"]["accuracy"]) <= 1 / 6 + 1e-9


def test_the_head_alone_is_kept_when_no_epoch_that_trains_the_body_beats_it(tmp_path, base, data):
    """From pretrained weights the new head first trains alone; its validation figures are epoch 0's. A
    body phase that only makes things worse (every weight zeroed after each step: constant outputs) is
    not kept: the saved model is the pretrained body under the trained head."""
    start: dict[str, torch.Tensor] = {}

    def keep_body(s):  # the body the run starts from, once the head has trained alone
        start.update({k: v.clone() for k, v in s.model.state_dict().items() if not k.startswith("head.")})

    def zero(info):
        with torch.no_grad():
            for p in info["model"].parameters():
                p.zero_()

    run = fit(base, data, out=tmp_path / "run", strategy="full", epochs=2, early_stopping=0, progress=False,
              device="cpu", callbacks={"on_step_end": [zero]}, on_setup=keep_body)
    head = run.record["head_phase"]
    assert head["val_acc"] > 0.5  # the head alone learned something: the zeroed epochs (1/3 right) are worse
    assert [r["val_acc"] for r in run.history] == pytest.approx([1 / 3, 1 / 3])
    assert run.summary["weights_epoch"] == 0 and run.summary["best_epoch"]["phase"] == "head alone"
    saved = zoo.load(run.path).state_dict()
    assert start and all(torch.equal(saved[k], v) for k, v in start.items())
    assert not all(torch.equal(v, torch.zeros_like(v)) for v in start.values())
    assert run.summary["val"]["accuracy"] == pytest.approx(head["val_acc"])
    assert "The saved weights are epoch 0's: the pretrained body as it was" in (run.path / "README.md").read_text()
    assert not (run.path / "best.safetensors").exists()
