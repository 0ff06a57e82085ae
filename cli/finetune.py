"""``zoo finetune``, ``zoo evaluate``, ``zoo lr-find``, ``zoo register``, ``zoo runs``: the CLI over
``zoo.finetune`` (``zoo predict`` and ``zoo validate`` are in ``zoo.cli.predict``).

Parse, call the library, print. torch and ``zoo.finetune`` are imported inside the commands only, so
``zoo --help`` stays fast. Errors are ``ZooError``s that ``zoo.cli.main`` turns into one line and exit
code 1; an interrupted ``zoo finetune`` leaves a resumable run and exits 130.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._output import Output, command_line, given_options

__all__ = ["finetune_cmd", "evaluate_cmd", "lr_find_cmd", "register_cmd", "runs_cmd",
           "MODEL_OPTIONS", "SCHEDULE_OPTIONS"]

# The one place the CLI maps its options onto zoo.finetune.FinetuneConfig: (field, flags, click
# settings). A loop field (batch_size, seed, device...) goes into the config's nested TrainConfig. The
# defaults shown are the config's own (tests/cli/test_finetune_cli.py checks that they agree), and only
# the options the user gives are passed on; zoo.finetune is not imported here so `--help` stays fast.
MODEL_OPTIONS: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    ("strategy", ("--strategy",), dict(type=click.Choice(("linear", "partial", "full")), default="linear",
                                       help="linear: frozen body, cached features, train the head; partial: train "
                                            "from --unfreeze-from on; full: everything, smaller LRs for earlier "
                                            "layers.")),
    ("cut", ("--cut",), dict(metavar="LAYER", help="Keep the network up to LAYER (average-pooled) and put the new "
                                                   "head after it.")),
    ("unfreeze_from", ("--unfreeze-from",), dict(metavar="LAYER", help="partial: the first layer that trains "
                                                                       "(default: the last third of the body).")),
    ("head", ("--head",), dict(type=click.Choice(("linear", "mlp")), default="linear", help="The new head.")),
    ("hidden", ("--hidden",), dict(type=click.IntRange(1), default=256, help="MLP head width.")),
    ("dropout", ("--dropout",), dict(type=click.FloatRange(0, 1, max_open=True), default=0.0,
                                     help="Dropout before the head's last layer.")),
    ("body_lr_scale", ("--body-lr-scale",), dict(type=click.FloatRange(0, min_open=True), metavar="FACTOR",
                                                 help="partial/full: the body's learning rate relative to the "
                                                      "head's (default: 1 for partial; 0.1 for full's "
                                                      "earliest layers, growing towards the head).")),
    ("batch_size", ("--batch-size",), dict(type=click.IntRange(1), help="[default: chosen from the number of "
                                                                       "images, 8-64]")),
    ("valid_pct", ("--valid-pct",), dict(type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.2,
                                         help="Share of each class held out (when DATA_DIR has no val/).")),
    ("seed", ("--seed",), dict(type=int, default=0, help="Split and training seed.")),
    ("augment", ("--augment/--no-augment",), dict(default=True, help=(
        "Augment the training images (shifts and flips for small inputs; random resized crops and flips for "
        "photo-sized ones, none when the images are smaller than the input)."))),
    ("cache_features", ("--cache/--no-cache",), dict(default=True, help="linear: train on cached features "
                                                                        "(--no-cache runs the frozen body every "
                                                                        "epoch).")),
    ("device", ("--device",), dict(default="auto", help="auto, cpu, cuda, cuda:1 ...")),
    ("num_workers", ("--workers",), dict(type=click.IntRange(0), default=0, help="DataLoader worker processes.")),
]
SCHEDULE_OPTIONS: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    ("epochs", ("--epochs",), dict(type=click.IntRange(1), help="[default: chosen from the number of images; "
                                                                "early stopping may end the run sooner]")),
    ("lr", ("--lr",), dict(type=click.FloatRange(0, min_open=True), help="Peak learning rate of the head, alone "
                                                                         "and then with the body [default: found by "
                                                                         "the LR finder and printed].")),
    ("head_epochs", ("--head-epochs",), dict(type=click.IntRange(0), help="full/partial: epochs of the new head "
                                                                          "alone on cached features before the body "
                                                                          "trains; 0: none [default: chosen].")),
    ("optimizer", ("--optimizer",), dict(type=click.Choice(["adamw", "sgd"]), default="adamw")),
    ("weight_decay", ("--weight-decay",), dict(type=click.FloatRange(0), default=0.05)),
    ("schedule", ("--schedule",), dict(type=click.Choice(["cosine", "onecycle", "constant"]), default="cosine")),
    ("warmup_epochs", ("--warmup-epochs",), dict(type=click.FloatRange(0), help="[default: 0 linear, 1 "
                                                                                "partial/full]")),
    ("label_smoothing", ("--label-smoothing",), dict(type=click.FloatRange(0, 1, max_open=True), default=0.0)),
    ("early_stopping", ("--early-stopping",), dict(type=click.IntRange(0), metavar="N",
                                                   help="Stop after N epochs without a better validation accuracy; "
                                                        "0: never [default: a third of the epochs, at least 5].")),
    ("pretrained", ("--pretrained/--scratch",), dict(default=True, help="--scratch: start from random weights "
                                                                        "(the same network, not pretrained).")),
]


def config_options(table: list[tuple[str, tuple[str, ...], dict[str, Any]]]):
    """Click options for the rows of ``table`` (in order), each named after its config field."""

    def decorate(fn):
        for name, flags, settings in reversed(table):
            fn = click.option(*flags, name, show_default="default" in settings, **settings)(fn)
        return fn

    return decorate


@click.command("finetune")
@click.argument("model")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), help="The run folder [default: runs/<DATA_DIR name>].")
@config_options(MODEL_OPTIONS)
@config_options(SCHEDULE_OPTIONS)
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out with its stored options (options "
                                             "given here change them, e.g. --epochs to extend it).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, set-up or per-epoch lines: the final summary "
                                                  "only.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end (nothing else on stdout).")
@click.pass_context
def finetune_cmd(ctx: click.Context, model: str, data_dir: Path, out: Path | None, resume: bool, quiet: bool,
                 as_json: bool, **_: Any) -> None:
    """Fine-tune MODEL on the images in DATA_DIR and write a run folder.

    DATA_DIR holds one folder of images per class, or train/ and val/ (and test/) folders that do.
    The run folder is a complete record: the model (safetensors, the best epoch's weights by the
    validation loss), config.json with this command, split.json (every file, its class and sha256),
    metrics, plots and a model card. Load the result with zoo.load(RUN_DIR); `zoo predict RUN_DIR
    IMAGES`, `zoo evaluate RUN_DIR DATA` and `zoo runs RUN_DIR...` use it.

    \b
    Examples:
      zoo finetune resnet18 photos/ --out runs/photos
      zoo finetune resnet18 photos/ --out runs/p2 --strategy partial --unfreeze-from layer4
      zoo finetune resnet18 photos/ --out runs/p3 --strategy full --epochs 5 --lr 1e-3
      zoo finetune resnet18 photos/ --out runs/p2 --resume     (after Ctrl-C or a crash)
    """
    from zoo.finetune.fit import default_out, fit

    if out is None and resume:
        raise click.UsageError("--resume needs --out RUN_DIR (the interrupted run's folder).")
    show = Output(quiet=quiet, as_json=as_json)
    out = out or default_out(data_dir)
    options = given_options(ctx, [name for name, _, _ in MODEL_OPTIONS + SCHEDULE_OPTIONS])
    try:
        run = fit(model, data_dir, out=out, resume=resume, progress=show.bars, command=command_line(ctx),
                  callbacks=show.epoch_lines(), on_setup=lambda s: _describe_setup(show, s), **options)
    except KeyboardInterrupt:
        click.echo(f"Interrupted: the run in {out} is resumable with "
                   f"`zoo finetune {model} {data_dir} --out {out} --resume`.", err=True)
        raise
    summary = run.summary
    if as_json:
        click.echo(json.dumps({"run": str(run.path), "classes": run.classes, "counts": summary.get("counts"),
                               "skipped": [list(s) for s in run.split.skipped], "history": run.history,
                               "weights_epoch": summary.get("weights_epoch"),
                               **{k: summary[k] for k in ("val", "test") if k in summary}}))
        return
    _print_summary(run, summary, confusion=not quiet)


def _describe_setup(show: Output, s: Any) -> None:
    from zoo.finetune.data import balance_table
    from zoo.finetune.fit import describe_choices

    split = s.split
    show.echo(f"model {s.model.base or s.model.name}: strategy {s.plan.strategy}, trainable parameters "
              f"{s.plan.trainable:,} of {s.plan.trainable + s.plan.frozen:,}")
    show.echo(f"data {split.root}: {split.num_classes} classes, train {len(split.train)}, val {len(split.val)}"
              + (f", test {len(split.test)}" if split.test else ""))
    show.echo(balance_table(split))
    if split.skipped:
        show.echo(f"skipped {len(split.skipped)} file(s) (listed in skipped.tsv):")
        for path, reason in split.skipped[:10]:
            show.echo(f"  {path}: {reason}")
        if len(split.skipped) > 10:
            show.echo(f"  ... and {len(split.skipped) - 10} more")
    if s.features:
        hit = all(v["hit"] for v in s.features.values())
        show.echo(f"features: {'read from the cache' if hit else 'computed once and cached'} "
                  f"({s.features['train']['count']} train images)")
    for line in describe_choices(s):
        show.echo(line)


def _print_summary(run: Any, summary: dict[str, Any], *, confusion: bool) -> None:
    """The final summary of a finished run (printed even with --quiet)."""
    from zoo.finetune.metrics import format_report

    for part in ("val", "test"):
        if part in summary:
            click.echo(f"{part}: " + format_report(summary[part], confusion=confusion))
    kept = summary.get("weights_epoch")
    if kept is not None:
        from zoo.finetune.train_config import monitor_text

        best = summary.get("weights") == "best"
        how = f"the best by {monitor_text(run.config.train.monitor)}" if best else "the last"
        head = ": the head alone, the body as pretrained (no epoch that trained the body beat it)" if kept == 0 else ""
        click.echo(f"weights: epoch {kept} of {summary.get('epochs_run')} ({how}{head})")
    click.echo(f"run: {run.path}  (model card: {run.dir.card})")
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


@click.command("lr-find")
@click.argument("model")
@click.argument("data_dir", type=click.Path(path_type=Path))
@config_options(MODEL_OPTIONS)
@click.option("--start-lr", type=click.FloatRange(0, min_open=True), default=1e-7, show_default=True)
@click.option("--end-lr", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True)
@click.option("--steps", "num_iter", type=click.IntRange(5), default=100, show_default=True)
@click.option("--plot", type=click.Path(path_type=Path), help="Write the loss-vs-LR curve to this PNG.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def lr_find_cmd(ctx: click.Context, model: str, data_dir: Path, start_lr: float, end_lr: float, num_iter: int,
                plot: Path | None, as_json: bool, **_: Any) -> None:
    """Suggest a learning rate: sweep it exponentially over a few steps and take the point halfway down
    the longest fall of the (smoothed) loss (fastai's valley rule). The model's weights are restored
    afterwards; nothing is written but --plot. `zoo finetune` without --lr runs such a sweep itself.

    \b
    Example:
      zoo lr-find resnet18 photos/ --strategy full --plot lr.png
    """
    from zoo.finetune.lr_find import lr_find

    options = given_options(ctx, [name for name, _, _ in MODEL_OPTIONS])
    result = lr_find(model, data_dir, start_lr=start_lr, end_lr=end_lr, num_iter=num_iter, **options)
    written = result.plot(plot) if plot else None
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    click.echo(f"swept {len(result.lrs)} steps from {result.lrs[0]:.2g} to {result.lrs[-1]:.2g}"
               if result.lrs else "the sweep took no step")
    if result.suggestion:
        click.echo(f"suggested lr: {result.suggestion:.3g} (valley of the loss; lowest loss at "
                   f"{result.min_loss_lr:.3g})")
        click.echo(f"use it: zoo finetune {model} {data_dir} --strategy {ctx.params['strategy']} "
                   f"--lr {result.suggestion:.3g}")
    else:
        click.echo("no clear fall of the loss: try more --steps or a wider --start-lr/--end-lr range.")
    if plot:
        click.echo(f"plot: {written}" if written else "plot: matplotlib is not installed (pip install zoo[plots])")


@click.command("register")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--name", help="Entry name, arch.tag (a bare word gets .local) [default: from the folder name].")
@click.option("--force", is_flag=True, help="Replace your own earlier entry of that name.")
def register_cmd(run_dir: Path, name: str | None, force: bool) -> None:
    """Register a finished run (fine-tuned or from scratch) as a local registry entry, so `zoo list
    --source local` shows it and zoo.load(NAME) loads it. The entry file goes to the user registry
    folder; the run's model, record and card are copied into the cache ($ZOO_HOME/runs/NAME) and the
    entry points at that copy with its sha256, so the run folder may be moved or deleted afterwards.

    \b
    Example:
      zoo register runs/photos --name photos.ft1
    """
    from zoo.finetune.register import register_run, registered_copy

    entry_name, path = register_run(run_dir, name=name, force=force)
    click.echo(f"registered {entry_name} in {path}")
    click.echo(f"its model is kept in {registered_copy(entry_name).path} (moving or deleting {run_dir} is fine)")
    click.echo(f"load it: zoo.load({entry_name!r})   list it: zoo list --source local")


@click.command("runs")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the rows as a JSON list.")
def runs_cmd(run_dirs: tuple[Path, ...], as_json: bool) -> None:
    """Compare runs side by side: model, strategy, data, epochs, the best epoch by the validation
    metric, validation and test accuracy, training time. A folder of runs stands for every run in it.

    \b
    Examples:
      zoo runs runs/photos runs/photos-2 runs/lenet-photos
      zoo runs runs/ --json
    """
    from zoo.finetune.run import compare_runs

    rows = compare_runs(run_dirs)
    if as_json:
        click.echo(json.dumps(rows))
        return
    header = ("run", "model", "strategy", "data", "epochs", "best epoch", "best val", "val acc", "test acc", "time")
    table = [header] + [_runs_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    for line in table:
        cells = zip(line, widths, strict=True)
        click.echo("  ".join(cell.ljust(w) if i < 4 else cell.rjust(w) for i, (cell, w) in enumerate(cells)))


def _runs_cells(row: dict[str, Any]) -> tuple[str, ...]:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    epochs = f"{row['epochs']}/{row['epochs_planned']}" if row.get("epochs_planned") else str(row["epochs"])
    best = "-" if row["best_value"] is None else f"{row['best_value']:.4f} {row['monitor'].replace('val_', '')}"
    status = "" if row["complete"] else " (unfinished)"
    return (row["run"] + status, str(row["model"]), str(row["strategy"]), str(row["data"]), epochs,
            "-" if row["best_epoch"] is None else str(row["best_epoch"]), best, pct(row["val_accuracy"]),
            pct(row["test_accuracy"]), f"{row['seconds']:.0f} s")
