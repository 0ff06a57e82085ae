"""Make the embedded default model and the bundled demo images.

1. Trains the LeNet-style net on Fashion-MNIST classes 0-4 with ``zoo train`` (the exact command is
   recorded), converts the run's weights to the bare network's keys and writes
   ``zoo/assets/lenet_fmnist5.safetensors``, then ``tools/embedded.json`` (sha256, size, test accuracy,
   command, time) for ``tools/gen_zoo_entries.py``.
2. Writes ``zoo/assets/demo/fashion5/<class>/NNN.png``: 30 images per class of the OTHER five classes
   (5-9: sandal, shirt, sneaker, bag, ankle_boot), drawn with a fixed seed from the Fashion-MNIST TRAIN
   split, 28x28 grayscale PNG.

Run: ``.venv/bin/python tools/make_embedded.py [--demo-only] [--run-dir DIR]``, then
``.venv/bin/python tools/gen_zoo_entries.py``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "zoo" / "assets"
WEIGHTS = ASSETS / "lenet_fmnist5.safetensors"
DEMO = ASSETS / "demo" / "fashion5"
INFO = Path(__file__).resolve().parent / "embedded.json"
COMMAND = "zoo train lenet --data fashion-mnist --classes 0,1,2,3,4 --epochs 6 --seed 0 --device cpu --out {out}"
DEMO_CLASSES = {5: "sandal", 6: "shirt", 7: "sneaker", 8: "bag", 9: "ankle_boot"}
PER_CLASS = 30


def make_weights(run_dir: Path) -> None:
    from safetensors.torch import load_file

    from zoo._io import file_digest
    from zoo.weights import save_state_dict

    command = COMMAND.format(out=run_dir)
    zoo_exe = Path(sys.executable).with_name("zoo")
    argv = [str(zoo_exe), *shlex.split(command)[1:], "--json", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    state = load_file(str(run_dir / "model.safetensors"))
    # The run holds ZooModel keys (body.*, head.*); the entry's file holds the bare network's (fc = head).
    network_state = {}
    for key, value in state.items():
        if key.startswith("body."):
            network_state[key[len("body."):]] = value
        elif key.startswith("head."):
            network_state["fc." + key[len("head."):]] = value
        else:
            raise SystemExit(f"unexpected key {key} in {run_dir / 'model.safetensors'}")
    save_state_dict(network_state, WEIGHTS, metadata={"format": "zoo-network", "entry": "lenet.fmnist5",
                                                     "command": COMMAND.format(out="runs/lenet_fmnist5")})
    info = {"sha256": file_digest(WEIGHTS), "size": WEIGHTS.stat().st_size,
            "test_accuracy": summary["test_accuracy"], "test_loss": summary["test_loss"],
            "train_seconds": summary["train_seconds"], "wall_seconds": round(wall, 1), "epochs": summary["epochs"],
            "images_per_s": summary["images_per_s"], "device": "cpu (2 shared cores)",
            "command": COMMAND.format(out="runs/lenet_fmnist5")}
    INFO.write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


def make_demo() -> None:
    import numpy as np
    from PIL import Image

    from zoo.finetune.datasets import find_fashion_mnist, read_idx

    folder = find_fashion_mnist()
    images = read_idx(folder / "train-images-idx3-ubyte.gz")
    labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(0)
    if DEMO.exists():
        shutil.rmtree(DEMO)
    for index, name in DEMO_CLASSES.items():
        picks = np.sort(rng.choice(np.flatnonzero(labels == index), size=PER_CLASS, replace=False))
        out = DEMO / name
        out.mkdir(parents=True)
        for i, j in enumerate(picks):
            Image.fromarray(images[j], mode="L").save(out / f"{i:03d}.png", optimize=True)
    total = sum(p.stat().st_size for p in DEMO.rglob("*.png"))
    (DEMO / "SOURCE.txt").write_text(
        "Fashion-MNIST (Zalando Research, MIT licence, https://github.com/zalandoresearch/fashion-mnist), TRAIN "
        f"split, classes 5-9, {PER_CLASS} images per class drawn with numpy default_rng(0); made by "
        "tools/make_embedded.py --demo-only. Copyright (c) 2017 Zalando SE.\n")
    print(f"wrote {PER_CLASS * len(DEMO_CLASSES)} PNGs to {DEMO.relative_to(ROOT)} ({total / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-only", action="store_true", help="only (re)write the demo image folder")
    parser.add_argument("--run-dir", type=Path, help="where the training run goes (default: a temporary folder)")
    args = parser.parse_args()
    make_demo()
    if args.demo_only:
        return
    with tempfile.TemporaryDirectory() as tmp:
        make_weights(args.run_dir or Path(tmp) / "lenet_fmnist5")


if __name__ == "__main__":
    main()
