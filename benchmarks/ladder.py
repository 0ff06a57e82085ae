"""The lecture's ladder on Fashion-MNIST: each reference architecture trained from scratch by the zoo.

For each rung: test accuracy (final-epoch weights on the 10,000 test images; no model selection on
the test split), epochs, training wall time, device, beside the published figures (the Fashion-MNIST
README's benchmark table; the lecture's MNIST figures for the same rung). Softmax regression, the two
MLPs and the LeNet-style net run on the CPU; GoogLeNet and ResNet-18 only with ``--device cuda``.

Run: ``.venv/bin/python benchmarks/ladder.py [--device cpu|cuda] [--only lenet] [--threads 2]``
Target: LeNet-style >= 91.5% in <= 5 minutes on the CPU.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

# (rung, Fashion-MNIST README figure, lecture's MNIST figure)
PUBLISHED = {
    "softmax": ("no linear row in the table", "1-layer NN 92.5%"),
    "mlp_sigmoid": ("MLP 256-128-100: 88.33%", "one hidden layer 98.2%"),
    "mlp_relu": ("MLP 256-128-100: 88.33%", "ReLU + dropout 99.0%"),
    "lenet": ("2 Conv+pooling (TF docs): 91.6%; 2 Conv <100K params: 92.5%", "convolution 99.5%"),
    "googlenet": ("GoogleNet, cross-entropy: 93.7%", "(GoogLeNet)"),
    "resnet18": ("ResNet18: 94.9%", "(ResNet)"),
}
CPU_RUNGS = ["softmax", "mlp_sigmoid", "mlp_relu", "lenet"]
GPU_RUNGS = ["googlenet", "resnet18"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, or cuda to add GoogLeNet and ResNet-18")
    parser.add_argument("--only", nargs="*", help="run only these rungs")
    parser.add_argument("--epochs", type=int, help="override every recipe's epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from zoo.finetune.scratch import train_scratch

    rungs = CPU_RUNGS + (GPU_RUNGS if args.device.startswith("cuda") else [])
    if args.only:
        rungs = [r for r in rungs if r in args.only] or args.only
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else \
        f"cpu ({torch.get_num_threads()} threads)"
    print(f"torch {torch.__version__}, device {device_name}")
    rows = []
    for arch in rungs:
        start, cpu_start = time.perf_counter(), time.process_time()
        with tempfile.TemporaryDirectory() as tmp:
            run = train_scratch(arch, "fashion-mnist", out=Path(tmp) / arch, epochs=args.epochs, seed=args.seed,
                                device=args.device, progress=False)
            history, summary, config = run.history, run.summary, run.config.loop_config()
        wall = time.perf_counter() - start
        # CPU seconds / threads estimates the wall time on idle cores: the wall figure on a shared
        # machine includes time spent waiting for other jobs.
        cpu = time.process_time() - cpu_start
        row = {"arch": arch, "test_accuracy": round(100 * summary["test"]["accuracy"], 2), "epochs": len(history),
               "train_seconds": round(summary["train_seconds"], 1), "wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "device": device_name,
               "images_per_s": round(statistics_mean([h["images_per_s"] for h in history])),
               "published_fmnist": PUBLISHED[arch][0], "lecture_mnist": PUBLISHED[arch][1],
               "recipe": {k: v for k, v in config.to_dict().items()
                          if k in ("optimizer", "lr", "weight_decay", "schedule", "batch_size", "label_smoothing")}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| rung | test acc (%) | epochs | train wall (s) | CPU s / threads | images/s | device | "
          "Fashion-MNIST table | lecture (MNIST) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['arch']} | {r['test_accuracy']:.2f} | {r['epochs']} | {r['train_seconds']:.0f} | "
              f"{r['cpu_seconds'] / args.threads:.0f} | "
              f"{r['images_per_s']} | {r['device']} | {r['published_fmnist']} | {r['lecture_mnist']} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


def statistics_mean(values: list[float]) -> float:
    return sum(values) / max(1, len(values))


if __name__ == "__main__":
    main()
