"""``zoo import-caffe``: a user's Caffe model turned into a local zoo entry folder.

Parses, calls ``zoo.caffe.import_caffe``, prints. Imports torch (through ``zoo.caffe``) only inside
the command, so ``zoo --help`` stays fast.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

__all__ = ["import_caffe_cmd"]


def _numbers(text: str | None, what: str, kind=float) -> list | None:
    if text is None:
        return None
    try:
        return [kind(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise click.BadParameter(f"{what} must be comma-separated numbers, got {text!r}") from None


@click.command("import-caffe")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write (model.safetensors, graph.json, entry.json).")
@click.option("--name", help="Entry name arch.tag (default: <weights file stem>.caffe).")
@click.option("--input", "input_shape", metavar="C,H,W", help="Input size, when the files do not say it.")
@click.option("--mean", metavar="B,G,R", help="Mean pixel in BGR order (default: the data layer's mean_value).")
@click.option("--mean-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Per-pixel mean .binaryproto.")
@click.option("--classifier", help="Caffe layer name of the final classifier (default: the last layer "
              "if it is an InnerProduct).")
@click.option("--labels", "labels_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Text file with one class name per line.")
@click.option("--register", is_flag=True, help="Also copy entry.json into the user registry "
              "(<config>/registry/) so `zoo list --source local` shows it.")
def import_caffe_cmd(files: tuple[Path, ...], out_dir: Path, name: str | None, input_shape: str | None,
                     mean: str | None, mean_file: Path | None, classifier: str | None, labels_file: Path | None,
                     register: bool) -> None:
    """Convert a Caffe model ([DEPLOY.prototxt] WEIGHTS.caffemodel) into a zoo model folder.

    Without a deploy prototxt the net stored in the weights file is used: data, loss and accuracy
    layers and training-only branches are dropped. The folder loads with `zoo.load(OUT)` (or
    `zoo extract OUT ...`). To list it with `zoo list --source local`, point ZOO_REGISTRY at
    OUT/entry.json, or pass --register to copy it into the user registry folder.

    \b
    Examples:
      zoo import-caffe deploy.prototxt net.caffemodel --out mynet
      zoo import-caffe net.caffemodel --out mynet --input 3,224,224 --mean 104,117,123
      ZOO_REGISTRY=mynet/entry.json zoo list --source local
    """
    from zoo.caffe import import_caffe
    from zoo.errors import CaffeError
    from zoo.registry import env

    prototxts = [f for f in files if f.suffix.lower() in (".prototxt", ".pbtxt", ".txt")]
    weights = [f for f in files if f not in prototxts]
    if len(weights) != 1 or len(prototxts) > 1:
        raise click.UsageError("give one WEIGHTS.caffemodel and at most one DEPLOY.prototxt "
                               f"(got {', '.join(map(str, files))})")
    shape = _numbers(input_shape, "--input", int)
    if shape is not None and len(shape) != 3:
        raise click.BadParameter("--input must be C,H,W", param_hint="--input")
    labels = None
    if labels_file is not None:
        labels = [line.strip() for line in labels_file.read_text("utf-8").splitlines() if line.strip()]
    try:
        out = import_caffe(weights[0], prototxts[0] if prototxts else None, out_dir=out_dir, name=name,
                           input_shape=tuple(shape) if shape else None, mean=_numbers(mean, "--mean"),
                           mean_file=mean_file, classifier=classifier, labels=labels)
    except OSError as err:
        raise CaffeError(f"{out_dir}: cannot be written ({err.strerror or err}).") from err
    import json

    entry = json.loads((out / "entry.json").read_text("utf-8"))["entries"][0]
    click.echo(f"Imported {weights[0].name} as {entry['name']} into {out}/ "
               f"(input {entry['preprocessing']['input_size']}, {entry['head']['num_classes']} outputs).")
    if "No mean was known" in entry.get("description", ""):
        click.echo("Note: no mean pixel was found in the files; the mean is 0. Re-run with --mean or --mean-file.",
                   err=True)
    if register:
        target = env.config_dir() / "registry" / f"{entry['name']}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "entry.json", target)
        click.echo(f"Registered: {target}")
    click.echo(f"Load it with zoo.load({str(out)!r}).")
