"""``zoo demo``: the whole path in a couple of minutes, offline, on what ships in the package.

A tour that strings library calls together (nothing here is logic a Python user would need):
the catalogue, the embedded default model fetched through the real cache and checksum path,
fine-tuning on the bundled image folder, evaluation, prediction, and the run's card and plots.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click

from ._output import Output

__all__ = ["demo_cmd", "DEFAULT_MODEL"]

DEFAULT_MODEL = "lenet.fmnist5"
DEMO_DATA = ("assets", "demo", "fashion5")


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("runs/demo"), show_default=True,
              help="The run folder (numbered if it exists).")
@click.option("--strategy", type=click.Choice(["linear", "partial", "full"]), default="full", show_default=True)
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs [default: chosen by the run].")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars or per-epoch lines (the tour's lines stay).")
def demo_cmd(out: Path, strategy: str, epochs: int | None, quiet: bool) -> None:
    """Tour the zoo offline: list, fetch and verify the embedded model, fine-tune it on the bundled
    image folder, evaluate, predict, and write the run's card and plots.

    The embedded model is a LeNet-style convnet the zoo trained from scratch on five Fashion-MNIST
    classes (`zoo card lenet.fmnist5`); the bundled folder holds images of the five other classes.

    \b
    Example:
      zoo demo --out runs/demo
    """
    from importlib import resources

    import zoo
    from zoo.finetune import fit
    from zoo.finetune.fit import describe_choices
    from zoo.finetune.train_config import monitor_text
    from zoo.finetune.rundir import RunDir
    from zoo.images import find_images
    from zoo.registry import catalog

    echo = click.echo
    show = Output(quiet=quiet)
    entries = list(catalog())
    counts = Counter(e.source for e in entries)
    echo(f"1/5 The zoo: {len(entries)} curated entries ("
         + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + "). `zoo list` shows them.")

    entry = catalog().get(DEFAULT_MODEL)
    files = zoo.download(entry, progress=show.bars)
    spec = entry.file("weights")
    echo(f"2/5 Embedded default {entry.name}: {spec.checksum.algorithm} verified, cached at {files['weights']}")
    model = zoo.load(entry.name)
    params = sum(p.numel() for p in model.parameters())
    echo(f"    {params:,} parameters, input {'x'.join(map(str, entry.preprocessing.input_size))}, "
         f"trained on: {', '.join(model.labels or [])}")

    data = resources.files("zoo").joinpath(*DEMO_DATA)
    with resources.as_file(data) as data_dir:
        out = RunDir.fresh(out.name, out.parent).path  # a demo never overwrites a run
        echo(f"3/5 Fine-tuning ({strategy}) on {data_dir} -> {out}")
        # No settings of its own: the demo shows what the defaults do (they are chosen from the data and
        # the model, and printed).
        run = fit(entry.name, data_dir, out=out, strategy=strategy, progress=show.bars, callbacks=show.epoch_lines(),
                  command=f"zoo demo --out {out} --strategy {strategy}" + (f" --epochs {epochs}" if epochs else ""),
                  on_setup=lambda s: [show.echo(f"    {line}") for line in describe_choices(s)],
                  **({"epochs": epochs} if epochs else {}))
        summary = run.summary
        val = summary.get("val", {})
        kept = summary.get("weights_epoch")
        echo(f"    validation accuracy {val.get('accuracy', float('nan')):.1%} with the weights of epoch "
             f"{kept} of {len(run.history)} (the best {monitor_text(run.config.train.monitor)}"
             + (": the head alone, the body as pretrained)" if kept == 0 else ")"))

        test_dir = data_dir / "test"
        if test_dir.is_dir():
            report = run.evaluate(test_dir)
            echo(f"4/5 Held-out test folder: accuracy {report['accuracy']:.1%} on {report['n']} images")
            for name, row in report["per_class"].items():
                echo(f"    {name:<12} precision {row['precision']:.2f}  recall {row['recall']:.2f}")
            images = find_images(test_dir)
            samples = images[:: max(1, len(images) // 4)][:4]
        else:
            echo(f"4/5 Evaluation: see the validation figures above (no test/ folder in {data_dir})")
            samples = find_images(data_dir)[:4]
        echo("5/5 Predictions (top 2):")
        for result in run.predict(samples, top_k=2):
            top = ", ".join(f"{t['label']} {t['probability']:.0%}" for t in result.get("top", []))
            echo(f"    {Path(result['image']).parent.name}/{Path(result['image']).name}: {top or result.get('error')}")

    files = [run.dir.card, run.dir.history, run.dir.split, *run.dir.plots()]
    echo(f"\nThe run: {run.path}/ (card {', '.join(p.name for p in files)})")
    echo(f"Load it in one line: zoo.load({str(run.path)!r})")
