"""``zoo export`` through the real entry point (in process): what it prints, its exit codes, and that
its help costs no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clirun import zoo_cli  # noqa: E402

for _module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_module, reason="the export extra is not installed: pip install 'zoo[export]'")


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)




def test_export_prints_parity_and_the_folder(tmp_path, capsys):
    out = tmp_path / "lenet"
    code, text, err = zoo_cli(capsys, "export", "lenet.fmnist5", "--out", out)
    assert code == 0, err
    lines = text.splitlines()
    assert lines[0] == "lenet.fmnist5 -> onnx, 5 logits, any batch size."
    assert lines[1].startswith("parity (onnxruntime") and lines[1].endswith(": ok")
    assert lines[2].startswith(f"Wrote {out} (") and "model.onnx" in lines[2]
    code, text, err = zoo_cli(capsys, "export", "lenet.fmnist5", "--out", out, "--layer", "features.pool2",
                              "--pool", "max", "--force", "--json")
    assert code == 0, err
    result = json.loads(text)  # nothing else on stdout
    assert result["output"] == "features" and result["output_shape"] == [None, 64]
    assert result["parity"]["passed"] and result["parity"]["max_rel"] <= 1e-4
    code, text, err = zoo_cli(capsys, "export", "lenet.fmnist5", "--out", tmp_path / "ts", "--format",
                              "torchscript", "-q")
    assert code == 0 and text.splitlines() == [text.strip()] and "model.pt" in text


@pytest.mark.parametrize("args, message", [
    (["lenett.fmnist5"], "Unknown model 'lenett.fmnist5'"),
    (["lenet.fmnist5", "--layer", "conv9"], "has no layer 'conv9'"),
    (["lenet.fmnist5", "--quantize", "static"], "needs --calibrate DIR"),
])
def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys, args, message):
    code, text, err = zoo_cli(capsys, "export", *args, "--out", tmp_path / "out")
    assert code == 1 and text == ""
    assert err.startswith("Error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_existing_out_is_refused_with_exit_1(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code, _, err = zoo_cli(capsys, "export", "lenet.fmnist5", "--out", tmp_path / "out")
    assert code == 1 and "already exists; pass --force" in err


def test_usage_errors_exit_2(tmp_path, capsys):
    code, _, err = zoo_cli(capsys, "export", "lenet.fmnist5", "--out", tmp_path / "o", "--format", "tflite")
    assert code == 2 and "tflite" in err


def test_help_imports_no_torch():
    code = ("import sys\nfrom zoo.cli.main import main\n"
            "try:\n    main(['export', '--help'])\nexcept SystemExit as e:\n    assert not e.code\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'onnxruntime'))\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "zoo export resnet50 --out exports/resnet50" in result.stdout
