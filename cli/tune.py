"""``zoo tune``: a hyper-parameter search (grid, random, TPE, Gaussian process) with pruning, in
parallel, over fine-tuning (``zoo tune MODEL DATA``) or from-scratch training (``zoo tune ARCH --data
fashion-mnist|DIR``); ``zoo tune --report STUDY`` prints a study's table and writes its plots.

Parses options and calls ``zoo.finetune.search.tune`` / ``report_study`` (which need optuna: ``pip
install zoo[tune]``); imports them inside the command only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from ._output import command_line, given_options

__all__ = ["tune_cmd", "SEARCH_OPTIONS", "BASE_OPTIONS"]

# The options of the search (zoo.finetune.search.SearchConfig fields); only those given are passed on.
SEARCH_OPTIONS: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    ("sampler", ("--sampler",), dict(type=click.Choice(["grid", "random", "tpe", "gp"]),
                                     help="grid, random, or a Bayesian one: tpe (tree-structured Parzen estimator) "
                                          "or gp (Gaussian process) [default: tpe].")),
    ("trials", ("--trials",), dict(type=click.IntRange(1), help="Trials in the study [default: 20; grid: its "
                                                                "size; with --timeout alone: no limit].")),
    ("timeout", ("--timeout",), dict(type=click.FloatRange(0, min_open=True), metavar="SECONDS",
                                     help="Start no trial after this many seconds.")),
    ("metric", ("--metric",), dict(type=click.Choice(["accuracy", "loss"]),
                                   help="Validation accuracy (maximised) or loss (minimised) [default: accuracy].")),
    ("pruner", ("--pruner",), dict(type=click.Choice(["none", "median", "hyperband"]),
                                   help="Stop unpromising trials early, on each epoch's validation figure "
                                        "[default: none].")),
    ("seed", ("--seed",), dict(type=int, help="Seeds the sampler, the split and every trial [default: 0].")),
    ("jobs", ("--jobs",), dict(type=click.IntRange(1), help="Trials at a time, each in its own process with its "
                                                            "share of the CPU threads (and a GPU each when there "
                                                            "are several) [default: 1].")),
    ("storage", ("--storage",), dict(metavar="URL|FILE", help="optuna storage: sqlite:///study.db, "
                                                              "postgresql://user@host/db (several machines share "
                                                              "one study), or a journal file [default: "
                                                              "STUDY/journal.log].")),
    ("space", ("--space",), dict(type=click.Path(dir_okay=False, path_type=str), metavar="FILE",
                                 help="A TOML or JSON search space [default: the built-in space].")),
    ("name", ("--name",), dict(help="The study's name in the storage [default: the study folder's name].")),
    ("keep", ("--keep",), dict(type=click.IntRange(1), help="The best N trials keep their weights [default: 1].")),
]
# Options every trial gets (zoo.finetune.FinetuneConfig fields); an option given here is fixed, and
# leaves the built-in space.
BASE_OPTIONS: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
    ("strategy", ("--strategy",), dict(type=click.Choice(["linear", "partial", "full"]),
                                       help="Fine-tuning: what trains [default: linear, on cached features].")),
    ("epochs", ("--epochs",), dict(type=click.IntRange(1), help="Fix the epochs of every trial.")),
    ("batch_size", ("--batch-size",), dict(type=click.IntRange(1), help="Fix the batch size of every trial.")),
    ("lr", ("--lr",), dict(type=click.FloatRange(0, min_open=True), help="Fix the peak learning rate of every "
                                                                       "trial.")),
    ("valid_pct", ("--valid-pct",), dict(type=click.FloatRange(0, 1, min_open=True, max_open=True),
                                         help="Share of each class held out for validation [default: 0.2].")),
    ("classes", ("--classes",), dict(help="Built-in data sets: keep only these class indices, e.g. 0,1,2.")),
    ("device", ("--device",), dict(help="auto, cpu, cuda, cuda:1 ... [default: auto]")),
]


def _options(table):
    def decorate(fn):
        for name, flags, settings in reversed(table):
            fn = click.option(*flags, name, **settings)(fn)
        return fn

    return decorate


@click.command("tune")
@click.argument("target", required=False)
@click.argument("data", required=False)
@click.option("--data", "data_option", metavar="DATA", help="From scratch: fashion-mnist, mnist, cifar10 or a "
                                                            "folder of class folders.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="The study folder [default: studies/<TARGET>-<data name>]; the same folder continues the study.")
@_options(SEARCH_OPTIONS)
@_options(BASE_OPTIONS)
@click.option("--data-root", type=click.Path(file_okay=False), help="Where the built-in data sets live.")
@click.option("--threads", type=click.IntRange(1), help="CPU threads for torch in this process (--jobs 1).")
@click.option("--plots/--no-plots", default=True, help="Write the study's PNG plots at the end.")
@click.option("--report", type=click.Path(file_okay=False, path_type=Path), metavar="STUDY",
              help="Print STUDY's trials and best trial, and write its table and plots; runs no trial.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end (nothing else on stdout).")
@click.option("--quiet", "-q", is_flag=True, help="No per-trial lines or bar: the final summary only.")
@click.pass_context
def tune_cmd(ctx: click.Context, target: str | None, data: str | None, data_option: str | None, out: Path | None,
             data_root: str | None, threads: int | None, plots: bool, report: Path | None, as_json: bool,
             quiet: bool, **_: Any) -> None:
    """Search hyper-parameters: fine-tune MODEL on DATA, or train ARCH from scratch on --data.

    Every trial is a normal run (its folder under STUDY/trials/) judged on the validation part of the
    split the study makes once; the test part is never used. The study folder holds the optuna
    storage, trials.csv, best.json, the best trial's run folder (STUDY/best: zoo.load, zoo evaluate
    and zoo register open it) and plots. Ctrl-C or a kill loses only the running trials: run the same
    command again to continue. The same command on another machine with the same --storage URL joins
    the study.

    \b
    Built-in spaces: linear: lr, weight_decay, epochs; partial/full: also body_lr_scale, head,
    dropout, label_smoothing, augment, batch_size (partial: unfreeze_from); from scratch: the
    recipe's knobs (on a folder: lr, weight_decay, batch_size, label_smoothing, augment around
    what a run with no flags chooses there) and the architecture's (MLPs: arch.width,
    arch.depth). A --space file:
      lr = { low = 1e-4, high = 0.1, log = true }
      epochs = { low = 5, high = 30, step = 5 }
      head = ["linear", "mlp"]
      batch_size = 64                     # fixed for every trial

    \b
    Examples:
      zoo tune resnet18 photos/ --trials 30
      zoo tune resnet18 photos/ --strategy full --sampler gp --pruner median --jobs 2
      zoo tune mlp_relu --data fashion-mnist --sampler tpe --pruner hyperband --timeout 3600
      zoo tune lenet --data fashion-mnist --storage postgresql://me@db/zoo --name lenet-fm
      zoo tune --report studies/resnet18-photos
    """
    if report is not None:
        if target or data or data_option:
            raise click.UsageError("--report STUDY runs no trial: give no MODEL, ARCH or DATA with it.")
        _report(report, as_json=as_json)
        return
    kind, data = _what(target, data, data_option)
    from zoo.finetune.search import tune

    if threads:
        import torch

        torch.set_num_threads(threads)
    options = given_options(ctx, [name for name, _, _ in SEARCH_OPTIONS + BASE_OPTIONS])
    if "classes" in options:
        options["classes"] = _classes(options["classes"])
    try:
        study = tune(target, data, kind=kind, out=out, data_root=data_root, command=command_line(ctx), plots=plots,
                     progress=False if quiet or as_json else None, **options)
    except KeyboardInterrupt:
        click.echo("Interrupted: the running trials are marked interrupted; run the same command again to continue "
                   "the study (they run again).", err=True)
        raise
    _summary(study, as_json=as_json)


def _what(target: str | None, data: str | None, data_option: str | None) -> tuple[str, str]:
    if not target:
        raise click.UsageError("give MODEL DATA (fine-tuning), ARCH --data DATA (from scratch), or --report STUDY.")
    if data and data_option:
        raise click.UsageError("give DATA or --data, not both: `zoo tune MODEL DATA` fine-tunes, `zoo tune ARCH "
                               "--data DATA` trains from scratch.")
    if not data and not data_option:
        raise click.UsageError(f"no data: `zoo tune {target} DATA` to fine-tune, `zoo tune {target} --data DATA` to "
                               "train from scratch.")
    return ("finetune", data) if data else ("scratch", data_option)


def _classes(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in value.replace(" ", "").split(",") if c)
    except ValueError:
        raise click.BadParameter(f"class indices separated by commas, like 0,1,2; got {value!r}",
                                 param_hint="--classes") from None


def _summary(study: Any, *, as_json: bool) -> None:
    """The final summary (printed even with --quiet)."""
    best, spec = study.best, study.spec
    rows = study.trials
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "failed", "interrupted")}
    plots = sorted(str(p) for p in study.dir.plots.glob("*.png"))
    if as_json:
        click.echo(json.dumps({"study": str(study.path), "sampler": spec.sampler, "pruner": spec.pruner,
                               "metric": spec.monitor, "trials": counts, "table": str(study.dir.table),
                               "best": None if best is None else {k: best[k] for k in ("trial", "value", "params",
                                                                                        "run")},
                               "best_run": str(study.path / best["run"]) if best else None, "plots": plots}))
        return
    done = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trial finished"
    click.echo(f"study {study.path}: {len(rows)} trials ({done}), {spec.sampler} sampler, {spec.pruner} pruner.")
    if best is None:
        click.echo("no trial completed yet: run the same command again to continue.")
        return
    values = " ".join(f"{k}={_short(v)}" for k, v in best["params"].items())
    click.echo(f"best: trial {best['trial']}, {spec.monitor} {best['value']:.4f}: {values}")
    run = study.path / best["run"]
    click.echo(f"best run: {run}  (zoo.load({str(study.dir.best_link)!r}), zoo evaluate {study.dir.best_link} "
               "TEST_DIR, zoo register ...)")
    click.echo(f"table: {study.dir.table}" + (f"; plots: {', '.join(Path(p).name for p in plots)} in "
                                              f"{study.dir.plots}" if plots else ""))


def _report(path: Path, *, as_json: bool) -> None:
    from zoo.finetune.search import report_study

    study = report_study(path)
    if as_json:
        click.echo(json.dumps({"study": str(study.path), "trials": study.trials, "best": study.best,
                               "plots": sorted(str(p) for p in study.dir.plots.glob("*.png"))}))
        return
    rows, key = study.trials, study.spec.monitor
    names = [k for k in (rows[0] if rows else {}) if k.startswith("param_")]
    header = ["trial", "state", key, *[n[len("param_"):] for n in names], "epochs", "seconds", "reason"]
    table = [[r["trial"], r["state"], _cell(r[key]), *[_cell(r[n]) for n in names], r["epochs"], r["seconds"],
              r["reason"]] for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *table, strict=False)]
    for line in [header, *table]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=False)).rstrip())
    _summary(study, as_json=False)


def _cell(text: str) -> str:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text or ""
    return text if value.is_integer() and "." not in text else f"{value:.4g}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
