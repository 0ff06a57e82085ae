"""GPU training through the zoo's loop: ResNet-50 throughput and ResNet-18 on Fashion-MNIST.

Part ``r50``: ResNet-50 at 224 px on synthetic data held on the GPU, bf16 autocast, channels_last,
torch.compile, SGD; images/s over the measured steps (after warm-up and compilation) and the
model-FLOPs utilisation, beside NVIDIA's published 2,470 images/s on one A100 80GB with AMP
(DeepLearningExamples, resnet50v1.5, ~20% MFU of the A100's 312 TFLOP/s).

Part ``fmnist``: ResNet-18 (small-input stem) trained from scratch on Fashion-MNIST with the zoo's
recipe (bf16, channels_last); target >= 95.0% test accuracy (the Fashion-MNIST table's ResNet18:
94.9%). The run stops at its time budget if it has not finished (then the accuracy is that of an
unfinished schedule, and the output says so).

Every part has an explicit time budget and prints everything as it goes; the whole script is meant to
fit ~8 minutes on one H100. Run:

    python benchmarks/gpu_train.py --part r50 --budget 150
    python benchmarks/gpu_train.py --part fmnist --budget 300 --epochs 40
    python benchmarks/gpu_train.py --part all
    python benchmarks/gpu_train.py --smoke          # tiny CPU run: checks the script itself
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

A100_IMG_S = 2470  # NVIDIA DeepLearningExamples resnet50v1.5, DGX A100 80GB, 1 GPU, AMP
R50_FWD_GFLOP = 8.2  # timm: 4.11 GMACs at 224 px


def count_train_flops(model: torch.nn.Module, shape: tuple[int, ...], device: torch.device) -> float:
    """Training FLOPs per sample: 3x the forward FLOPs counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    x = torch.zeros(1, *shape, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    model.train()
    return 3.0 * counter.get_total_flops()


def peak_flops(device: torch.device) -> float | None:
    from zoo.finetune.loop import _PEAK_BF16

    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in _PEAK_BF16.items() if k in name), None)


class Synthetic(torch.utils.data.Dataset):
    """``n`` samples that are one random batch on the device, reused: measures the model, not the input."""

    def __init__(self, n: int, batch: int, shape: tuple[int, ...], classes: int, device: torch.device,
                 channels_last: bool):
        self.n = n
        x = torch.randn(batch, *shape, device=device)
        self.x = x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x
        self.y = torch.randint(0, classes, (batch,), device=device)

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices: torch.Tensor):
        k = len(indices)
        return self.x[:k], self.y[:k]


def part_r50(args, device: torch.device) -> dict:
    from zoo.finetune.loop import StopTraining, TrainConfig, train

    size = 224 if not args.smoke else 64
    batch = args.batch_size or (256 if not args.smoke else 8)
    warm, measure = (args.warmup_steps, args.steps) if not args.smoke else (2, 3)
    torch.manual_seed(0)
    import torchvision

    model = torchvision.models.resnet50(num_classes=1000)
    flops = count_train_flops(model.to(device), (3, size, size), device)
    print(f"[r50] counted training FLOPs/image: {flops / 1e9:.1f} GFLOP (3 x forward; quoted forward "
          f"{R50_FWD_GFLOP} GFLOP at 224 px)", flush=True)
    data = Synthetic((warm + measure + 5) * batch, batch, (3, size, size), 1000, device, not args.no_channels_last)
    marks: dict[str, float] = {}
    budget_start = time.perf_counter()

    def clock(info):
        step = info["step"]
        if step in (1, warm, warm + measure):
            if device.type == "cuda":
                torch.cuda.synchronize()
            marks[f"step{step}"] = time.perf_counter()
            if step == 1:
                print(f"[r50] first step (incl. compile) done after {marks['step1'] - budget_start:.1f} s", flush=True)
        if step == warm + measure:
            raise StopTraining
        if time.perf_counter() - budget_start > args.budget:
            print(f"[r50] time budget {args.budget} s reached at step {step}", flush=True)
            raise StopTraining

    cfg = TrainConfig(epochs=1, batch_size=batch, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-5,
                      schedule="constant", amp=True if device.type == "cuda" else False,
                      channels_last=not args.no_channels_last, compile=not args.no_compile,
                      device=str(device), log_every=10**9)
    train(model, data, None, cfg, progress=False, callbacks={"on_step_end": [clock]})
    out = {"part": "r50", "batch": batch, "image_size": size, "compile": not args.no_compile,
           "channels_last": not args.no_channels_last, "amp": "bf16" if device.type == "cuda" else "off",
           "first_step_s": round(marks.get("step1", float("nan")) - budget_start, 1)}
    if f"step{warm + measure}" in marks:
        seconds = marks[f"step{warm + measure}"] - marks[f"step{warm}"]
        img_s = measure * batch / seconds
        out.update(images_per_s=round(img_s, 1), measured_steps=measure, seconds=round(seconds, 2),
                   vs_a100_published=round(img_s / A100_IMG_S, 2))
        peak = peak_flops(device)
        if peak:
            out["mfu"] = round(img_s * flops / peak, 3)
            out["a100_published_mfu"] = round(A100_IMG_S * 3 * R50_FWD_GFLOP * 1e9 / 312e12, 3)
    else:
        out["note"] = "budget reached before the measured steps finished"
    print("[r50] " + json.dumps(out), flush=True)
    return out


def part_fmnist(args, device: torch.device) -> dict:
    from zoo.finetune.loop import StopTraining
    from zoo.finetune.scratch import build_scratch_model, train_scratch
    from zoo.registry.schema import Preprocessing

    probe = build_scratch_model("resnet18", in_chans=1, num_classes=10, image_size=28,
                                preprocessing=Preprocessing(input_size=(1, 28, 28), resize=28)).to(device)
    flops = count_train_flops(probe, (1, 28, 28), device)
    del probe
    print(f"[fmnist] ResNet-18 small stem, 28 px: {flops / 1e9:.2f} GFLOP per training image", flush=True)
    start = time.perf_counter()
    state = {"stopped": False}

    def budget(info):
        row = info["row"]
        print(f"[fmnist] epoch {row['epoch']}: train_loss {row['train_loss']:.4f} val_acc {row.get('val_acc', 0):.4f} "
              f"{row['images_per_s']:.0f} img/s" + (f" mfu {row['mfu']:.3f}" if "mfu" in row else "")
              + f" ({time.perf_counter() - start:.0f} s)", flush=True)
        if time.perf_counter() - start > args.budget:
            state["stopped"] = True
            print(f"[fmnist] time budget {args.budget} s reached: stopping (schedule unfinished)", flush=True)
            raise StopTraining

    epochs = args.epochs if not args.smoke else 1
    overrides = {"log_every": 10**9}
    if args.smoke:
        overrides["batch_size"] = 64
    given = {k: v for k, v in (("augment", args.augment), ("batch_size", args.batch_size)) if v is not None}
    out = args.out or str(Path(tempfile.mkdtemp(prefix="gpu_train-")) / "run")
    run = train_scratch("resnet18", "fashion-mnist", out=out, epochs=epochs,
                        seed=0, device=str(device), compile=args.compile, progress=False, flops_per_sample=flops,
                        callbacks={"on_epoch_end": [budget]}, data_root=args.data_root, **overrides, **given)
    history, summary, config = run.history, run.summary, run.config.loop_config()
    acc = summary["test"]["accuracy"]
    out = {"part": "fmnist", "arch": "resnet18", "test_accuracy": round(100 * acc, 2), "target": 95.0,
           "met": acc >= 0.95 and not state["stopped"], "epochs_run": len(history),
           "epochs_planned": epochs, "train_seconds": round(summary["train_seconds"], 1),
           "wall_seconds": round(time.perf_counter() - start, 1), "stopped_by_budget": state["stopped"],
           "mean_images_per_s": round(sum(h["images_per_s"] for h in history) / len(history)),
           "config": {k: v for k, v in config.to_dict().items() if k in (
               "optimizer", "lr", "batch_size", "weight_decay", "schedule", "label_smoothing", "amp",
               "channels_last", "compile")}, "augment": args.augment or "recipe (crop_flip_erase)"}
    print("[fmnist] " + json.dumps(out), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["r50", "fmnist", "all"], default="all")
    parser.add_argument("--budget", type=float, default=None, help="seconds per part (default r50 150, fmnist 300)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--warmup-steps", type=int, default=15, help="r50: steps before timing (compile happens here)")
    parser.add_argument("--steps", type=int, default=40, help="r50: timed steps")
    parser.add_argument("--no-compile", action="store_true", help="r50: eager mode")
    parser.add_argument("--no-channels-last", action="store_true", help="r50: NCHW")
    parser.add_argument("--compile", action="store_true", help="fmnist: torch.compile the ResNet-18")
    parser.add_argument("--epochs", type=int, default=40, help="fmnist: epochs (the schedule's length)")
    parser.add_argument("--augment", choices=["none", "flip", "crop", "crop_flip", "crop_flip_erase"],
                        help="fmnist: override the recipe's crop_flip_erase")
    parser.add_argument("--out", help="fmnist: run folder to keep (default: none)")
    parser.add_argument("--data-root", help="fmnist: folder holding fashion-mnist/ (default: found automatically)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on whatever device: tests the script")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    from zoo.finetune.loop import resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(min(4, os.cpu_count() or 1))
        if not args.smoke:
            print("no GPU: this benchmark is meant for one; use --smoke to test the script on a CPU", file=sys.stderr)
            sys.exit(2)
    print(f"python {platform.python_version()}, torch {torch.__version__}, device "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}", flush=True)
    results = []
    if args.part in ("r50", "all"):
        args_budget = args.budget
        args.budget = args_budget or 150
        try:
            results.append(part_r50(args, device))
        except Exception as err:  # noqa: BLE001 - report and go on to the next part
            print(f"[r50] FAILED: {type(err).__name__}: {err}", flush=True)
            if not args.no_compile:
                print("[r50] retrying without torch.compile", flush=True)
                args.no_compile = True
                results.append(part_r50(args, device))
        args.budget = args_budget
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.part in ("fmnist", "all"):
        args.budget = args.budget or 300
        results.append(part_fmnist(args, device))
    print("RESULTS " + json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
