"""Transfer on real weights: torchvision's ImageNet MobileNetV2 (../shared/real/torch) fine-tuned on a few
Fashion-MNIST photos per class, against the same architecture trained from scratch with the same budget.

Data, per seed and size: ``N`` training and ``--val-per-class`` validation images per class from the
official TRAIN split (drawn with the seed), and the same ``--test-per-class`` images per class from the
TEST split for every seed and size (1,000 by default); all ten classes. The folders are made by
``benchmarks/finetune_transfer.py``'s ``make_folder`` (28x28 grey PNG), then each image is made into an
RGB photo of ``--image-size`` pixels (bicubic upscaling).

The model: the real weights file, served as a user registry entry through a mirror folder (the zoo's
own fetch, checksum and conversion path; offline), with preprocessing at ``--image-size`` (resize to
it, ImageNet mean and std). Three sides, each ``zoo.finetune.fit`` on the same folder:

- ``linear``: the frozen ImageNet body, a new linear head trained on cached features;
- ``full``: every layer from the ImageNet weights (the zoo's discriminative learning rates);
- ``scratch``: the same network from random weights (``pretrained=False``), trained in full.

``full`` and ``scratch`` get the same budget: the same images, epochs, batch size, optimizer and
schedule; each side's learning rate is fixed by ``--lrs`` (not tuned per side: a side that would gain
from another rate is reported as it is). The weights kept are the best epoch's by validation loss; the
figure is the accuracy on the test images. No augmentation (both sides alike).

A run is long on two CPU cores, so it runs in chunks: each call does the (seed, size) pairs asked for,
appends every result to ``--results`` (a JSON list) and skips what that file already holds; ``--report``
prints the table (mean +- sd over the seeds) from it::

    .venv/bin/python benchmarks/transfer_real.py --seeds 0 --sizes 10      # one chunk (a few minutes)
    for s in 0 1 2 3 4; do for n in 10 20 50; do
        flock /tmp/zoo-cpu.lock .venv/bin/python benchmarks/transfer_real.py --seeds $s --sizes $n; done; done
    .venv/bin/python benchmarks/transfer_real.py --report
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run from a checkout: the repository root first, so `import zoo` is this tree's package.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from finetune_transfer import FMNIST, load_fmnist, make_folder  # noqa: E402

WEIGHTS = "mobilenet_v2-b0353104.pth"
ENTRY = "mobilenet_v2.real_in1k"
REAL = Path(os.environ.get("ZOO_REAL_DIR") or ROOT / ".." / "shared" / "real")
SIDES = ("linear", "full", "scratch")


def register_weights(work: Path, weights: Path, size: int) -> str:
    """A user registry entry for the real file, found only in a mirror folder: ZOO_REGISTRY, ZOO_MIRROR,
    ZOO_OFFLINE and ZOO_HOME are set for this process."""
    entry = {"schema": 1, "entries": [{
        "name": ENTRY, "architecture": {"library": "torchvision", "builder": "mobilenet_v2", "kwargs": {}},
        "files": [{"role": "weights", "filename": WEIGHTS, "format": "pth", "checksum": {"sha256-prefix": "b0353104"},
                   "sources": [{"url": f"https://download.pytorch.org/models/{WEIGHTS}"}]}],
        "license": "BSD-3-Clause",
        "preprocessing": {"input_size": [3, size, size], "resize": size, "interpolation": "bilinear",
                          "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "channel_order": "RGB"},
        "head": {"num_classes": 1000, "labels": "imagenet-1k", "classifier": "classifier.1"}}]}
    (work / "entries.json").write_text(json.dumps(entry))
    mirror = work / "mirror" / ENTRY
    mirror.mkdir(parents=True, exist_ok=True)
    if not (mirror / WEIGHTS).exists():
        (mirror / WEIGHTS).symlink_to(weights.resolve())
    os.environ.update(ZOO_REGISTRY=str(work / "entries.json"), ZOO_MIRROR=str(work / "mirror"), ZOO_OFFLINE="1",
                      ZOO_HOME=str(work / "home"))
    return ENTRY


def make_photos(root: Path, data: dict, *, per_class: int, val_per_class: int, test_per_class: int, seed: int,
                size: int) -> Path:
    """``make_folder``'s 28x28 grey PNGs, each made into a ``size`` px RGB photo in place."""
    from PIL import Image

    make_folder(root, data, list(range(10)), per_class=per_class, val_per_class=val_per_class,
                test_per_class=test_per_class, seed=seed)
    for path in root.rglob("*.png"):
        with Image.open(path) as im:
            im.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(path)
    return root


def run_side(side: str, folder: Path, out: Path, args: argparse.Namespace, seed: int) -> dict:
    from zoo.finetune import fit

    lr = dict(zip(SIDES, args.lrs, strict=True))[side]
    options = dict(epochs=args.linear_epochs if side == "linear" else args.epochs, lr=lr, seed=seed,
                   batch_size=args.batch_size, augment=False, device="cpu", progress=False)
    start = time.perf_counter()
    run = fit(ENTRY, folder, out=out, strategy="linear" if side == "linear" else "full",
              pretrained=side != "scratch", **options)
    summary = run.summary
    return {"side": side, "lr": lr, "epochs": options["epochs"], "val": summary["val"]["accuracy"],
            "test": summary["test"]["accuracy"], "test_n": summary["test"]["n"],
            "weights_epoch": summary.get("weights_epoch"), "seconds": time.perf_counter() - start}


def report(results: list[dict]) -> None:
    """Per size: mean +- sd of the test accuracy over seeds for each side, and the seeds behind it."""
    sizes = sorted({r["per_class"] for r in results})
    print(f"\n{'images/class':>12}  " + "  ".join(f"{s:>22}" for s in SIDES) + "   full - scratch")
    for n in sizes:
        cells, accs = [], {}
        for side in SIDES:
            rows = sorted((r for r in results if r["per_class"] == n and r["side"] == side), key=lambda r: r["seed"])
            accs[side] = {r["seed"]: r["test"] for r in rows}
            values = list(accs[side].values())
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):.3f} +- {sd:.3f} ({len(values)})" if values else "-")
        both = sorted(set(accs["full"]) & set(accs["scratch"]))
        gap = statistics.mean(accs["full"][s] - accs["scratch"][s] for s in both) if both else float("nan")
        print(f"{n:>12}  " + "  ".join(f"{c:>22}" for c in cells) + f"   {100 * gap:+.1f} points")
    print("\nper seed (test accuracy; seconds):")
    for r in sorted(results, key=lambda r: (r["per_class"], r["seed"], SIDES.index(r["side"]))):
        print(f"  n={r['per_class']:<3} seed {r['seed']}  {r['side']:<8} lr {r['lr']:<7g} val {r['val']:.3f} "
              f"test {r['test']:.3f}  (epoch {r['weights_epoch']}, {r['seconds']:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 20, 50], help="training images per class")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--val-per-class", type=int, default=10, help="validation images per class (TRAIN split)")
    parser.add_argument("--test-per-class", type=int, default=100, help="test images per class (TEST split)")
    parser.add_argument("--image-size", type=int, default=112, help="the photos' side and the model's input")
    parser.add_argument("--epochs", type=int, default=15, help="full and scratch")
    parser.add_argument("--linear-epochs", type=int, default=30, help="the linear probe (cached features)")
    parser.add_argument("--lrs", type=float, nargs=3, default=[1e-2, 1e-3, 3e-3], metavar=("LINEAR", "FULL", "SCRATCH"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", type=Path, default=REAL / "torch" / WEIGHTS)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "zoo-transfer-real",
                        help="the cache (weights converted once, features cached) kept between chunks")
    parser.add_argument("--results", type=Path, default=None, help="appended to, per run [default: WORK/results.json]")
    parser.add_argument("--report", action="store_true", help="print the table from --results and stop")
    args = parser.parse_args()
    args.results = args.results or args.work / "results.json"
    done = json.loads(args.results.read_text()) if args.results.is_file() else []
    if args.report:
        report(done)
        return
    if not args.weights.is_file():
        sys.exit(f"the real MobileNetV2 weights are not at {args.weights} (../shared/real/torch; ZOO_REAL_DIR)")
    if not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"Fashion-MNIST is not in {FMNIST}: apt-get install -y dataset-fashion-mnist")
    args.work.mkdir(parents=True, exist_ok=True)
    register_weights(args.work, args.weights, args.image_size)

    import torch

    torch.set_num_threads(args.threads)
    data = load_fmnist()
    lrs = dict(zip(SIDES, args.lrs, strict=True))
    epochs = {side: args.linear_epochs if side == "linear" else args.epochs for side in SIDES}
    setting = {"image_size": args.image_size, "val_per_class": args.val_per_class,
               "test_per_class": args.test_per_class, "batch_size": args.batch_size}
    for seed in args.seeds:
        for n in args.sizes:
            todo = [s for s in args.sides if not any(r["seed"] == seed and r["per_class"] == n and r["side"] == s
                                                     and r["setting"] == setting and r["lr"] == lrs[s]
                                                     and r["epochs"] == epochs[s] for r in done)]
            if not todo:
                continue
            scratch = Path(tempfile.mkdtemp(prefix=f"n{n}-s{seed}-", dir=args.work))
            try:
                folder = make_photos(scratch / "data", data, per_class=n, val_per_class=args.val_per_class,
                                     test_per_class=args.test_per_class, seed=seed, size=args.image_size)
                for side in todo:
                    row = {"seed": seed, "per_class": n, "setting": setting,
                           **run_side(side, folder, scratch / side, args, seed)}
                    done.append(row)
                    args.results.write_text(json.dumps(done, indent=1))
                    print(f"n={n} seed {seed} {side:<8} val {row['val']:.3f} test {row['test']:.3f} "
                          f"({row['seconds']:.0f} s)", flush=True)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    report(done)


if __name__ == "__main__":
    main()
