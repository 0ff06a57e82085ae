"""Transfer helps, measured: a LeNet pretrained on some Fashion-MNIST classes, fine-tuned on a few dozen
images per class of the OTHER classes, against the same network trained from scratch on the same images.

For each backbone (a registry name or a run folder, with the classes it was trained on), the target
classes are the other Fashion-MNIST classes. For each seed a folder is drawn from the official
TRAIN split (``--per-class`` training and ``--val-per-class`` validation images per class, disjoint;
different images for each seed), and a fixed ``--test-per-class`` images per class come from the
official TEST split; 28x28 grayscale PNG in ``train/ val/ test/`` class folders.

Both sides run ``zoo.finetune.fit`` with the same options (strategy ``full``, augmentation, epochs,
batch size, seed); from scratch is ``pretrained=False``. Each side tries every learning rate in
``--lrs`` and keeps, per seed, the one with the best VALIDATION accuracy (ties: the smaller LR); the
test set is only read for the reported figures. Prints every run, then per seed and mean +- sd.

``--pretrain 0,1,2,3,4 0,1,4,5,8`` first trains a backbone per source split with the real
``zoo train lenet --data fashion-mnist --classes ... --epochs --pretrain-epochs`` path (a pilot to
choose the split of the embedded default); without it the registry's ``lenet.fmnist5`` is used.

    .venv/bin/python benchmarks/finetune_transfer.py --no-augment    # lenet.fmnist5, 5 seeds, ~5 min on 2 cores
    .venv/bin/python benchmarks/finetune_transfer.py --pretrain 0,1,4,5,8 --pretrain-epochs 2 --no-augment
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run from a checkout: the repository root first, so `import zoo` is this tree's package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FMNIST = Path("/usr/share/datasets/fashion-mnist")
NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def load_fmnist() -> dict:
    """Fashion-MNIST's TRAIN (``images``, ``labels``) and TEST (``test_images``, ``test_labels``) arrays."""
    from zoo.finetune.datasets import read_idx

    return {"images": read_idx(FMNIST / "train-images-idx3-ubyte.gz"),
            "labels": read_idx(FMNIST / "train-labels-idx1-ubyte.gz"),
            "test_images": read_idx(FMNIST / "t10k-images-idx3-ubyte.gz"),
            "test_labels": read_idx(FMNIST / "t10k-labels-idx1-ubyte.gz")}


def make_folder(root: Path, data: dict, classes: list[int], *, per_class: int, val_per_class: int,
                test_per_class: int, seed: int) -> Path:
    """train/ and val/ from the TRAIN split (drawn with ``seed``), test/ from the TEST split (fixed draw);
    a part with no images per class (``test_per_class=0``) is left out."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    test_rng = np.random.default_rng(12345)  # the same test images for every seed and every backbone
    for cls in classes:
        idx = rng.permutation(np.flatnonzero(data["labels"] == cls))[:per_class + val_per_class]
        tidx = test_rng.permutation(np.flatnonzero(data["test_labels"] == cls))[:test_per_class]
        for part, chosen, source in (("train", idx[:per_class], data["images"]),
                                     ("val", idx[per_class:], data["images"]),
                                     ("test", tidx, data["test_images"])):
            if not len(chosen):
                continue
            folder = root / part / NAMES[cls]
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(source[i], mode="L").save(folder / f"{i}.png")
    return root


def pretrain(classes: str, epochs: int, out: Path) -> Path:
    """A backbone through the real CLI path: ``zoo train lenet --classes ...``; returns the run folder."""
    zoo_exe = Path(sys.executable).with_name("zoo")
    argv = [str(zoo_exe), "train", "lenet", "--data", "fashion-mnist", "--classes", classes, "--epochs",
            str(epochs), "--seed", "0", "--device", "cpu", "--out", str(out), "--json", "--quiet"]
    start = time.perf_counter()
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"pretrained on classes {classes}: {' '.join(argv[1:-3])}: test accuracy "
          f"{summary['test_accuracy']:.4f} on its own classes, {time.perf_counter() - start:.0f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="lenet.fmnist5", help="registry name or run folder (without --pretrain)")
    parser.add_argument("--source-classes", default=None,
                        help="classes the --backbone was trained on (default: read from the entry/run labels)")
    parser.add_argument("--pretrain", nargs="+", default=None, metavar="CLASSES",
                        help="pretrain one backbone per comma-separated source split (pilot)")
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=24, help="training images per class")
    parser.add_argument("--val-per-class", type=int, default=40, help="validation images per class (LR choice)")
    parser.add_argument("--test-per-class", type=int, default=200, help="test images per class (TEST split)")
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2],
                        help="LR grid, both sides")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--strategy", default="full", choices=["full", "partial", "linear"],
                        help="the fine-tuned side's strategy (from scratch always trains everything)")
    parser.add_argument("--cut", default=None, help="both sides: keep the network up to this layer (e.g. flatten)")
    parser.add_argument("--no-augment", action="store_true", help="both sides: no random crops and flips")
    parser.add_argument("--crop-scale", type=float, default=None,
                        help="both sides: the smallest area of the random resized crop (default: the zoo's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for this small net)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args()
    if not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"Fashion-MNIST is not in {FMNIST}: apt-get install -y dataset-fashion-mnist")

    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="zoo-transfer-"))
    os.environ.setdefault("ZOO_HOME", str(work / "home"))

    import zoo
    from zoo.finetune import fit
    from zoo.finetune.datasets import FASHION_MNIST_CLASSES

    if args.crop_scale is not None:
        # A pilot knob: random resized crops down to this share of the area on both sides, in place of the
        # augmentation fit chooses for the input size.
        import importlib

        from zoo.finetune.augment import Augmentation

        fit_module = importlib.import_module("zoo.finetune.fit")  # the module: zoo.finetune.fit is also the function
        fit_module.choose_augmentation = lambda side, image_side, per_class=None: Augmentation(
            "resized_crop_flip", min_area=args.crop_scale, flip=True, why="--crop-scale")

    data = load_fmnist()

    backbones: list[tuple[str, list[int]]] = []
    if args.pretrain:
        for classes in args.pretrain:
            run = pretrain(classes, args.pretrain_epochs, work / f"pretrain-{classes.replace(',', '')}")
            backbones.append((str(run), [int(c) for c in classes.split(",")]))
    else:
        if args.source_classes:
            source = [int(c) for c in args.source_classes.split(",")]
        else:
            labels = zoo.load(args.backbone).labels or []
            source = [FASHION_MNIST_CLASSES.index(name) for name in labels]
        backbones.append((args.backbone, source))

    print(f"{args.per_class} train + {args.val_per_class} val images per class (TRAIN split, drawn per seed), "
          f"{args.test_per_class} test per class (TEST split); {args.strategy} fine-tuning vs from scratch, {args.epochs} "
          f"epochs, batch {args.batch_size}, cut {args.cut}, augment {not args.no_augment} (crop scale {args.crop_scale or 'default'}), LR grid {args.lrs} chosen on val; seeds {args.seeds}", flush=True)
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "backbones": []}
    common = dict(epochs=args.epochs, batch_size=args.batch_size, device="cpu", progress=False, cut=args.cut,
                  augment=not args.no_augment)
    for backbone, source in backbones:
        target = [c for c in range(10) if c not in source]
        scratch_model = backbone
        print(f"\nbackbone {backbone}: source classes {source} ({', '.join(NAMES[c] for c in source)}), "
              f"target classes {target} ({', '.join(NAMES[c] for c in target)})", flush=True)
        per_seed = {"transfer": [], "scratch": []}
        runs = []
        for seed in args.seeds:
            folder = make_folder(work / f"data-{''.join(map(str, target))}-s{seed}", data, target,
                                 per_class=args.per_class, val_per_class=args.val_per_class,
                                 test_per_class=args.test_per_class, seed=seed)
            for side in ("transfer", "scratch"):
                best = None
                for lr in args.lrs:
                    t0 = time.perf_counter()
                    run = fit(backbone if side == "transfer" else scratch_model, folder,
                              out=work / f"{side}-{''.join(map(str, target))}-s{seed}-{lr:g}", lr=lr, seed=seed,
                              pretrained=(side == "transfer"),
                              strategy=args.strategy if side == "transfer" else "full", **common)
                    val, test = run.summary["val"]["accuracy"], run.summary["test"]["accuracy"]
                    row = dict(side=side, seed=seed, lr=lr, val=val, test=test, seconds=time.perf_counter() - t0)
                    runs.append(row)
                    print(f"  seed {seed} {side:<8} lr {lr:<6g} val {val:.4f} test {test:.4f} "
                          f"({row['seconds']:.0f} s)", flush=True)
                    if best is None or val > best["val"]:
                        best = row
                per_seed[side].append(best)
        print(f"\n  {'seed':<5} {'fine-tuned (lr)':>20} {'from scratch (lr)':>20} {'difference':>11}")
        for t, s in zip(per_seed["transfer"], per_seed["scratch"]):
            print(f"  {t['seed']:<5} {t['test']:>12.4f} ({t['lr']:g}) {s['test']:>12.4f} ({s['lr']:g}) "
                  f"{100 * (t['test'] - s['test']):>+10.1f}")
        summary = {}
        for side in ("transfer", "scratch"):
            accs = [r["test"] for r in per_seed[side]]
            summary[side] = (statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0)
        diffs = [t["test"] - s["test"] for t, s in zip(per_seed["transfer"], per_seed["scratch"])]
        print(f"  mean +- sd: fine-tuned {summary['transfer'][0]:.4f} +- {summary['transfer'][1]:.4f}, from scratch "
              f"{summary['scratch'][0]:.4f} +- {summary['scratch'][1]:.4f}; difference "
              f"{100 * statistics.mean(diffs):+.1f} points (fine-tuned ahead in {sum(d > 0 for d in diffs)} of "
              f"{len(diffs)} seeds; {len(target) * args.test_per_class} test images)", flush=True)
        report["backbones"].append({"backbone": backbone, "source": source, "target": target, "runs": runs,
                                    "summary": summary})
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nruns kept in {work}")


if __name__ == "__main__":
    main()
