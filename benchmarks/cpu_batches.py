"""Inference batches on the CPU: zoo's ``evaluate`` (which caps the batch at ``zoo.device.cpu_batch_cap``
of the input size) against the same forward passes in batches of 256 (what it used before, and what a
GPU wants), side by side in one process, per network and input size; prints ms an image and the ratio.

    .venv/bin/python benchmarks/cpu_batches.py --threads 2

The cap holds about 2^19 input pixels a batch (8 at 224 px, 32 at 112 px, 128 at 64 px, 256 at 28 px).
Random weights and random inputs: the figures are about arithmetic and memory, not accuracy.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import TensorDataset


def _best_of(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import timm
    import torchvision

    from zoo.device import cpu_batch_cap
    from zoo.finetune.evaluation import evaluate

    cases = [("resnet18 (timm)", lambda: timm.create_model("resnet18", num_classes=6), 224),
             ("mobilenet_v2 (torchvision)", lambda: torchvision.models.mobilenet_v2(num_classes=6), 224),
             ("resnet18 (timm)", lambda: timm.create_model("resnet18", num_classes=6), 112),
             ("resnet18 (timm)", lambda: timm.create_model("resnet18", num_classes=6), 64)]
    print(f"{'network':<28} {'px':>4} {'zoo batch':>9} {'zoo ms/img':>10} {'256 ms/img':>10} {'256 / zoo':>9}")
    for name, build, px in cases:
        torch.manual_seed(0)
        net = build().eval()
        data = TensorDataset(torch.randn(args.images, 3, px, px), torch.zeros(args.images, dtype=torch.long))
        x = data.tensors[0]

        def baseline() -> None:
            with torch.no_grad():
                for i in range(0, len(x), 256):
                    net(x[i:i + 256])

        def zoo() -> None:
            evaluate(net, data, batch_size=256, device="cpu", predictions=False)

        baseline()  # warm-up
        t_base, t_zoo = _best_of(baseline, args.repeats), _best_of(zoo, args.repeats)
        n = args.images
        print(f"{name:<28} {px:>4} {cpu_batch_cap(px * px):>9} {1000 * t_zoo / n:>10.1f} {1000 * t_base / n:>10.1f} "
              f"{t_base / t_zoo:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
