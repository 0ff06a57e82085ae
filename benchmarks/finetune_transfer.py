"""Transfer helps, measured: fine-tune a backbone pretrained on other classes vs the same network from
scratch, on a small image folder made from real Fashion-MNIST images.

The folder: Fashion-MNIST classes 5-9 (sandal, shirt, sneaker, bag, ankle boot), ``--per-class``
training images and a third as many validation images per class from the official training set, and
``--test-per-class`` test images per class from the official test set; each 28x28 image upscaled 2x
(bilinear) and saved as PNG in class folders (``train/``, ``val/``, ``test/``).

The backbone: ``lenet.fmnist5`` (the zoo's LeNet trained on classes 0-4) when the registry has it
with weights; otherwise the same LeNet (``lenet.scratch``'s architecture) pretrained here on the
official training images of classes 0-4 only, so no image of the target classes is ever seen.

Both runs use ``zoo.finetune.fit`` with the same options (strategy ``full``, augmentation, same epochs,
seed and split); the from-scratch run is ``pretrained=False`` (and therefore one learning rate for
every layer). Both are tried at the same learning rates (``--lrs``); each keeps its best. Prints both test accuracies.

    .venv/bin/python benchmarks/finetune_transfer.py                 # about 2-4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

# Run from a checkout: the repository root first, so `import zoo` is this tree's package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FMNIST = Path("/usr/share/datasets/fashion-mnist")
NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def make_folder(root: Path, images, labels, test_images, test_labels, per_class: int, val_per_class: int,
                test_per_class: int, seed: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cls in range(5, 10):
        idx = rng.permutation(np.flatnonzero(labels == cls))[:per_class + val_per_class]
        tidx = rng.permutation(np.flatnonzero(test_labels == cls))[:test_per_class]
        for part, chosen, source in (("train", idx[:per_class], images), ("val", idx[per_class:], images),
                                     ("test", tidx, test_images)):
            folder = root / part / NAMES[cls]
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(source[i]).resize((56, 56), Image.BILINEAR).save(folder / f"{i}.png")
    return root


def pretrain_on_other_classes(images, labels, *, epochs: int, seed: int):
    """LeNet trained on Fashion-MNIST classes 0-4 only, through the zoo's own loop."""
    import torch
    from torch.utils.data import TensorDataset

    import zoo
    from zoo.finetune.loop import TrainConfig, train
    from zoo.preprocess import Normalize

    torch.manual_seed(seed)
    model = zoo.load("lenet.scratch", pretrained=False)
    model.reset_classifier(5)
    keep = labels < 5
    x = torch.from_numpy(images[keep]).float().div(255).unsqueeze(1)
    x = Normalize(model.preprocessing)(x)
    y = torch.from_numpy(labels[keep]).long()
    cfg = TrainConfig(epochs=epochs, batch_size=128, lr=2e-3, seed=seed, device="cpu", warmup_epochs=0.2)
    result = train(model, TensorDataset(x, y), None, cfg, progress=False)
    model.eval()
    return model, result.history[-1]["train_loss"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-class", type=int, default=20, help="training images per class")
    parser.add_argument("--test-per-class", type=int, default=200)
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3, 3e-3], help="learning rates tried for both")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pretrain-epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"Fashion-MNIST is not in {FMNIST}: apt-get install -y dataset-fashion-mnist")

    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="zoo-transfer-"))
    os.environ.setdefault("ZOO_HOME", str(work / "home"))

    import zoo
    from zoo.finetune import fit
    from zoo.finetune.datasets import read_idx

    images = read_idx(FMNIST / "train-images-idx3-ubyte.gz")
    labels = read_idx(FMNIST / "train-labels-idx1-ubyte.gz")
    test_images = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz")
    test_labels = read_idx(FMNIST / "t10k-labels-idx1-ubyte.gz")
    data = make_folder(work / "data", images, labels, test_images, test_labels, args.per_class,
                       max(2, args.per_class // 3), args.test_per_class, args.seed)
    print(f"data: {data} (classes {', '.join(NAMES[5:])}; {args.per_class} train, {max(2, args.per_class // 3)} val, "
          f"{args.test_per_class} test images per class, 56x56 PNG)")

    t0 = time.perf_counter()
    try:
        entry = zoo.get_entry("lenet.fmnist5")
        has_weights = bool(entry.files)
    except zoo.UnknownModelError:
        has_weights = False
    if has_weights:
        base = "lenet.fmnist5"
        scratch_base = "lenet.fmnist5"
        print("backbone: lenet.fmnist5 from the registry (trained on classes 0-4)")
    else:
        base, loss = pretrain_on_other_classes(images, labels, epochs=args.pretrain_epochs, seed=args.seed)
        scratch_base = "lenet.scratch"
        print(f"backbone: LeNet pretrained here on the 30000 training images of classes 0-4 "
              f"({args.pretrain_epochs} epochs, final train loss {loss:.3f}, {time.perf_counter() - t0:.0f} s)")

    common = dict(strategy="full", epochs=args.epochs, batch_size=16, seed=args.seed, device="cpu", progress=False)
    results = {}
    # fit changes a ZooModel in place (new head, trained weights): each run gets its own copy.
    fresh = (lambda: copy.deepcopy(base)) if not isinstance(base, str) else (lambda: base)
    best = {"transfer": 0.0, "scratch": 0.0}
    # The same learning-rate grid for both; each side keeps its best (a fair from-scratch baseline).
    for lr in args.lrs:
        t0 = time.perf_counter()
        run = fit(fresh(), data, out=work / f"transfer-{lr:g}", lr=lr, **common)
        acc = run.summary["test"]["accuracy"]
        results[f"fine-tuned (full, lr {lr:g})"] = (acc, time.perf_counter() - t0)
        best["transfer"] = max(best["transfer"], acc)
        t0 = time.perf_counter()
        scratch = fit(scratch_base, data, out=work / f"scratch-{lr:g}", lr=lr, pretrained=False, **common)
        acc = scratch.summary["test"]["accuracy"]
        results[f"from scratch (full, lr {lr:g})"] = (acc, time.perf_counter() - t0)
        best["scratch"] = max(best["scratch"], acc)
    t0 = time.perf_counter()
    probe = fit(fresh(), data, out=work / "probe", strategy="linear", epochs=args.epochs, lr=3e-3, seed=args.seed,
                device="cpu", progress=False)
    results["linear probe (frozen, lr 3e-3)"] = (probe.summary["test"]["accuracy"], time.perf_counter() - t0)
    best_scratch = best["scratch"]

    print(f"\n{'run':<34} {'test accuracy':>13} {'seconds':>8}")
    for name, (acc, secs) in results.items():
        print(f"{name:<34} {acc:>13.4f} {secs:>8.1f}")
    transfer = best["transfer"]
    print(f"\nbest fine-tuned {transfer:.4f} vs best from-scratch {best_scratch:.4f}: "
          f"{'+' if transfer >= best_scratch else ''}{100 * (transfer - best_scratch):.1f} points "
          f"({5 * args.test_per_class} test images)")
    print(f"runs kept in {work}")


if __name__ == "__main__":
    main()
