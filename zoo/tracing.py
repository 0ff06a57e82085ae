"""A zoo model as a graph file: ONNX through ``torch.export`` and ``torch.onnx.export``, TorchScript
through ``torch.jit.trace``, and the parity check that compares the file with the model.

Owns: ``GraphModule`` (a ``ZooModel`` with one output: its logits, or the features at a named layer
pooled the way the ``Extractor`` pools them; ``LayersModule``, the raw outputs of several layers, for
a runner), ``to_onnx``, ``to_torchscript``, ``sample_batch`` and
``check_parity``. Serialisation is torch's and onnx's own; this module only chooses their options and
turns their failures into one-line errors that name the model and the layer. Imports torch and, inside
the functions that need them, onnx and onnxruntime; never ``zoo.finetune`` or ``zoo.cli``.

Why ``torch.export`` (the dynamo-based exporter) and not the TorchScript-based one, measured with
torch 2.14 on the zoo's models: both export torchvision and timm classifiers with equal parity, but the
TorchScript-based exporter records shape arithmetic as graph operations and gets Python's floor
division wrong for negative numbers (ONNX ``Div`` truncates), which breaks Caffe's ceil-mode pooling
sizes; ``torch.export`` keeps the fixed height and width as constants. It is also the exporter torch
develops (the other warns that it is deprecated).
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ExportError
from .model import LOGITS, POOL, ZooModel

__all__ = ["GraphModule", "LayersModule", "Parity", "to_onnx", "to_torchscript", "sample_batch", "check_parity",
           "pool_rows", "ONNX_LIMIT"]

# Protobuf cannot hold a single file over 2 GiB: bigger models keep their weights in model.onnx.data.
ONNX_LIMIT = 2_000_000_000
_EXAMPLE_BATCH = 2  # the batch the graph is traced at; parity runs other sizes to prove the batch is free


def pool_rows(t: torch.Tensor, pool: str | None) -> torch.Tensor:
    """One row per image, as the ``Extractor`` makes it: ``avg``/``max`` over the positions of a map
    (N, C, H, W) or over the tokens of a transformer (N, T, C); vectors pass unchanged."""
    if pool is None or t.ndim <= 2:
        return t
    dims = (1,) if t.ndim == 3 else tuple(range(2, t.ndim))
    return t.mean(dim=dims) if pool == "avg" else t.amax(dim=dims)


class GraphModule(nn.Module):
    """``model`` with the one output an export holds: logits (``layer=None`` or ``"logits"``), the
    pooled pre-logits vector (``"pool"``), or the output of an inner layer pooled with ``pool``.

    Raises:
        UnknownLayerError: ``layer`` is not one of ``model.layer_names()``.
    """

    def __init__(self, model: ZooModel, layer: str | None = None, pool: str | None = "avg"):
        super().__init__()
        self.model = model
        self.layer = None if layer in (None, LOGITS) else layer
        if self.layer is not None:
            model.resolve_layer(self.layer)
        self.pool = pool

    @property
    def kind(self) -> str:
        return "logits" if self.layer is None else "features"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer is None:
            return self.model(x)
        if self.layer == POOL:
            return self.model.forward_features(x)
        return pool_rows(self.model.forward_layers(x, [self.layer])[self.layer], self.pool)


class LayersModule(nn.Module):
    """``model`` returning the raw outputs of several named layers, in order, as ``forward_layers``
    gives them (a runner's graph: the caller pools)."""

    def __init__(self, model: ZooModel, layers: Sequence[str]):
        super().__init__()
        self.model = model
        self.layers = list(layers)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = self.model.forward_layers(x, self.layers)
        return tuple(outs[name] for name in self.layers)


def sample_batch(model: ZooModel, n: int, *, seed: int = 0) -> torch.Tensor:
    """``n`` preprocessed inputs for ``model``: random-noise pictures larger than the input, put through
    the weights' own transform, so the values span the range real inputs have (0-255 minus a mean for
    Caffe, about +-2 for ImageNet statistics)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    _c, h, w = model.input_size
    transform = model.transforms
    images = [Image.fromarray(rng.integers(0, 256, (h + 17, w + 31, 3), dtype=np.uint8)) for _ in range(n)]
    return torch.stack([transform(im) for im in images])


# ----------------------------------------------------------------------------------------------
# ONNX


def to_onnx(module: nn.Module, example: torch.Tensor, path: Path, *, name: str, metadata: dict[str, str],
            output_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Write ``module`` as ONNX at ``path`` with a dynamic batch dimension, ``metadata`` in its
    ``metadata_props``, and check the file with ``onnx.checker`` (full check, shapes inferred).
    The outputs are named ``output_names`` (default: the ``GraphModule``'s kind, ``logits`` or
    ``features``).

    Returns:
        ``{"opset": int, "external_data": bool}``.

    Raises:
        ExportError: naming the model and, when it can be told, the layer whose operator the exporter
            cannot translate.
    """
    import onnx

    batch = torch.export.Dim("batch", min=1)
    with _quiet():
        try:
            program = torch.export.export(module, (example,), dynamic_shapes=({0: batch},), strict=False)
        except Exception as err:  # noqa: BLE001 (any failure to trace is reported, with its cause)
            raise ExportError(f"{name}: torch.export cannot trace this model ({_first_line(err)}); "
                              "try --format torchscript.") from err
        try:
            names = list(output_names or [module.kind])
            onnx_program = torch.onnx.export(program, input_names=["input"], output_names=names,
                                             optimize=True, verbose=False)
        except Exception as err:  # noqa: BLE001
            raise _conversion_error(err, program, module, name) from err
    onnx_program.model.metadata_props.update(metadata)
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    external = size > ONNX_LIMIT
    onnx_program.save(str(path), external_data=external)
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise ExportError(f"{name}: the exported ONNX graph is not valid ({_first_line(err)}).") from err
    opset = next((v for k, v in onnx_program.model.opset_imports.items() if k == ""), None)
    return {"opset": opset, "external_data": external}


def _conversion_error(err: Exception, program: Any, module: nn.Module, name: str) -> ExportError:
    """The exporter's failure as one line: the operator and the zoo layer it sits in."""
    text = "\n".join(str(e) for e in _chain(err))
    found = re.search(r"translating node %(\S+)", text)
    node = next((n for n in program.graph.nodes if found and n.name == found.group(1)), None)
    op = str(node.target) if node is not None else "an operator"
    where = ""
    if node is not None and node.meta.get("nn_module_stack"):
        path, kind = list(node.meta["nn_module_stack"].values())[-1]
        layer = _layer_name(path)
        where = f" in layer {layer!r} ({kind.rsplit('.', 1)[-1]})"
    summary = re.search(r"<class '[^']+'>: ([^\n]+)", text)
    reason = summary.group(1) if summary else _first_line(err)
    return ExportError(f"{name}: the ONNX exporter cannot translate {op}{where}: {reason}. "
                       "Export it with --format torchscript, or replace that layer.")


def _layer_name(path: str) -> str:
    """A module path inside the exported wrapper (``model.body.layer4.0``) as the zoo names layers."""
    for prefix in ("model.body.body.", "model.body.", "model.head", "model."):
        if path.startswith(prefix):
            rest = path[len(prefix):]
            return "head" + rest if prefix == "model.head" else rest
    return path


def _chain(err: BaseException):
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


@contextlib.contextmanager
def _quiet():
    """The exporters print progress and warn about their own internals; a command's output stays its own."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


# ----------------------------------------------------------------------------------------------
# TorchScript


def to_torchscript(module: GraphModule, example: torch.Tensor, path: Path, *, name: str,
                   extra_files: dict[str, str]) -> dict[str, Any]:
    """Trace ``module`` with ``torch.jit.trace`` and save it at ``path`` with ``extra_files`` (the
    preprocessing and labels) inside the archive. Not frozen: a frozen graph is tied to the CPU.

    Raises:
        ExportError: the model cannot be traced.
    """
    with _quiet():
        try:
            traced = torch.jit.trace(module, example, check_trace=False)
        except Exception as err:  # noqa: BLE001
            raise ExportError(f"{name}: torch.jit.trace cannot trace this model ({_first_line(err)}); "
                              "try --format onnx.") from err
        torch.jit.save(traced, str(path), _extra_files=extra_files)
    return {}


# ----------------------------------------------------------------------------------------------
# Parity


@dataclass(frozen=True, slots=True)
class Parity:
    """How far an exported graph's outputs are from the model's on the same inputs."""

    runtime: str  # "onnxruntime" or "torchscript"
    batches: tuple[int, ...]
    max_abs: float
    max_rel: float  # max_abs over the reference output's scale (its largest magnitude)
    scale: float
    tolerance: float
    top1_agreement: float | None = None  # for logits: the share of inputs with the same argmax

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.max_rel)) and self.max_rel <= self.tolerance

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def describe(self) -> str:
        agree = f", same top-1 on {self.top1_agreement:.0%}" if self.top1_agreement is not None else ""
        return (f"parity ({self.runtime} vs torch, batches {'+'.join(map(str, self.batches))}): max abs diff "
                f"{self.max_abs:.2e}, {self.max_rel:.2e} of the output's scale {self.scale:.3g} "
                f"(tolerance {self.tolerance:.0e}){agree}: {'ok' if self.passed else 'FAILED'}")


def check_parity(reference: Callable[[torch.Tensor], Any], candidate: Callable[[np.ndarray], Any],
                 inputs: Sequence[torch.Tensor], *, runtime: str, tolerance: float, logits: bool) -> Parity:
    """Run ``reference`` (the torch model) and ``candidate`` (the exported graph) on each batch.

    The difference is measured relative to the output's scale (its largest magnitude), so a model whose
    logits are in the thousands and one whose features are below 1 meet the same bar. With several
    outputs (a tuple from ``reference``, a list from ``candidate``) each is held to its own scale, and
    the worst one is reported.
    """
    worst, worst_abs, worst_scale, agree, total = 0.0, 0.0, 0.0, 0, 0
    scales: dict[int, float] = {}
    diffs: dict[int, float] = {}
    for x in inputs:
        with torch.inference_mode():
            refs = reference(x)
        refs = [refs] if isinstance(refs, torch.Tensor) else list(refs)
        gots = candidate(x.numpy())
        gots = [gots] if isinstance(gots, np.ndarray) else list(gots)
        for k, (ref_t, got) in enumerate(zip(refs, gots, strict=True)):
            ref, got = ref_t.float().numpy(), np.asarray(got, dtype=np.float32)
            if got.shape != ref.shape:
                raise ExportError(f"the exported graph returns shape {got.shape} for a batch of {len(x)}, the "
                                  f"model {ref.shape}: the export is broken; report it with the model's name.")
            diffs[k] = max(diffs.get(k, 0.0), float(np.abs(got - ref).max()) if got.size else 0.0)
            scales[k] = max(scales.get(k, 0.0), float(np.abs(ref).max()) if ref.size else 0.0)
            if logits and k == 0:
                agree += int((got.argmax(1) == ref.argmax(1)).sum())
                total += len(x)
    for k, diff in diffs.items():
        rel = diff / scales[k] if scales[k] > 0 else (0.0 if diff == 0 else float("inf"))
        if rel >= worst:
            worst, worst_abs, worst_scale = rel, diff, scales[k]
    return Parity(runtime=runtime, batches=tuple(len(x) for x in inputs), max_abs=worst_abs, max_rel=worst,
                  scale=worst_scale, tolerance=tolerance, top1_agreement=agree / total if total else None)
