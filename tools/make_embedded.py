"""Make the embedded default model and the bundled demo images.

1. Trains the LeNet-style net on the five SOURCE classes of Fashion-MNIST with ``zoo train`` (the
   exact command is recorded), converts the run's weights to the bare network's keys and writes
   ``zoo/assets/lenet_fmnist5.safetensors``, then ``tools/embedded.json`` (classes, sha256, size, test
   accuracy, command, time) for ``tools/gen_zoo_entries.py``. ``--from-run DIR`` converts a run that the
   recorded command already made (``DIR/summary.json`` holds its ``--json`` line) instead of training again.
2. Writes ``zoo/assets/demo/fashion5/{train,test}/<class>/NNN.png``: images of the OTHER five classes,
   ``TRAIN_PER_CLASS`` from the Fashion-MNIST TRAIN split and ``TEST_PER_CLASS`` from its TEST split,
   drawn with a fixed seed, 28x28 grayscale PNG.

Run: ``.venv/bin/python tools/make_embedded.py [--demo-only] [--run-dir DIR | --from-run DIR]``, then
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
NAMES = ["t_shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]
# The first five classes (tops, trousers, dresses, coats); the other five are the demo's target classes.
# A split with footwear and bags on both sides (0,1,4,5,8) was tried and transferred no better (see
# BENCHMARKS.md).
SOURCE_CLASSES = [0, 1, 2, 3, 4]
EPOCHS = 6
COMMAND = (f"zoo train lenet --data fashion-mnist --classes {','.join(map(str, SOURCE_CLASSES))} --epochs {EPOCHS} "
           "--seed 0 --device cpu --out {out}")
DEMO_CLASSES = {i: NAMES[i] for i in range(10) if i not in SOURCE_CLASSES}
TRAIN_PER_CLASS = 40
TEST_PER_CLASS = 20


def train(run_dir: Path) -> tuple[dict, float]:
    """Run the recorded command; returns its ``--json`` summary and the wall time."""
    command = COMMAND.format(out=run_dir)
    zoo_exe = Path(sys.executable).with_name("zoo")
    argv = [str(zoo_exe), *shlex.split(command)[1:], "--json", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    (run_dir / "summary.json").write_text(json.dumps({**summary, "wall_seconds": round(wall, 1)}) + "\n")
    return summary, wall


def from_run(run_dir: Path) -> tuple[dict, float]:
    """A run the recorded command made earlier: its summary, checked against the command's options."""
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "model.json").read_text()) if (run_dir / "model.json").is_file() else {}
    if summary.get("arch") != "lenet" or summary.get("epochs") != EPOCHS or summary.get("data") != "fashion-mnist":
        raise SystemExit(f"{run_dir} was not made by `{COMMAND}` (summary {summary}); train again without --from-run")
    labels = config.get("labels") or config.get("head", {}).get("labels")
    if labels is not None and len(labels) != len(SOURCE_CLASSES):
        raise SystemExit(f"{run_dir} has {len(labels)} classes, the command trains {len(SOURCE_CLASSES)}")
    return summary, float(summary.get("wall_seconds", summary["train_seconds"]))


def make_weights(run_dir: Path, summary: dict, wall: float) -> None:
    from safetensors.torch import load_file

    from zoo._io import file_digest
    from zoo.weights import save_state_dict
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
    info = {"source_classes": SOURCE_CLASSES, "sha256": file_digest(WEIGHTS), "size": WEIGHTS.stat().st_size,
            "test_accuracy": summary["test_accuracy"], "test_loss": summary["test_loss"],
            "train_seconds": summary["train_seconds"], "wall_seconds": round(wall, 1), "epochs": summary["epochs"],
            "images_per_s": round(summary["images_per_s"], 1),
            "device": "a 2-core CPU shared with other jobs",
            "command": COMMAND.format(out="runs/lenet_fmnist5")}
    INFO.write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info, indent=1))


def make_demo() -> None:
    import numpy as np
    from PIL import Image

    from zoo.finetune.datasets import find_fashion_mnist, read_idx

    folder = find_fashion_mnist()
    rng = np.random.default_rng(0)
    if DEMO.exists():
        shutil.rmtree(DEMO)
    for part, split, per_class in (("train", "train", TRAIN_PER_CLASS), ("test", "t10k", TEST_PER_CLASS)):
        images = read_idx(folder / f"{split}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{split}-labels-idx1-ubyte.gz")
        for index, name in DEMO_CLASSES.items():
            picks = np.sort(rng.choice(np.flatnonzero(labels == index), size=per_class, replace=False))
            out = DEMO / part / name
            out.mkdir(parents=True)
            for i, j in enumerate(picks):
                Image.fromarray(images[j], mode="L").save(out / f"{i:03d}.png", optimize=True)
    total = sum(p.stat().st_size for p in DEMO.rglob("*.png"))
    classes = ", ".join(f"{i} {n}" for i, n in DEMO_CLASSES.items())
    (DEMO / "SOURCE.txt").write_text(
        "Fashion-MNIST (Zalando Research, MIT licence, https://github.com/zalandoresearch/fashion-mnist), "
        f"classes {classes} (the ones lenet.fmnist5 never saw): train/ holds {TRAIN_PER_CLASS} images per class "
        f"from the TRAIN split, test/ {TEST_PER_CLASS} per class from the TEST split, drawn with numpy "
        "default_rng(0); 28x28 grayscale PNG; made by tools/make_embedded.py --demo-only. "
        "Copyright (c) 2017 Zalando SE.\n")
    n = (TRAIN_PER_CLASS + TEST_PER_CLASS) * len(DEMO_CLASSES)
    print(f"wrote {n} PNGs to {DEMO.relative_to(ROOT)} ({total / 1024:.0f} KiB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-only", action="store_true", help="only (re)write the demo image folder")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--run-dir", type=Path, help="where the training run goes (default: a temporary folder)")
    where.add_argument("--from-run", type=Path, help="convert this run of the recorded command, no training")
    args = parser.parse_args()
    make_demo()
    if args.demo_only:
        return
    if args.from_run:
        make_weights(args.from_run, *from_run(args.from_run))
        return
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or Path(tmp) / "lenet_fmnist5"
        make_weights(run_dir, *train(run_dir))


if __name__ == "__main__":
    main()
