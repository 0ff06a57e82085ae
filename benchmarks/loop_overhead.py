"""The zoo's training loop against a bare PyTorch loop: same model, data, optimizer, batches, one process.

Both loops take the same batches from the same in-memory Fashion-MNIST tensors (``get_batch``); the
bare loop does only forward, loss, zero_grad, backward, step. The zoo's loop adds what it always does:
per-step learning rate, its bookkeeping, checkpoint-free epoch records (no run_dir, no progress bar).
Runs alternate (bare, zoo, bare, zoo, ...) so drift in a shared machine's load hits both; the medians of
the per-epoch times are compared. Target: zoo / bare <= 1.10.

Run: ``.venv/bin/python benchmarks/loop_overhead.py [--model lenet|mlp] [--repeats 5] [--images 20000]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["lenet", "mlp", "softmax"], default="lenet",
                        help="lenet: compute-bound steps; mlp/softmax: tiny steps that expose per-step overhead")
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per loop")
    parser.add_argument("--images", type=int, default=20000, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from zoo import archs
    from zoo.finetune.datasets import load_dataset
    from zoo.finetune.loop import TrainConfig, train

    data = load_dataset("fashion-mnist", "train")
    data = type(data)(data.images[:args.images], data.labels[:args.images], data.classes,
                      mean=data.mean.flatten().tolist(), std=data.std.flatten().tolist())
    builder = {"lenet": "lenet", "mlp": "mlp_relu", "softmax": "softmax"}[args.model]

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return archs.build(builder, in_chans=1, num_classes=10)[0]

    def bare_epoch(model: nn.Module, opt: torch.optim.Optimizer, epoch: int) -> float:
        loss_fn = nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(epoch)
        order = torch.randperm(len(data), generator=g)
        model.train()
        start = time.perf_counter()
        for i in range(0, len(order), args.batch_size):
            x, y = data.get_batch(order[i:i + args.batch_size])
            loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - start

    bare_model = fresh()
    bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=1e-3, weight_decay=0.05)
    zoo_model = fresh()
    bare_times, zoo_times = [], []
    cfg = dict(epochs=1, batch_size=args.batch_size, optimizer="adamw", lr=1e-3, weight_decay=0.05,
               schedule="cosine", device="cpu", log_every=10**9)
    bare_epoch(bare_model, bare_opt, 0)  # warm-up (allocator, kernels) for both
    train(zoo_model, data, None, TrainConfig(**cfg), progress=False)
    for rep in range(args.repeats):
        bare_times.append(bare_epoch(bare_model, bare_opt, rep + 1))
        result = train(zoo_model, data, None, TrainConfig(**{**cfg, "seed": rep + 1}), progress=False)
        zoo_times.append(result.history[-1]["seconds"])
    bare, ours = statistics.median(bare_times), statistics.median(zoo_times)
    steps = -(-len(data) // args.batch_size)
    print(f"model={builder} images/epoch={len(data)} batch={args.batch_size} steps/epoch={steps} "
          f"threads={args.threads} repeats={args.repeats} torch={torch.__version__}")
    print(f"bare PyTorch loop : median {bare:.3f} s/epoch  ({len(data) / bare:.0f} images/s)  all: "
          + " ".join(f"{t:.3f}" for t in bare_times))
    print(f"zoo loop          : median {ours:.3f} s/epoch  ({len(data) / ours:.0f} images/s)  all: "
          + " ".join(f"{t:.3f}" for t in zoo_times))
    print(f"overhead ratio zoo/bare = {ours / bare:.3f}  (target <= 1.10; per step: "
          f"{(ours - bare) / steps * 1e6:+.0f} us)")


if __name__ == "__main__":
    main()
