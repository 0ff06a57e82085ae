"""``zoo train``: train a reference architecture from scratch (one CPU, one GPU, or DDP under torchrun).

Parses options and calls ``zoo.finetune.scratch.train_scratch``, which leaves the same run folder as
``zoo finetune``; imports torch only inside the command. An interrupted run prints its resume command.
"""

from __future__ import annotations

import json
from typing import Any

import click

from zoo.registry import env

from ._output import Output, command_line, given_options

__all__ = ["train_cmd", "TRAIN_OPTIONS"]

DATA_HELP = "fashion-mnist, mnist, cifar10, or a folder of class folders (optionally train/ val/ test/)."


def _classes(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(c) for c in value.replace(" ", "").split(",") if c)
    except ValueError:
        raise click.BadParameter(f"class indices separated by commas, like 0,1,2; got {value!r}") from None


# The one place `zoo train` maps its options onto zoo.finetune.FinetuneConfig (field, flags, click
# settings); options left out keep the architecture's recipe (zoo.finetune.recipes) or the config's default,
# except on a folder, where the schedule, LR and augmentation left out are chosen from the data.
TRAIN_OPTIONS: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    ("epochs", ("--epochs",), dict(type=click.IntRange(min=1), help="Passes over the data [default: the recipe's; on a "
                                                                   "folder, from the number of images].")),
    ("batch_size", ("--batch-size",), dict(type=click.IntRange(min=1),
                                           help="Per-process batch size (DDP: global = this x N) [default: "
                                                "the recipe's; on a folder, from the number of images].")),
    ("lr", ("--lr",), dict(type=click.FloatRange(min=0, min_open=True),
                           help="Peak learning rate [default: the recipe's; on a folder, found by an LR sweep].")),
    ("classes", ("--classes",), dict(callback=_classes, help="Built-in data sets: keep only these class indices, "
                                                            "e.g. 0,1,2,3,4 (relabelled 0..k-1).")),
    ("augment", ("--augment",), dict(type=click.Choice(["none", "flip", "crop", "crop_flip", "crop_flip_erase"]),
                                     help="Augmentation [default: the recipe's; on a folder, from the input "
                                          "size and the number of images].")),
    ("input_size", ("--input-size",), dict(type=click.IntRange(min=8), metavar="PIXELS",
                                           help="A folder: train at PIXELS x PIXELS [default: the images' median "
                                                "shorter side, at most 224; 64 for lenet, the MLPs and "
                                                "softmax].")),
    ("grey", ("--grey/--colour",), dict(default=None, help="A folder: one channel or three [default: grey when "
                                                          "every sampled image is].")),
    ("valid_pct", ("--valid-pct",), dict(type=click.FloatRange(0, 1, min_open=True, max_open=True),
                                         help="A folder without val/: share of each class held out [default: 0.2].")),
    ("early_stopping", ("--early-stopping",), dict(type=click.IntRange(1), metavar="N",
                                                   help="Stop after N epochs without a better validation accuracy.")),
    ("device", ("--device",), dict(help="auto (cuda if available), cpu, cuda, cuda:1 ... [default: auto]")),
    ("amp", ("--amp/--no-amp",), dict(default=None, help="bf16 autocast [default: on for GPUs, off on the CPU].")),
    ("compile", ("--compile",), dict(is_flag=True, help="torch.compile the model.")),
    ("channels_last", ("--channels-last/--no-channels-last",),
     dict(default=None, help="NHWC layout [default: on for convnets on a GPU].")),
    ("seed", ("--seed",), dict(type=int, help="Seeds the split, weights, shuffle and augmentation [default: 0].")),
    ("checkpoint_interval", ("--checkpoint-interval",),
     dict(type=click.FloatRange(min=0), metavar="SECONDS",
          help="Also checkpoint mid-epoch this often, so a kill loses at most this much (0: epoch ends only) "
               "[default: 300].")),
]


def _train_options(fn):
    for name, flags, settings in reversed(TRAIN_OPTIONS):
        fn = click.option(*flags, name, **settings)(fn)
    return fn


@click.command("train")
@click.argument("arch")
@click.option("--data", required=True, help=DATA_HELP)
@click.option("--out", type=click.Path(file_okay=False), help="Run folder to write (or resume) [default: "
                                                              "runs/<ARCH>-<data name>].")
@_train_options
@click.option("--resume", is_flag=True, help="Continue the run in --out with its stored options (options given "
                                             "here change them, e.g. --epochs to extend it).")
@click.option("--data-root", type=click.Path(file_okay=False), help="Where the built-in data sets live (default "
                                                                    "$ZOO_HOME/datasets).")
@click.option("--threads", type=click.IntRange(min=1),
              help="CPU threads for torch (on a busy shared machine 1 is often fastest: idle OpenMP threads spin).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar, set-up or per-epoch lines: the final summary only.")
@click.pass_context
def train_cmd(ctx: click.Context, arch: str, data: str, out: str | None, resume: bool, data_root: str | None,
              threads: int | None, as_json: bool, quiet: bool, **_: Any) -> None:
    """Train ARCH (a zoo reference architecture) from random weights on --data.

    ARCH is softmax, mlp_sigmoid, mlp_relu, lenet, googlenet or resnet18/34/50/101/152 (see
    `zoo list --source zoo`); each has a recipe of paper-style defaults that the options override.
    On a folder, the epochs, batch size, learning rate (an LR sweep), warm-up, early stopping and
    augmentation you leave out are chosen from the data, as `zoo finetune` chooses them, and said.
    A name with pretrained weights (lenet.fmnist5) is refused: `zoo finetune` starts from those.
    A folder trains at its images' size and colour (said at the start; --input-size, --grey/--colour
    choose), keeping the best epoch's weights by its validation part. The run folder is the same as
    `zoo finetune`'s: zoo.load(OUT), zoo predict/evaluate/register OUT, zoo runs OUT, --resume.

    \b
    Examples:
      zoo train lenet --data fashion-mnist --out runs/lenet
      zoo train lenet --data fashion-mnist --classes 0,1,2,3,4 --epochs 6 --out runs/lenet5
      zoo train resnet18 --data photos/ --input-size 64 --colour
      zoo train resnet18 --data fashion-mnist --device cuda --compile --out runs/r18
      zoo train lenet --data fashion-mnist --out runs/lenet --resume
      torchrun --nproc-per-node 2 -m zoo.cli train lenet --data fashion-mnist --out runs/ddp
    """
    from zoo.finetune.scratch import default_out, train_scratch

    if threads:
        import torch

        torch.set_num_threads(threads)
    if out is None and resume:
        raise click.UsageError("--resume needs --out RUN_DIR (the interrupted run's folder).")
    if out is None and env.distributed().world > 1:
        raise click.UsageError("under torchrun pass --out RUN_DIR: every process writes to the same run folder.")
    show = Output(quiet=quiet or env.distributed().rank != 0, as_json=as_json)
    out = out or str(default_out(arch, data))
    try:
        run = train_scratch(arch, data, out=out, resume=resume, progress=show.bars, command=command_line(ctx),
                            data_root=data_root, callbacks=show.epoch_lines(),
                            on_start=lambda record: _describe_start(show, record, out),
                            **given_options(ctx, [name for name, _, _ in TRAIN_OPTIONS]))
    except KeyboardInterrupt:
        click.echo(f"Interrupted: the run in {out} is resumable with "
                   f"`zoo train {arch} --data {data} --out {out} --resume`.", err=True)
        raise
    _leave_process_group()
    if env.distributed().rank != 0:
        return
    _print_summary(run, arch, data, as_json=as_json)


def _describe_start(show: Output, record: dict[str, Any], out: str) -> None:
    data, cfg = record["data"], record["config"]
    size = "x".join(map(str, data.get("input", {}).get("size", [])))
    show.echo(f"{record['base']['name']} from random weights on {data['name']}: {len(data['classes'])} classes, "
              + ", ".join(f"{p} {n}" for p, n in data["sizes"].items()) + f"; run folder {out}")
    if "input" in data:
        show.echo(f"input {size} ({'grey' if cfg['grey'] else 'colour'}), from {data['input']['from']}")
    else:
        show.echo("no validation part: the per-epoch val_ figures are on the test split, and the last epoch's "
                  "weights are kept")
    chosen = record.get("chosen", {})
    recipe = record["base"].get("recipe")
    show.echo(f"{'recipe ' + recipe if recipe else 'settings from the data, as zoo finetune chooses them'}: "
              f"{cfg['epochs']} epochs, lr {cfg['lr']:g}, batch {cfg['batch_size']}, {cfg['train']['optimizer']} "
              f"({cfg['train']['schedule']}), augment {cfg['augment']}"
              + (f" ({', '.join(chosen)} chosen from the data)" if chosen and recipe else ""))
    from zoo.finetune.defaults import Choice

    for name, choice in chosen.items():
        show.echo(Choice(**choice).line(name))


def _print_summary(run: Any, arch: str, data: str, *, as_json: bool) -> None:
    """The final summary (printed even with --quiet)."""
    summary, history = run.summary, run.history
    report = summary.get("test") or summary.get("val") or {}
    part = "test" if "test" in summary else "val"
    last = history[-1] if history else {}
    if as_json:
        click.echo(json.dumps({
            "run_dir": str(run.path), "arch": arch, "data": data, "epochs": len(history),
            "test_accuracy": (summary.get("test") or {}).get("accuracy"),
            "test_loss": (summary.get("test") or {}).get("loss"),
            "val_accuracy": (summary.get("val") or {}).get("accuracy"), "weights_epoch": summary.get("weights_epoch"),
            "train_seconds": round(summary.get("train_seconds", 0.0), 2), "images_per_s": last.get("images_per_s"),
            "device": run.record["environment"]["device"]}))
        return
    from zoo.finetune.train_config import monitor_text

    kept = f"best by {monitor_text(run.config.train.monitor)}" if summary.get("weights") == "best" else "the last"
    click.echo(f"{arch} on {data}: {part} accuracy {report.get('accuracy', float('nan')) * 100:.2f}% with the "
               f"weights of epoch {summary.get('weights_epoch')} of {len(history)} "
               f"({kept}), "
               f"{summary.get('train_seconds', 0.0):.0f} s training ({last.get('images_per_s', 0):.0f} images/s).")
    click.echo(f"run: {run.path}  (model card: {run.dir.card})")
    click.echo(f"use it: zoo predict {run.path} IMAGE...   zoo evaluate {run.path} DATA_DIR   "
               f"zoo.load({str(run.path)!r})")


def _leave_process_group() -> None:
    """Under torchrun: wait for every rank, then tear the group down (a rank that leaves while another
    still talks to gloo can abort the process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
