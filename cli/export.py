"""``zoo export``: a model as an ONNX or TorchScript file, checked against the model, for applications.

Thin: parse, call ``zoo.exporter.export``, print. torch is imported inside the command, so
``zoo --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

__all__ = ["export_cmd"]


@click.command("export")
@click.argument("model")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="The folder to write (model file, preprocessing.json, labels.txt, LICENSE, README.md).")
@click.option("--format", "fmt", type=click.Choice(["onnx", "torchscript"]), default="onnx", show_default=True,
              help="onnx runs in onnxruntime and zoo.runtime (no torch); torchscript in torch and libtorch.")
@click.option("--layer", help="Export the features at this layer (pool = pre-logits vector; the names "
                              "`zoo extract --layer` takes) instead of the classifier.")
@click.option("--pool", type=click.Choice(["avg", "max", "none"]), default="avg", show_default=True,
              help="How an inner layer's map becomes one row per image, as in `zoo extract`.")
@click.option("--quantize", type=click.Choice(["dynamic", "static"]),
              help="int8 through onnxruntime: dynamic quantizes matrix products (transformers, MLP heads); "
                   "static quantizes convolutions too, calibrated on --calibrate (CNNs).")
@click.option("--calibrate", type=click.Path(path_type=Path, file_okay=False),
              help="Images like the ones the model will see, for --quantize static (a few hundred).")
@click.option("--eval", "evaluate", type=click.Path(path_type=Path, file_okay=False),
              help="A labelled folder (one sub-folder per class, named as the labels): print top-1 "
                   "(fp32 and int8 with --quantize).")
@click.option("--tolerance", type=click.FloatRange(0, min_open=True), default=1e-4, show_default=True,
              help="Largest difference allowed between the file and the model, relative to the output's scale.")
@click.option("--force", is_flag=True, help="Replace --out if it holds an earlier export.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (nothing else on stdout).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the folder written.")
def export_cmd(model: str, out: Path, fmt: str, layer: str | None, pool: str, quantize: str | None,
               calibrate: Path | None, evaluate: Path | None, tolerance: float, force: bool, as_json: bool,
               quiet: bool) -> None:
    """Export MODEL (a registry name, or a folder from `zoo finetune`, `zoo train`, `zoo import-caffe`)
    for use in an application, and check the file against the model.

    The exported graph takes a float32 batch (N, C, H, W) of any size N. It is run on sample inputs
    and compared with the torch model; the command fails, writing nothing, if they differ by more
    than --tolerance. The folder appears whole or not at all.

    \b
    Examples:
      zoo export resnet50 --out exports/resnet50
      zoo export runs/pets --out exports/pets --quantize static --calibrate photos/ --eval labelled/
      zoo export resnet50 --layer pool --out exports/resnet50-features
      zoo export lenet --format torchscript --out exports/lenet-ts

    \b
    In the app (pip install "zoo[runtime]": numpy, pillow, onnxruntime):
      from zoo.runtime import Classifier
      Classifier("exports/resnet50").predict(["cat.jpg"], top_k=5)
    """
    from zoo.exporter import export

    result = export(model, out, format=fmt, layer=layer, pool=None if pool == "none" else pool, quantize=quantize,
                    calibration=calibrate, evaluate=evaluate, force=force, tolerance=tolerance)
    if as_json:
        click.echo(json.dumps(result.to_dict()))
        return
    if not quiet:
        what = (f"{result.output_shape[-1]} logits" if result.output == "logits"
                else f"features {list(result.output_shape)} at layer {layer}")
        click.echo(f"{result.model} -> {fmt}, {what}, any batch size.")
        click.echo(result.parity.describe())
        if result.quantization:
            click.echo(f"int8 ({result.quantization['mode']}): {result.quantization['summary']}")
        if result.accuracy:
            click.echo(result.accuracy["summary"])
    size = sum(result.files.values())
    click.echo(f"Wrote {out} ({', '.join(result.files)}; {size / 1e6:.1f} MB) in {result.seconds:.1f} s.")
