"""DDP under torchrun on the CPU (gloo): two processes at half the batch follow the same loss trajectory
as one process at the full batch, and only rank 0 writes the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import json, os, sys, torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from zoo.finetune.loop import TrainConfig, train
    torch.set_num_threads(1)
    centres = torch.randn(3, 8, generator=torch.Generator().manual_seed(0)) * 2.0
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 3, (512,), generator=g)
    data = TensorDataset(centres[y] + torch.randn(512, 8, generator=g), y)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 3))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    steps = []
    cfg = TrainConfig(epochs=3, batch_size=32 // world, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=1e-4,
                      warmup_epochs=0.5, device="cpu", seed=3)
    run_dir = sys.argv[1]
    r = train(net, data, data, cfg, run_dir=run_dir, progress=False,
              callbacks={"on_step_end": [lambda info: steps.append(float(info["loss"]))]})
    if world > 1:
        import torch.distributed as dist
        gathered = [None] * world
        dist.all_gather_object(gathered, steps)
        steps = [sum(s) / world for s in zip(*gathered)]   # the global-batch loss of each step
    if int(os.environ.get("RANK", "0")) == 0:
        weights = [p.detach().flatten().tolist() for p in r.model.parameters()]
        json.dump({"history": r.history, "steps": steps, "weights": weights,
                   "world": world}, open(os.path.join(run_dir, "out.json"), "w"))
    if world > 1:
        dist.barrier()  # no rank tears gloo down while another still talks to it (that can abort)
        dist.destroy_process_group()
""")


def _run(cmd: list[str], tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                             "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_gloo_processes_follow_one_process_at_the_same_global_batch(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    single, multi = tmp_path / "single", tmp_path / "ddp"
    _run([sys.executable, str(script), str(single)], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
          str(multi)], tmp_path)
    one = json.loads((single / "out.json").read_text())
    two = json.loads((multi / "out.json").read_text())
    assert two["world"] == 2 and len(one["steps"]) == len(two["steps"]) == 3 * 16
    # Same samples per global step, gradients averaged by DDP: the same trajectory up to float rounding.
    for a, b in zip(one["steps"], two["steps"], strict=True):
        assert b == pytest.approx(a, rel=1e-4, abs=1e-6)
    for ra, rb in zip(one["history"], two["history"], strict=True):
        assert rb["train_loss"] == pytest.approx(ra["train_loss"], rel=1e-4)
        assert rb["val_loss"] == pytest.approx(ra["val_loss"], rel=1e-4)
    for pa, pb in zip(one["weights"], two["weights"], strict=True):
        assert pb == pytest.approx(pa, rel=1e-3, abs=1e-5)
    # Only rank 0 wrote: one metrics line per epoch, one checkpoint.
    assert len((multi / "metrics.jsonl").read_text().splitlines()) == 3
    assert (multi / "checkpoint.pt").is_file()
