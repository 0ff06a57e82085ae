"""Export any zoo model for use outside the zoo: an ONNX or TorchScript file checked against the model,
with its preprocessing, labels, licence and card, in one folder (``zoo export``).

Owns: ``export`` (load, trace, check parity, optionally quantize to int8, write the folder atomically)
and ``ExportResult``. The conversion itself is ``zoo.tracing``; the folder's layout and
``preprocessing.json`` are ``zoo.export_dir``; int8 is ``zoo.quantize``. Imports torch, ``zoo.model``,
``zoo.factory`` and, inside functions, onnx and onnxruntime; never ``zoo.finetune`` or ``zoo.cli``.

(The module is not called ``export.py``: ``zoo.export`` is the function, and a submodule of that name
would replace it on the package once imported.)
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ._io import write_json
from .errors import ExportError
from .export_dir import ExportDir, ExportSpec, atomic_folder, refuse_existing, require
from .model import ZooModel
from .tracing import GraphModule, Parity, check_parity, sample_batch, to_onnx, to_torchscript

__all__ = ["export", "ExportResult", "FORMATS", "QUANTIZATIONS"]

FORMATS = ("onnx", "torchscript")
QUANTIZATIONS = ("dynamic", "static")
_PARITY_BATCHES = (1, 3)  # neither is the traced batch (2): the check also proves the batch is dynamic


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What ``export`` wrote and measured."""

    path: Path
    format: str
    model: str
    output: str  # "logits" or "features"
    output_shape: tuple[int | None, ...]
    parity: Parity
    files: dict[str, int] = field(default_factory=dict)  # file name -> bytes
    quantization: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "format": self.format, "model": self.model, "output": self.output,
                "output_shape": list(self.output_shape), "parity": self.parity.to_dict(), "files": self.files,
                "quantization": self.quantization, "accuracy": self.accuracy, "seconds": round(self.seconds, 2)}


def export(model: str | os.PathLike | ZooModel, out: str | os.PathLike, *,
           format: Literal["onnx", "torchscript"] = "onnx",  # noqa: A002 (the CLI's word)
           layer: str | None = None, pool: Literal["avg", "max"] | None = "avg",
           quantize: Literal["dynamic", "static"] | None = None, calibration: str | os.PathLike | None = None,
           evaluate: str | os.PathLike | None = None, force: bool = False, tolerance: float = 1e-4) -> ExportResult:
    """Export ``model`` to a self-describing folder, after checking the file against the model.

    Args:
        model: a registry name, a folder ``zoo.load`` takes (a run, an import, a saved model), or a
            ``ZooModel``.
        out: the folder to write; written whole or not at all.
        format: ``onnx`` (through ``torch.export``; runs in onnxruntime and ``zoo.runtime``) or
            ``torchscript`` (``torch.jit.trace``; runs in torch and libtorch).
        layer: export the features at this layer (the names ``zoo.Extractor`` takes; ``pool`` is the
            pre-logits vector) instead of the classifier's logits. A model without a classifier (a
            feature backbone) exports ``pool`` by default.
        pool: how an inner layer's map becomes one row per image, as in ``zoo.Extractor``.
        quantize: ONNX only: int8 weights through onnxruntime's tools. ``dynamic`` quantizes the
            matrix products (MatMul, Gemm: transformers, MLP heads); ``static`` quantizes every
            supported operator with activation ranges calibrated on ``calibration`` (CNNs).
        calibration: a folder of images like the ones the model will see (``static`` only).
        evaluate: a labelled folder (one sub-folder per class, named as the model's labels): the
            top-1 accuracy of the export, and of the fp32 graph beside it when quantizing.
        force: replace ``out`` if it holds an earlier export.
        tolerance: the largest difference allowed between the file's outputs and the model's,
            relative to the output's scale (fp32).

    Returns:
        An ``ExportResult`` with the parity measured and the files written.

    Raises:
        UnknownModelError, RunError: ``model`` names nothing loadable.
        UnknownLayerError: ``layer`` is not a layer of the model.
        ExportError: ``out`` exists (without ``force``), the exporter cannot handle an operator (the
            layer is named), or the file's outputs differ from the model's beyond ``tolerance``.

    Example:
        >>> zoo.export("resnet50", "exports/resnet50")                      # doctest: +SKIP
        >>> zoo.export("resnet50", "exports/r50-pool", layer="pool")        # doctest: +SKIP
    """
    _check_options(format, pool, quantize, calibration, evaluate, tolerance)
    if format == "onnx":
        require(("onnx", "onnxscript", "onnxruntime"), purpose="zoo export --format onnx", extra="export")
    out = Path(out)
    refuse_existing(out, force=force)  # before the (slow) load, and again when the folder is moved in
    started = time.perf_counter()
    zmodel = _load(model)
    if layer is None and not zmodel.has_classifier:
        layer = "pool"  # a feature backbone (DINOv2, CLIP towers) or a cut without a head: no logits to give
    graph = GraphModule(zmodel, layer, pool).eval()
    example = sample_batch(zmodel, 2)
    with torch.inference_mode():
        output_shape = (None, *graph(example).shape[1:])
    spec = ExportSpec(preprocessing=zmodel.preprocessing, image_mode=zmodel.image_mode, output_kind=graph.kind,
                      output_shape=output_shape, layer=graph.layer, pool=pool if graph.layer else None,
                      mean_image=ExportDir.MEAN_IMAGE if zmodel.mean_image is not None else None)
    name = zmodel.name or str(model)
    with atomic_folder(out, force=force) as tmp:
        folder = ExportDir(tmp)
        _write_support_files(folder, zmodel, spec)
        graph_info, parity = _write_graph(folder, graph, example, spec, name=name, format=format, tolerance=tolerance)
        quant, accuracy = None, None
        if quantize or evaluate:
            from .quantize import evaluate_export

            quant, accuracy = evaluate_export(folder, quantize=quantize, calibration=calibration, evaluate=evaluate)
        manifest = _manifest(zmodel, model, spec, format, graph_info, parity, quant, accuracy, folder)
        write_json(folder.file(ExportDir.MANIFEST), manifest)
        _write_card(folder, zmodel, spec, manifest)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
    return ExportResult(path=out, format=format, model=name, output=graph.kind, output_shape=output_shape,
                        parity=parity, files=files, quantization=quant, accuracy=accuracy,
                        seconds=time.perf_counter() - started)


def _check_options(format: str, pool: str | None, quantize: str | None, calibration: Any,  # noqa: A002
                   evaluate: Any, tolerance: float) -> None:
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if pool not in ("avg", "max", None):
        raise ValueError(f"pool must be 'avg', 'max' or None, got {pool!r}")
    if quantize not in (None, *QUANTIZATIONS):
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)} or None, got {quantize!r}")
    if quantize and format != "onnx":
        raise ExportError("int8 quantization needs --format onnx (it runs through onnxruntime's tools).")
    if quantize == "static" and calibration is None:
        raise ExportError("--quantize static needs --calibrate DIR: a folder of images like the ones the model "
                          "will see (a few hundred are enough).")
    if calibration is not None and quantize != "static":
        raise ExportError("--calibrate is used only with --quantize static.")
    if evaluate is not None and format != "onnx":
        raise ExportError("--eval needs --format onnx (it measures the graph through onnxruntime).")
    if not tolerance > 0:
        raise ValueError(f"tolerance must be positive, got {tolerance}")


def _load(model: Any) -> ZooModel:
    if isinstance(model, ZooModel):
        return model.eval()
    if isinstance(model, (str, os.PathLike)):
        from .factory import load

        return load(model)
    raise TypeError(f"export needs a model name, a model folder or a ZooModel, got {type(model).__name__}")


def _write_support_files(folder: ExportDir, model: ZooModel, spec: ExportSpec) -> None:
    """preprocessing.json, labels.txt, mean_image.npy and LICENSE."""
    write_json(folder.file(ExportDir.PREPROCESSING), spec.to_dict())
    if spec.output_kind == "logits" and model.labels:
        folder.file(ExportDir.LABELS).write_text("".join(f"{label}\n" for label in model.labels), "utf-8")
    if spec.mean_image:
        np.save(folder.file(ExportDir.MEAN_IMAGE), np.asarray(model.mean_image, dtype=np.float32), allow_pickle=False)
    folder.file(ExportDir.LICENSE).write_text(_licence_text(model), "utf-8")


def _write_graph(folder: ExportDir, graph: GraphModule, example: torch.Tensor, spec: ExportSpec, *, name: str,
                 format: str, tolerance: float) -> tuple[dict[str, Any], Parity]:  # noqa: A002
    """The model file, then its parity with ``graph`` on fresh batches; raises when it fails."""
    inputs = [sample_batch(graph.model, n, seed=10 + n) for n in _PARITY_BATCHES]
    if format == "onnx":
        import onnxruntime as ort

        path = folder.file(ExportDir.ONNX)
        info = to_onnx(graph, example, path, name=name, metadata=_metadata(graph.model, spec))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

        def candidate(x: np.ndarray) -> np.ndarray:
            return session.run(None, {"input": x})[0]

        runtime = f"onnxruntime {ort.__version__}"
    else:
        path = folder.file(ExportDir.TORCHSCRIPT)
        extra = {ExportDir.PREPROCESSING: json.dumps(spec.to_dict())}
        if spec.output_kind == "logits" and graph.model.labels:
            extra[ExportDir.LABELS] = "".join(f"{label}\n" for label in graph.model.labels)
        info = to_torchscript(graph, example, path, name=name, extra_files=extra)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 points TorchScript users to torch.export
            loaded = torch.jit.load(str(path)).eval()

        def candidate(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return loaded(torch.from_numpy(x)).numpy()

        runtime = "torch.jit.load"
    parity = check_parity(graph, candidate, inputs, runtime=runtime, tolerance=tolerance,
                          logits=spec.output_kind == "logits")
    if not parity.passed:
        raise ExportError(f"{name}: the exported {format} graph does not match the model: {parity.describe()}; "
                          "nothing was written. Report it with the model's name, or raise --tolerance knowingly.")
    return info, parity


def _metadata(model: ZooModel, spec: ExportSpec) -> dict[str, str]:
    """What the ONNX file carries in ``metadata_props``, so the file alone is enough to use it."""
    entry = model.entry
    meta = {"zoo.format": "zoo-export/1", "zoo.model": model.name, "zoo.base": model.base or "",
            "zoo.preprocessing": json.dumps(spec.to_dict()),
            "zoo.license": getattr(entry, "license", "") or "unknown"}
    if spec.output_kind == "logits" and model.labels:
        meta["zoo.labels"] = json.dumps(list(model.labels))
    if getattr(entry, "origin", ""):
        meta["zoo.origin"] = entry.origin
    return meta


def _manifest(model: ZooModel, source: Any, spec: ExportSpec, format: str, graph_info: dict[str, Any],  # noqa: A002
              parity: Parity, quant: dict | None, accuracy: dict | None, folder: ExportDir) -> dict[str, Any]:
    import zoo

    file = folder.file(ExportDir.ONNX if format == "onnx" else ExportDir.TORCHSCRIPT)
    versions = {"zoo": zoo.__version__, "torch": torch.__version__}
    if format == "onnx":
        import onnx
        import onnxruntime

        versions.update(onnx=onnx.__version__, onnxruntime=onnxruntime.__version__)
    return {
        "format": "zoo-export", "version": 1, "model": model.name, "base": model.base,
        "source": source if isinstance(source, str) else os.fspath(source) if isinstance(source, os.PathLike) else "",
        "license": getattr(model.entry, "license", "unknown"),
        "file": file.name, "sha256": _sha256(file), "bytes": file.stat().st_size,
        "graph": {"format": format, "exporter": "torch.export + torch.onnx.export" if format == "onnx"
                  else "torch.jit.trace", **graph_info},
        "output": {"kind": spec.output_kind, "shape": list(spec.output_shape), "layer": spec.layer, "pool": spec.pool},
        "parity": parity.to_dict(), "quantization": quant, "accuracy": accuracy,
        "versions": versions, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _licence_text(model: ZooModel) -> str:
    entry = model.entry
    lines = [f"Weights: {model.base or model.name}",
             f"Licence: {getattr(entry, 'license', '') or 'unknown'}"]
    for label, attr in (("Note", "license_note"), ("Origin", "origin"), ("Paper", "paper"), ("Citation", "citation")):
        value = getattr(entry, attr, "")
        if value:
            lines.append(f"{label}: {value}")
    lines += ["", f"The exported file{' (fine-tuned from these weights)' if model.name != model.base else ''} is "
              "a derivative of these weights and is under their licence: check that it allows your use."]
    return "\n".join(lines) + "\n"


# Hugging Face's licence ids for the SPDX ids the registry uses; anything else is "other" + its name.
_HF_LICENSES = {"mit", "apache-2.0", "bsd-2-clause", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc-by-nc-4.0",
                "cc0-1.0", "gpl-3.0", "lgpl-3.0", "openrail"}


def _write_card(folder: ExportDir, model: ZooModel, spec: ExportSpec, manifest: dict[str, Any]) -> None:
    """README.md through huggingface_hub's ModelCard (its metadata is validated like a Hub card's)."""
    from huggingface_hub import ModelCard, ModelCardData

    from .export_dir import describe_steps

    licence = str(manifest["license"] or "unknown")
    hf = licence.lower()
    data = ModelCardData(license=hf if hf in _HF_LICENSES else "other",
                         license_name=None if hf in _HF_LICENSES else licence.lower(),
                         library_name="onnx" if manifest["graph"]["format"] == "onnx" else "pytorch",
                         tags=["zoo", manifest["graph"]["format"]],
                         pipeline_tag="image-classification" if spec.output_kind == "logits"
                         else "image-feature-extraction")
    what = (f"the classifier ({spec.output_shape[-1]} classes)" if spec.output_kind == "logits"
            else f"features at layer `{spec.layer}` ({spec.pool or 'not'} pooled), shape {list(spec.output_shape)}")
    use = ("from zoo.runtime import Classifier\nprint(Classifier(\"DIR\").predict([\"photo.jpg\"], top_k=5))"
           if spec.output_kind == "logits" else
           "from zoo.runtime import Features\nrows = Features(\"DIR\")([\"a.jpg\", \"b.png\"])")
    p = manifest["parity"]
    base = f" (fine-tuned from `{model.base}`)" if model.base and model.base != model.name else ""
    body = [f"# {model.name}", "", f"`{model.name}`{base} exported by the zoo as "
            f"{manifest['graph']['format']}: {what}.", "",
            "## Use", "", "```bash", 'pip install "zoo[runtime]"   # numpy, pillow, onnxruntime: no torch', "```",
            "", "```python", use, "```", "",
            "Without the zoo: feed a float32 array (N, C, H, W) named `input`, made as below; "
            "`preprocessing.json` holds the same numbers.", "",
            "## Preprocessing", "", *[f"{i}. {step}" for i, step in enumerate(describe_steps(
                spec.preprocessing, spec.image_mode, spec.mean_image), 1)], "",
            "## Parity", "", f"Checked at export against the torch model ({p['runtime']}, batches "
            f"{p['batches']}): max abs diff {p['max_abs']:.2e}, {p['max_rel']:.2e} of the output's scale "
            f"(tolerance {p['tolerance']:.0e}).", ""]
    if manifest.get("quantization"):
        q = manifest["quantization"]
        body += ["## int8", "", f"{q['mode']} quantization: {q['summary']}", ""]
    if manifest.get("accuracy"):
        body += ["## Accuracy", "", manifest["accuracy"]["summary"], ""]
    body += ["## Licence", "", f"{licence}: see `LICENSE`. {getattr(model.entry, 'license_note', '')}".rstrip(), "",
             "## Provenance", "", f"sha256 `{manifest['sha256']}`; " + ", ".join(
                 f"{k} {v}" for k, v in manifest["versions"].items()) + f"; {manifest['created']}.", ""]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))
    folder.file(ExportDir.CARD).write_text(str(card), "utf-8")
