"""What the loop shows and writes: a progress bar only on a terminal, one summary line per epoch always,
nothing when quiet; metrics.jsonl, metrics.csv and TensorBoard events in the run folder, each epoch once
after a resume."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import textwrap

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from zoo.finetune.callbacks import progress_bar_enabled
from zoo.finetune.loop import TrainConfig, train

torch.set_num_threads(1)

SCRIPT = textwrap.dedent("""
    import sys, torch
    from torch import nn
    from torch.utils.data import TensorDataset
    from zoo.finetune.loop import TrainConfig, train
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 2.0
    y = torch.randint(0, 3, (256,), generator=g)
    data = TensorDataset(centres[y] + torch.randn(256, 8, generator=g), y)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05, optimizer="sgd", device="cpu", log_every=1)
    train(net, data, data, cfg, progress=sys.argv[1] == "progress")
""")


def blobs(n: int = 256) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 2.0
    y = torch.randint(0, 3, (n,), generator=g)
    return TensorDataset(centres[y] + torch.randn(n, 8, generator=g), y)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))


CFG = dict(batch_size=32, lr=0.05, optimizer="sgd", device="cpu", weight_decay=0.0)


def test_stderr_to_a_file_gets_summary_lines_and_no_carriage_returns(tmp_path):
    script = tmp_path / "log.py"
    script.write_text(SCRIPT)
    with open(tmp_path / "stderr.txt", "wb") as err:
        done = subprocess.run([sys.executable, str(script), "progress"], stdout=subprocess.PIPE, stderr=err,
                              timeout=300)
    assert done.returncode == 0
    text = (tmp_path / "stderr.txt").read_bytes().decode()
    assert "\r" not in text
    lines = text.splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "1/2"], ["epoch", "2/2"]]
    for part in ("train_loss ", "train_acc ", "val_loss ", "val_acc ", "lr ", "img/s", "left"):
        assert all(part in line for line in lines), part


def test_a_terminal_gets_the_progress_bar(tmp_path):
    script = tmp_path / "log.py"
    script.write_text(SCRIPT)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 120 columns, as a terminal has
    proc = subprocess.Popen([sys.executable, str(script), "progress"], stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:  # drain as it runs, so the child never blocks on a full terminal buffer
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert proc.wait(timeout=300) == 0
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert "\r" in text and "step" in text and "100%" in text  # tqdm's bar, redrawn in place
    assert "epoch 2/2" in text


def test_quiet_prints_nothing(capsys):
    train(mlp(), blobs(), blobs(64), TrainConfig(epochs=2, **CFG), progress=False)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_progress_bar_enabled_only_on_a_terminal(tmp_path):
    with open(tmp_path / "f.txt", "w") as fh:
        assert not progress_bar_enabled(fh)
    master, slave = pty.openpty()
    with os.fdopen(slave, "w") as term:
        assert progress_bar_enabled(term)
    os.close(master)


def test_run_folder_gets_jsonl_csv_and_tensorboard_with_each_epoch_once(tmp_path):
    result = train(mlp(), blobs(), blobs(64), TrainConfig(epochs=2, **CFG), run_dir=tmp_path, progress=False)
    with open(tmp_path / "metrics.jsonl", "a") as fh:  # what a kill between checkpoint and log can leave
        fh.write(json.dumps(result.history[-1]) + "\n")
    resumed = train(mlp(), blobs(), blobs(64), TrainConfig(epochs=3, **CFG), run_dir=tmp_path, resume=True,
                    progress=False)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == resumed.history and [r["epoch"] for r in rows] == [1, 2, 3]
    with open(tmp_path / "metrics.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in table] == [1, 2, 3]
    assert [float(r["val_acc"]) for r in table] == [r["val_acc"] for r in rows]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s", "seconds"} <= set(table[0])

    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        pytest.skip("tensorboard is not installed (optional): the loop writes no event files then")
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Scalars("epoch/val_loss")
    assert [s.step for s in scalars] == [r["step"] for r in rows]
    assert [s.value for s in scalars] == pytest.approx([r["val_loss"] for r in rows], rel=1e-6)
