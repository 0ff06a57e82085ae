"""A run stopped anywhere (Ctrl-C, a real SIGINT, SIGKILL) and resumed ends with the very same weights
(torch.equal) as the run that was never stopped: for in-memory data augmented on the fly, a Dataset
augmented in DataLoader workers, and a caller's own shuffling DataLoader."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import resumable  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clirun import default_signals  # noqa: E402

torch.set_num_threads(1)
KINDS = ["memory", "dataset", "loader"]


def assert_same_weights(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("kind", KINDS)
def test_ctrl_c_mid_first_epoch_resumes_to_identical_weights(tmp_path, kind):
    clean = resumable.run(kind, tmp_path / "clean", workers=0)

    def interrupt(info):
        if info["epoch"] == 0 and info["batch"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        resumable.run(kind, tmp_path / "run", callbacks={"on_step_end": [interrupt]}, workers=0)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"], ckpt["step"]) == (0, 5, 5)
    resumed = resumable.run(kind, tmp_path / "run", resume=True, workers=0)
    assert_same_weights(clean.model.state_dict(), resumed.model.state_dict())
    # The interrupted epoch's figures cover all of it: the running sums are part of the state.
    for a, b in zip(clean.history, resumed.history, strict=True):
        assert (a["train_loss"], a["train_acc"], a["val_loss"]) == (b["train_loss"], b["train_acc"], b["val_loss"])
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]


def test_dataset_workers_do_not_change_the_result(tmp_path):
    """Each batch is augmented under its own seed, wherever it is loaded."""
    inline = resumable.run("dataset", None, workers=0).model.state_dict()
    workers = resumable.run("dataset", None, workers=2).model.state_dict()
    assert_same_weights(inline, workers)


def _script(tmp_path: Path, kind: str, mode: str, run_dir: Path, out: Path | None = None):
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, resumable.__file__, kind, mode, str(run_dir)] + ([str(out)] if out else [])
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
                          preexec_fn=default_signals)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "mode"), [("memory", "kill"), ("dataset", "kill"), ("loader", "sigint")])
def test_killed_or_interrupted_mid_epoch_resumes_to_identical_weights(tmp_path, kind, mode):
    run_dir = tmp_path / "run"
    stopped = _script(tmp_path, kind, mode, run_dir)
    if mode == "kill":
        assert stopped.returncode == -signal.SIGKILL, stopped.stderr
        # Killed in the 8th forward pass: the last checkpoint is the one written after step 7.
        expected = (0, 7)
    else:
        assert stopped.returncode == 130, stopped.stderr
        assert "finishing this step" in stopped.stderr
        expected = (0, 6)  # the signal came mid-forward; the step finished, then the checkpoint
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["batch"]) == expected
    out = tmp_path / "weights.pt"
    resumed = _script(tmp_path, kind, "resume", run_dir, out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    weights = torch.load(out, weights_only=True)
    assert_same_weights(weights["clean"], weights["resumed"])
