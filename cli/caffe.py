"""``zoo import-caffe``: a user's Caffe model turned into a saved zoo model folder.

Parses, calls ``zoo.caffe.import_caffe``, prints. Imports torch (through ``zoo.caffe``) only inside
the command, so ``zoo --help`` stays fast.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from .catalog import describe_input

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
              help="Folder to write (model.json, model.safetensors, graph.json, entry.json).")
@click.option("--name", help="Entry name arch.tag (default: <weights file stem>.caffe).")
@click.option("--input", "input_shape", metavar="C,H,W", help="Input size, when the files do not say it.")
@click.option("--scale", type=float, help="Caffe's transform scale, applied after the mean (LeNet: 0.00390625; "
              "default: the files' data layer, else 1).")
@click.option("--mean", metavar="B,G,R", help="Mean pixel in BGR order (default: the files' mean_value or mean_file).")
@click.option("--mean-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Per-pixel mean .binaryproto (default: the one the files' data layer names).")
@click.option("--crop", type=click.IntRange(min=1), metavar="RESIZE",
              help="The net saw centre crops of images resized to RESIZE (default: the files' crop_size, with "
              "the mean file's size; without one the whole image is resized to the input size).")
@click.option("--no-crop", is_flag=True, help="Feed the whole image even if the files name a crop_size.")
@click.option("--classifier", help="Caffe layer name of the final classifier (default: the last layer "
              "if it is an InnerProduct).")
@click.option("--labels", "labels_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Text file with one class name per line.")
@click.option("--register", is_flag=True, help="Also copy entry.json into the user registry "
              "(<config>/registry/) so `zoo list --source local` shows it.")
def import_caffe_cmd(files: tuple[Path, ...], out_dir: Path, name: str | None, input_shape: str | None,
                     scale: float | None, mean: str | None, mean_file: Path | None, crop: int | None, no_crop: bool,
                     classifier: str | None, labels_file: Path | None, register: bool) -> None:
    """Convert a Caffe model ([NET.prototxt] WEIGHTS.caffemodel) into a zoo model folder.

    NET.prototxt may be the deploy file or the train_val file; without one, the net stored in the
    weights file is used (data, loss and accuracy layers and training-only branches are dropped).
    Caffe's input conventions (scale, mean, crop) are read from the train_val file's data layer, or
    from the training net a solver snapshot stores, unless the options give them; what was used is
    printed and recorded in the entry. The folder loads with `zoo.load(OUT)` (or `zoo extract OUT
    ...`). To list it with `zoo list --source local`, point ZOO_REGISTRY at OUT/entry.json, or pass
    --register.

    \b
    Examples:
      zoo import-caffe deploy.prototxt net.caffemodel --out mynet
      zoo import-caffe lenet_train_test.prototxt lenet_iter_10000.caffemodel --input 1,28,28 --out lenet
      zoo import-caffe net.caffemodel --out mynet --input 3,224,224 --mean 104,117,123 --crop 256
      ZOO_REGISTRY=mynet/entry.json zoo list --source local
    """
    from zoo.caffe import import_caffe
    from zoo.errors import CaffeError
    from zoo.registry import env
    from zoo.registry.catalog import load_entry_file

    prototxts = [f for f in files if f.suffix.lower() in (".prototxt", ".pbtxt", ".txt")]
    weights = [f for f in files if f not in prototxts]
    if len(weights) != 1 or len(prototxts) > 1:
        raise click.UsageError("give one WEIGHTS.caffemodel and at most one NET.prototxt "
                               f"(got {', '.join(map(str, files))})")
    if crop is not None and no_crop:
        raise click.UsageError("--crop and --no-crop contradict each other; give one")
    shape = _numbers(input_shape, "--input", int)
    if shape is not None and len(shape) != 3:
        raise click.BadParameter("--input must be C,H,W", param_hint="--input")
    labels = None
    if labels_file is not None:
        labels = [line.strip() for line in labels_file.read_text("utf-8").splitlines() if line.strip()]
    try:
        out = import_caffe(weights[0], prototxts[0] if prototxts else None, out_dir=out_dir, name=name,
                           input_shape=tuple(shape) if shape else None, mean=_numbers(mean, "--mean"),
                           mean_file=mean_file, scale=scale, crop=False if no_crop else crop,
                           classifier=classifier, labels=labels)
    except OSError as err:
        raise CaffeError(f"{out_dir}: cannot be written ({err.strerror or err}).") from err
    entry = load_entry_file(out / "entry.json", collection="local")[0]
    p = entry.preprocessing
    click.echo(f"Imported {weights[0].name} as {entry.name} into {out}/ ({entry.head.num_classes} outputs).")
    click.echo(f"  input     : {describe_input(p)}")
    click.echo(f"  normalise : {p.channel_order}, 0-255 minus mean {[round(v, 3) for v in p.mean]}"
               + (" (mean file)" if p.mean_file else "") + f", x{1 / p.std[0]:g}")
    click.echo(f"  {entry.description}")
    if register:
        target = env.config_dir() / "registry" / f"{entry.name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "entry.json", target)
        click.echo(f"Registered: {target}")
    click.echo(f"Load it with zoo.load({str(out)!r}).")
