"""``zoo train``: train a reference architecture from scratch (one CPU, one GPU, or DDP under torchrun).

Parses options and calls ``zoo.finetune.scratch.train_scratch``; imports torch only inside the command.
"""

from __future__ import annotations

import json

import click

from zoo.registry import env

__all__ = ["train_cmd"]

DATA_HELP = "fashion-mnist, mnist, cifar10, or a folder of class folders (optionally train/ val/ test/)."


@click.command("train")
@click.argument("arch")
@click.option("--data", required=True, help=DATA_HELP)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder to write (or resume).")
@click.option("--epochs", type=click.IntRange(min=1), help="Override the recipe's epochs.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Per-process batch size (DDP: global = this x N).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Override the recipe's peak learning rate.")
@click.option("--classes", help="Keep only these class indices, e.g. 0,1,2,3,4 (relabelled 0..k-1).")
@click.option("--augment", type=click.Choice(["none", "flip", "crop", "crop_flip", "crop_flip_erase"]),
              help="Override the recipe's augmentation.")
@click.option("--device", default="auto", show_default=True, help="auto (cuda if available), cpu, cuda, cuda:1 ...")
@click.option("--amp/--no-amp", default=None, help="bf16 autocast (default: on for GPUs, off on the CPU).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
@click.option("--channels-last/--no-channels-last", default=None, help="NHWC layout (default: on for convnets on a GPU).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds weights, shuffle and augmentation.")
@click.option("--data-root", type=click.Path(file_okay=False), help="Where the built-in data sets live (default $ZOO_HOME/datasets).")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads for torch (on a busy shared machine 1 is often fastest: idle OpenMP threads spin).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or per-epoch lines.")
def train_cmd(arch: str, data: str, out: str, epochs: int | None, batch_size: int | None, lr: float | None,
              classes: str | None, augment: str | None, device: str, amp: bool | None, compile_: bool,
              channels_last: bool | None, resume: bool, seed: int, data_root: str | None, threads: int | None,
              as_json: bool, quiet: bool) -> None:
    """Train ARCH (a zoo reference architecture) from random weights on --data.

    ARCH is softmax, mlp_sigmoid, mlp_relu, lenet, googlenet or resnet18/34/50/101/152 (see
    `zoo list --source zoo`); each has a recipe of paper-style defaults that the options override.
    The run folder loads like any model: zoo.load(OUT), zoo predict OUT IMAGES.

    \b
    Examples:
      zoo train lenet --data fashion-mnist --out runs/lenet
      zoo train lenet --data fashion-mnist --classes 0,1,2,3,4 --epochs 6 --out runs/lenet5
      zoo train resnet18 --data fashion-mnist --device cuda --compile --out runs/r18
      zoo train lenet --data fashion-mnist --out runs/lenet --resume
      torchrun --nproc-per-node 2 -m zoo.cli train lenet --data fashion-mnist --out runs/ddp
    """
    from zoo.finetune.scratch import train_scratch

    if threads:
        import torch

        torch.set_num_threads(threads)

    result = train_scratch(arch, data, out=out, epochs=epochs, batch_size=batch_size, lr=lr, classes=classes,
                           seed=seed, device=device, amp="auto" if amp is None else amp, compile=compile_,
                           channels_last=channels_last, resume=resume, progress=not quiet and not as_json,
                           augment=augment, data_root=data_root)
    _leave_process_group()
    if env.distributed().rank != 0:
        return
    last = result.history[-1] if result.history else {}
    summary = {"run_dir": str(result.run_dir), "arch": arch, "data": data, "epochs": len(result.history),
               "test_accuracy": result.test["accuracy"], "test_loss": result.test["loss"],
               "train_seconds": round(result.seconds, 2), "images_per_s": last.get("images_per_s"),
               "device": str(result.config.device)}
    if as_json:
        click.echo(json.dumps(summary))
        return
    acc = result.test["accuracy"]
    click.echo(f"{arch} on {data}: test accuracy {acc * 100:.2f}% after {len(result.history)} epochs, "
               f"{result.seconds:.0f} s training ({last.get('images_per_s', 0):.0f} images/s). Run: {out}")


def _leave_process_group() -> None:
    """Under torchrun: wait for every rank, then tear the group down (a rank that leaves while another
    still talks to gloo can abort the process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
