"""``zoo finetune``, ``zoo evaluate``, ``zoo predict``, ``zoo lr-find``, ``zoo register``: the CLI over
``zoo.finetune``.

Parse, call the library, print. torch and ``zoo.finetune`` are imported inside the commands only, so
``zoo --help`` stays fast. Errors are ``ZooError``s that ``zoo.cli.main`` turns into one line and exit
code 1; an interrupted ``zoo finetune`` leaves a resumable run and exits 130.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

__all__ = ["finetune_cmd", "evaluate_cmd", "predict_cmd", "lr_find_cmd", "register_cmd"]

_STRATEGIES = ("linear", "partial", "full")
_HEADS = ("linear", "mlp")


def _command_line(ctx: click.Context) -> str:
    """The command as typed: ``sys.argv`` from the command name on when this process is the ``zoo``
    command; else (called in process) ``zoo <command>`` and every parameter given, in declaration order."""
    from click.core import ParameterSource

    name = ctx.info_name or "finetune"
    if name in sys.argv[1:]:
        return shlex.join(["zoo", *sys.argv[sys.argv.index(name, 1):]])

    parts = ["zoo", name]
    options = []
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name]
        if isinstance(param, click.Argument):
            parts.extend(str(v) for v in (value if isinstance(value, tuple) else (value,)))
        elif param.is_flag:
            flag = next((o for o in param.opts if value), None) if value else (param.secondary_opts or [None])[0]
            if flag:
                options.append(flag)
        else:
            options += [param.opts[0], str(value)]
    return shlex.join(parts + options)


def _strategy_options(fn):
    for decorator in reversed([
        click.option("--strategy", type=click.Choice(_STRATEGIES), default="linear", show_default=True,
                     help="linear: frozen body, cached features, train the head; partial: train from "
                          "--unfreeze-from on; full: everything, smaller LRs for earlier layers."),
        click.option("--cut", metavar="LAYER", help="Keep the network up to LAYER (average-pooled) and put the new "
                                                    "head after it."),
        click.option("--unfreeze-from", metavar="LAYER", help="partial: the first layer that trains (default: the "
                                                              "last third of the body)."),
        click.option("--head", type=click.Choice(_HEADS), default="linear", show_default=True, help="The new head."),
        click.option("--hidden", type=click.IntRange(1), default=256, show_default=True, help="MLP head width."),
        click.option("--dropout", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
                     help="Dropout before the head's last layer."),
        click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True),
        click.option("--valid-pct", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
                     show_default=True, help="Share of each class held out (when DATA_DIR has no val/)."),
        click.option("--seed", type=int, default=0, show_default=True, help="Split and training seed."),
        click.option("--no-augment", is_flag=True, help="No random crops/flips while training."),
        click.option("--no-cache", is_flag=True, help="linear: run the frozen body every epoch instead of "
                                                      "training on cached features."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ..."),
        click.option("--workers", "num_workers", type=click.IntRange(0), default=0, show_default=True,
                     help="DataLoader worker processes."),
    ]):
        fn = decorator(fn)
    return fn


@click.command("finetune")
@click.argument("model")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="The run folder [default: runs/<DATA_DIR name>].")
@_strategy_options
@click.option("--epochs", type=click.IntRange(1), help="[default: 20 linear, 10 partial/full]")
@click.option("--lr", type=click.FloatRange(0, min_open=True), help="Peak learning rate of the head "
              "[default: 3e-3 linear, 1e-3 partial/full]; `zoo lr-find` suggests one.")
@click.option("--optimizer", type=click.Choice(["adamw", "sgd"]), default="adamw", show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0), default=0.05, show_default=True)
@click.option("--schedule", type=click.Choice(["cosine", "onecycle", "constant"]), default="cosine", show_default=True)
@click.option("--warmup-epochs", type=click.FloatRange(0), help="[default: 0 linear, 1 partial/full]")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True)
@click.option("--early-stopping", type=click.IntRange(1), metavar="N", help="Stop after N epochs without a lower "
              "validation loss.")
@click.option("--scratch", is_flag=True, help="Start from random weights (the same network, not pretrained).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out with its stored options.")
@click.option("--quiet", "-q", is_flag=True, help="Print only the final summary.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end (nothing else on stdout).")
@click.pass_context
def finetune_cmd(ctx: click.Context, model: str, data_dir: Path, out: Path | None, strategy: str, cut: str | None,
                 unfreeze_from: str | None, head: str, hidden: int, dropout: float, batch_size: int,
                 valid_pct: float, seed: int, no_augment: bool, no_cache: bool, device: str, num_workers: int,
                 epochs: int | None, lr: float | None, optimizer: str, weight_decay: float, schedule: str,
                 warmup_epochs: float | None, label_smoothing: float, early_stopping: int | None, scratch: bool,
                 resume: bool, quiet: bool, as_json: bool) -> None:
    """Fine-tune MODEL on the images in DATA_DIR and write a run folder.

    DATA_DIR holds one folder of images per class, or train/ and val/ (and test/) folders that do.
    The run folder is a complete record: the model (safetensors), config.json with this command,
    split.json (every file, its class and sha256), metrics, plots and a model card. Load the result
    with zoo.load(RUN_DIR); `zoo predict RUN_DIR IMAGES` and `zoo evaluate RUN_DIR DATA` use it.

    \b
    Examples:
      zoo finetune resnet18 photos/ --out runs/photos
      zoo finetune resnet18 photos/ --out runs/p2 --strategy partial --unfreeze-from layer4
      zoo finetune resnet18 photos/ --out runs/p3 --strategy full --epochs 5 --lr 1e-3
      zoo finetune resnet18 photos/ --out runs/p2 --resume     (after Ctrl-C or a crash)
    """
    from zoo.finetune.fit import fit

    if out is None and resume:
        raise click.UsageError("--resume needs --out RUN_DIR (the interrupted run's folder).")
    show = not (quiet or as_json)
    progress = show and sys.stderr.isatty()

    def echo(text: str = "") -> None:
        if show:
            click.echo(text)

    def on_setup(s) -> None:
        from zoo.finetune.data import balance_table

        split = s.split
        echo(f"model {s.model.base or s.model.name}: strategy {s.plan.strategy}, trainable parameters "
             f"{s.plan.trainable:,} of {s.plan.trainable + s.plan.frozen:,}")
        echo(f"data {split.root}: {split.num_classes} classes, train {len(split.train)}, val {len(split.val)}"
             + (f", test {len(split.test)}" if split.test else ""))
        echo(balance_table(split))
        if split.skipped:
            echo(f"skipped {len(split.skipped)} file(s) (listed in skipped.tsv):")
            for path, reason in split.skipped[:10]:
                echo(f"  {path}: {reason}")
            if len(split.skipped) > 10:
                echo(f"  ... and {len(split.skipped) - 10} more")
        if s.features:
            hit = all(v["hit"] for v in s.features.values())
            echo(f"features: {'read from the cache' if hit else 'computed once and cached'} "
                 f"({s.features['train']['count']} train images)")

    def on_epoch(info: dict[str, Any]) -> None:
        if progress:
            return  # the loop's progress bar prints each epoch's row
        row = info["row"]
        val = f"  val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}" if "val_loss" in row else ""
        echo(f"epoch {row['epoch']:>3}  train_loss {row['train_loss']:.4f}{val}  lr {row['lr']:.3g}  "
             f"{row['images_per_s']:.0f} img/s")

    try:
        run = fit(model, data_dir, out=out, strategy=strategy, cut=cut, unfreeze_from=unfreeze_from, head=head,
                  hidden=hidden, dropout=dropout, epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer,
                  weight_decay=weight_decay, schedule=schedule, warmup_epochs=warmup_epochs,
                  label_smoothing=label_smoothing, valid_pct=valid_pct, seed=seed, augment=not no_augment,
                  cache_features=not no_cache, early_stopping=early_stopping, resume=resume, pretrained=not scratch,
                  device=device, num_workers=num_workers, progress=progress, command=_command_line(ctx),
                  callbacks={"on_epoch_end": [on_epoch]}, on_setup=on_setup)
    except KeyboardInterrupt:
        where = out or "RUN_DIR"
        click.echo(f"Interrupted: the run in {where} is resumable with "
                   f"`zoo finetune {model} {data_dir} --out {where} --resume`.", err=True)
        raise
    summary = run.summary
    if as_json:
        click.echo(json.dumps({"run": str(run.path), "classes": run.classes, "counts": summary.get("counts"),
                               "skipped": [list(s) for s in run.split.skipped], "history": run.history,
                               **{k: summary[k] for k in ("val", "test") if k in summary}}))
        return
    from zoo.finetune.metrics import format_report

    for part in ("val", "test"):
        if part in summary:
            click.echo(f"{part}: " + format_report(summary[part], confusion=not quiet))
    click.echo(f"run: {run.path}  (model card: {run.path / 'README.md'})")
    click.echo(f"load it: zoo.load({str(run.path)!r})   or   zoo predict {run.path} IMAGE...")


@click.command("evaluate")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--batch-size", type=click.IntRange(1), default=64, show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def evaluate_cmd(run_dir: Path, data_dir: Path, batch_size: int, device: str, as_json: bool) -> None:
    """Accuracy, per-class precision and recall and the confusion matrix of a run on DATA_DIR.

    DATA_DIR holds class folders named as the run's classes (a subset is fine), or test/ (else val/)
    folders of them. Unreadable images are skipped and listed.

    \b
    Example:
      zoo evaluate runs/photos photos_test/
    """
    from zoo.finetune.metrics import format_report
    from zoo.finetune.run import load_run

    report = load_run(run_dir).evaluate(data_dir, batch_size=batch_size, device=device)
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{report['folder']}")
    click.echo(format_report(report))
    if report["skipped"]:
        click.echo(f"skipped {len(report['skipped'])} unreadable file(s):")
        for path, reason in report["skipped"]:
            click.echo(f"  {path}: {reason}")


@click.command("predict")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", "-k", type=click.IntRange(1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON line per image.")
def predict_cmd(run_dir: Path, images: tuple[Path, ...], top_k: int, as_json: bool) -> None:
    """Top-K labels with probabilities for IMAGES (files or folders) from a fine-tuned run.

    Unreadable images are reported on stderr and make the exit code 1 after every other image is done.

    \b
    Examples:
      zoo predict runs/photos cat.jpg dog.png --top-k 3
      zoo predict runs/photos new_photos/ --json
    """
    from zoo.errors import ImageError
    from zoo.finetune.run import load_run
    from zoo.images import find_images

    paths: list[Path] = []
    for item in images:
        if item.is_dir():
            found = find_images(item)
            if not found:
                raise ImageError(f"{item}: no image files in this folder.", path=str(item))
            paths.extend(found)
        else:
            paths.append(item)
    results = load_run(run_dir).predict(paths, top_k=top_k)
    failed = 0
    for r in results:
        if "error" in r:
            failed += 1
            click.echo(f"Error: {r['error']}", err=True)
            if as_json:
                click.echo(json.dumps(r))
            continue
        if as_json:
            click.echo(json.dumps(r))
        else:
            top = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"])
            click.echo(f"{r['image']}: {top}")
    if failed:
        raise SystemExit(1)


@click.command("lr-find")
@click.argument("model")
@click.argument("data_dir", type=click.Path(path_type=Path))
@_strategy_options
@click.option("--start-lr", type=click.FloatRange(0, min_open=True), default=1e-7, show_default=True)
@click.option("--end-lr", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True)
@click.option("--steps", "num_iter", type=click.IntRange(5), default=100, show_default=True)
@click.option("--plot", type=click.Path(path_type=Path), help="Write the loss-vs-LR curve to this PNG.")
@click.option("--json", "as_json", is_flag=True)
def lr_find_cmd(model: str, data_dir: Path, strategy: str, cut: str | None, unfreeze_from: str | None, head: str,
                hidden: int, dropout: float, batch_size: int, valid_pct: float, seed: int, no_augment: bool,
                no_cache: bool, device: str, num_workers: int, start_lr: float, end_lr: float, num_iter: int,
                plot: Path | None, as_json: bool) -> None:
    """Suggest a learning rate: sweep it exponentially over a few steps and pick the steepest fall of
    the (smoothed) loss. The model's weights are restored afterwards; nothing is written but --plot.

    \b
    Example:
      zoo lr-find resnet18 photos/ --strategy full --plot lr.png
    """
    from zoo.finetune.lr_find import lr_find

    result = lr_find(model, data_dir, strategy=strategy, cut=cut, unfreeze_from=unfreeze_from, head=head,
                     hidden=hidden, dropout=dropout, batch_size=batch_size, valid_pct=valid_pct, seed=seed,
                     start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, augment=not no_augment,
                     cache_features=not no_cache, device=device, num_workers=num_workers)
    written = result.plot(plot) if plot else None
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    click.echo(f"swept {len(result.lrs)} steps from {result.lrs[0]:.2g} to {result.lrs[-1]:.2g}"
               if result.lrs else "the sweep took no step")
    if result.suggestion:
        click.echo(f"suggested lr: {result.suggestion:.3g} (steepest fall; lowest loss at {result.min_loss_lr:.3g})")
        click.echo(f"use it: zoo finetune {model} {data_dir} --strategy {strategy} --lr {result.suggestion:.3g}")
    else:
        click.echo("no clear fall of the loss: try more --steps or a wider --start-lr/--end-lr range.")
    if plot:
        click.echo(f"plot: {written}" if written else "plot: matplotlib is not installed (pip install zoo[plots])")


@click.command("register")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--name", help="Entry name, arch.tag (a bare word gets .local) [default: from the folder name].")
@click.option("--force", is_flag=True, help="Replace your own earlier entry of that name.")
def register_cmd(run_dir: Path, name: str | None, force: bool) -> None:
    """Register a finished run as a local registry entry, so `zoo list --source local` shows it and
    zoo.load(NAME) loads it. The entry file goes to the user registry folder; its weights source is
    the run's model.safetensors (file:// URL) with its sha256.

    \b
    Example:
      zoo register runs/photos --name photos.ft1
    """
    from zoo.finetune.run import register_run

    entry_name, path = register_run(run_dir, name=name, force=force)
    click.echo(f"registered {entry_name} in {path}")
    click.echo(f"load it: zoo.load({entry_name!r})   list it: zoo list --source local")
