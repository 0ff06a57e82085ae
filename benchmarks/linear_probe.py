"""Linear probes are cheap with cached features: one run, both ways, same model, same images.

A folder of real Fashion-MNIST images (``--per-class`` training and a quarter as many validation images
per class, all ten classes, 28x28 PNG) and a frozen ResNet-18 body (``resnet18.scratch``'s network with
the small-input stem; its weights are fixed by the seed, since what is measured is cost, and both ways
see the same features). Then, with the same loop (``zoo.finetune.loop.train``) and options:

  * cached: one extraction pass over the training (and validation) images into
    ``$ZOO_HOME/features``, then ``--epochs`` epochs of the head on the stored vectors;
  * every epoch: the usual timm/fastai linear probe, the frozen body run on every batch of every
    epoch (no augmentation, so the features and the result are the same).

Prints the extraction pass, both totals, the ratios the issue asks for (cached total at most 1.5x one
extraction pass; the every-epoch loop at least 5x the cached total) and both validation accuracies.

    .venv/bin/python benchmarks/linear_probe.py          # about 2-4 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# Run from a checkout: the repository root first, so `import zoo` is this tree's package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finetune_transfer import FMNIST, load_fmnist, make_folder  # noqa: E402  (this folder's sibling script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18.scratch")
    parser.add_argument("--per-class", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not (FMNIST / "train-images-idx3-ubyte.gz").is_file():
        sys.exit(f"Fashion-MNIST is not in {FMNIST}: apt-get install -y dataset-fashion-mnist")

    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="zoo-probe-"))
    os.environ["ZOO_HOME"] = str(work / "home")  # a cold feature cache

    from zoo.finetune.data import scan
    from zoo.finetune.features import cached_features
    from zoo.finetune.config import FinetuneConfig
    from zoo.finetune.fit import setup
    from zoo.finetune.loop import TrainConfig, train

    data = make_folder(work / "data", load_fmnist(), list(range(10)), per_class=args.per_class,
                       val_per_class=max(1, args.per_class // 4), test_per_class=0, seed=args.seed)
    split = scan(data, seed=args.seed)
    print(f"data: {len(split.train)} train, {len(split.val)} val Fashion-MNIST PNGs in {data}; backbone "
          f"{args.model} (frozen), {args.epochs} epochs, batch {args.batch_size}, {args.threads} threads")
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=3e-3, seed=args.seed, device="cpu")

    # Warm-up: torch's one-time lazy set-up (optimizer kernels, autograd) is paid here, by neither side.
    from torch.utils.data import TensorDataset

    train(torch.nn.Linear(4, 2), TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), None,
          TrainConfig(epochs=1, batch_size=4, device="cpu"), progress=False)

    # -- cached: the extraction pass over the training images, timed on its own
    probe = FinetuneConfig.from_options(strategy="linear", pretrained=False, seed=args.seed, augment=False,
                                        batch_size=args.batch_size, device="cpu")
    s = setup(args.model, split, replace(probe, cache_features=False))  # the prepared model only; no features yet
    t0 = time.perf_counter()
    cached_features(s.model, split.paths("train"), split.hashes("train"), batch_size=args.batch_size)
    extract_train = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached_features(s.model, split.paths("val"), split.hashes("val"), batch_size=args.batch_size)
    extract_val = time.perf_counter() - t0
    # fit's own path: setup reads the features from the cache, then the loop trains the head.
    t0 = time.perf_counter()
    c = setup(args.model, split, probe)
    assert all(v["hit"] for v in c.features.values())
    cached_setup = time.perf_counter() - t0  # building the model, hashing its weights, reading the cache
    t0 = time.perf_counter()
    cached_result = train(c.target, c.train_data, c.val_data, cfg, param_groups=c.plan.param_groups, progress=False)
    cached_epochs = time.perf_counter() - t0

    # -- every epoch: the frozen body runs on every batch
    u = setup(args.model, split, replace(probe, cache_features=False))
    t0 = time.perf_counter()
    loop_result = train(u.target, u.train_data, u.val_data, cfg, param_groups=u.plan.param_groups, progress=False)
    every_epoch = time.perf_counter() - t0

    cached_total = extract_train + extract_val + cached_setup + cached_epochs
    print(f"\none extraction pass over the {len(split.train)} training images: {extract_train:8.2f} s")
    print(f"  (validation images, once: {extract_val:.2f} s)")
    print(f"cached: {args.epochs} epochs on stored features (incl. per-epoch validation): {cached_epochs:8.2f} s")
    print(f"cached: building the model again and reading the cache: {cached_setup:8.2f} s")
    print(f"cached total (all of the above): {cached_total:8.2f} s "
          f"= {cached_total / extract_train:.2f}x one extraction pass (train+{args.epochs} epochs alone: "
          f"{(extract_train + cached_epochs) / extract_train:.2f}x; target <= 1.5x)")
    print(f"every epoch through the frozen body: {every_epoch:8.2f} s "
          f"= {every_epoch / cached_total:.1f}x the cached total (target >= 5x)")
    print(f"val accuracy: cached {cached_result.history[-1]['val_acc']:.4f}, "
          f"every epoch {loop_result.history[-1]['val_acc']:.4f}")


if __name__ == "__main__":
    main()
