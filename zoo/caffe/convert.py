"""Caffe files in, ``ZooModel`` out: conversion, the converted cache, and registry entries.

Owns: ``convert`` (read a ``.caffemodel``, optionally a deploy ``.prototxt``, plan the graph),
``materialize`` (copy each weight blob once from the memory-mapped file into its tensor, handing the
file's pages back as it goes), the streaming safetensors writer and the converted cache's files,
``model_from_plan`` (the graph split into ``body`` = everything up to the classifier's input,
flattened, and ``head`` = the classifier), ``load_entry``/``build_entry`` (registry entries: fetched,
converted once into ``<weights dir>/converted/``). A user's import is ``importer``'s.

A net without an InnerProduct classifier (SqueezeNet, NIN: a 1x1 convolution, ReLU and global
average pooling end the net) keeps the whole graph in ``body``: its ``pool`` output is the pooled class
scores, exactly what the original computes, and ``head`` is ``nn.Identity``. Splitting at the last
convolution instead would need ReLU and pooling inside the head, so ``pool`` would no longer be the
pooled vector the ZooModel contract promises. To fine-tune such a net, ``cut`` it at a feature layer
(e.g. ``fire9/concat`` or ``drop9``) and reset the classifier.

Imports torch, numpy, safetensors, filelock, ``zoo.model``, ``zoo.fetch``, ``zoo.errors``, ``zoo.registry``;
never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import json
import math
import mmap
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from zoo.registry import Entry, labels_for

from .._io import atomic_write, file_digest, write_json
from ..errors import CaffeError, WeightsError
from ..fetch import fetch_file
from ..model import LOGITS, BuildSpec, ZooModel
from .graph import CaffeGraph, GraphPlan, Op, build_module, plan_graph
from .proto import read_binaryproto, read_caffemodel
from .prototxt import read_prototxt

__all__ = ["convert", "materialize", "save_converted", "load_converted", "read_graph", "model_from_plan",
           "head_op", "out_features", "load_entry", "build_entry", "CONVERTER_VERSION", "GRAPH_FILE",
           "WEIGHTS_FILE", "ENTRY_FILE", "MEAN_FILE"]

CONVERTER_VERSION = 1  # bump when a change makes old converted caches wrong
GRAPH_FILE, WEIGHTS_FILE, ENTRY_FILE, MEAN_FILE = "graph.json", "model.safetensors", "entry.json", "mean.binaryproto"
_PAGE = mmap.PAGESIZE


def convert(weights_path: str | Path, deploy_path: str | Path | None = None, *,
            input_shape: tuple[int, ...] | None = None, classifier: str | None = None) -> GraphPlan:
    """Read Caffe files and plan the converted graph (weights stay views of the file).

    Args:
        weights_path: the ``.caffemodel``.
        deploy_path: a deploy ``.prototxt``; default: the net saved inside the weights file.
        input_shape: (C, H, W); default: what the files say.
        classifier: Caffe layer name of the final classifier; default: the last layer.

    Raises:
        CaffeError: malformed files, unsupported layers, weights that do not fit the prototxt.
    """
    weights = read_caffemodel(weights_path)
    structure = read_prototxt(deploy_path) if deploy_path is not None else weights
    return plan_graph(structure, weights=weights, input_shape=input_shape, classifier=classifier)


def _mapping_of(array: np.ndarray) -> mmap.mmap | None:
    base = array
    while isinstance(base, np.ndarray) and base.base is not None:
        base = base.base
    if isinstance(base, memoryview):  # np.frombuffer(mmap) keeps a memoryview of the mapping
        base = base.obj
    return base if isinstance(base, mmap.mmap) else None


def _release(array: np.ndarray, mapping: mmap.mmap) -> None:
    """Tell the kernel the file pages behind a copied piece are no longer needed, so the resident size
    stays near one copy of the weights (the mapping is read-only: pages come back if touched)."""
    if not hasattr(mmap, "MADV_DONTNEED"):
        return
    origin = np.frombuffer(mapping, dtype=np.uint8, count=1)
    start = array.__array_interface__["data"][0] - origin.__array_interface__["data"][0]
    del origin
    lo = start - start % _PAGE
    hi = min(len(mapping), start + array.nbytes)
    if hi > lo:
        try:
            mapping.madvise(mmap.MADV_DONTNEED, lo, hi - lo)
        except (OSError, ValueError):
            pass  # advice only


_CHUNK = 16 << 20  # values per copy step: 64 MiB of float32


def materialize(plan: GraphPlan) -> dict[str, torch.Tensor]:
    """Copy every weight of ``plan`` into a float32 tensor: one copy per blob, no intermediate.

    Blobs that are views of a memory-mapped file are copied in 64 MiB steps, each step's file pages
    handed back to the kernel, so converting a VGG-sized file needs about one copy of the weights.
    """
    state: dict[str, torch.Tensor] = {}
    for key, array in plan.tensors.items():
        if array.dtype == np.int64:
            state[key] = torch.from_numpy(np.array(array))
            continue
        out = torch.empty(array.shape, dtype=torch.float32)
        target = out.numpy()
        mapping = _mapping_of(array)
        if mapping is not None and array.flags.c_contiguous and array.size > _CHUNK:
            flat_in, flat_out = array.reshape(-1), target.reshape(-1)
            for i in range(0, array.size, _CHUNK):
                flat_out[i:i + _CHUNK] = flat_in[i:i + _CHUNK]
                _release(flat_in[i:i + _CHUNK], mapping)
        else:
            target[...] = array  # the one copy (and the float64 -> float32 cast for double_data)
            if mapping is not None and array.flags.c_contiguous:
                _release(array, mapping)
        state[key] = out
    plan.tensors = {}
    return state


# -- safetensors, streamed -----------------------------------------------------------------------
_DTYPES = {torch.float32: "F32", torch.int64: "I64"}


def _write_safetensors(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for key, t in state.items():
        n = t.numel() * t.element_size()
        header[key] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with atomic_write(path) as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for t in state.values():
            # Written straight from the tensor's memory (little-endian on every supported platform).
            fh.write(memoryview(t.contiguous().numpy()).cast("B"))


def save_converted(plan: GraphPlan, state: dict[str, torch.Tensor], directory: str | Path,
                   key: dict[str, Any] | None = None) -> None:
    """Write ``model.safetensors`` then ``graph.json`` (last: its presence marks a finished conversion)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _write_safetensors(state, directory / WEIGHTS_FILE, {"format": "zoo-caffe", "source": Path(plan.source).name})
    data = plan.to_dict()
    data["key"] = key or {}
    write_json(directory / GRAPH_FILE, data)


def load_converted(directory: str | Path) -> tuple[GraphPlan, dict[str, torch.Tensor], dict[str, Any]]:
    """Read a converted folder: the plan, the weights and the cache key it was made with.

    Raises:
        CaffeError: a missing or damaged file (naming it).
    """
    directory = Path(directory)
    plan, key = read_graph(directory)
    return plan, _read_weights(directory), key


def read_graph(directory: Path) -> tuple[GraphPlan, dict[str, Any]]:
    """``graph.json`` alone: the plan and its cache key (cheap, so a stale cache is found before the
    weights are read)."""
    try:
        data = json.loads((directory / GRAPH_FILE).read_text("utf-8"))
        plan = GraphPlan.from_dict(data)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CaffeError(f"{directory / GRAPH_FILE}: cannot be read ({err}); convert the model again "
                         "(delete the folder, or re-run zoo import-caffe).") from err
    return plan, data.get("key", {})


def _read_weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(directory / WEIGHTS_FILE))
    except (OSError, SafetensorError) as err:
        raise CaffeError(f"{directory / WEIGHTS_FILE}: cannot be read ({err}); convert the model again.") from err


# -- ZooModel ------------------------------------------------------------------------------------
def head_op(plan: GraphPlan) -> Op | None:
    """The classifier op that becomes the ``ZooModel`` head, or None (the whole graph is the body)."""
    op = next((op for op in plan.ops if op.module == plan.classifier), None)
    if op is not None and op.args.get("axis", 1) != 1:
        return None  # an axis-2 classifier is no (N, K) -> (N, classes) head: keep it in the body
    return op


def out_features(plan: GraphPlan) -> int:
    """How many values the converted net outputs per image (its classes, for a classifier)."""
    op = head_op(plan)
    return op.args["cout"] if op is not None else math.prod(plan.shapes[plan.output][1:])


def _split_state(state: dict[str, torch.Tensor], op: Op | None) -> tuple[dict, dict]:
    prefix = f"{op.module}." if op is not None else None
    body = {k: v for k, v in state.items() if not (prefix and k.startswith(prefix))}
    head = {k[len(prefix):]: v for k, v in state.items() if prefix and k.startswith(prefix)}
    return body, head


def model_from_plan(plan: GraphPlan, state: dict[str, torch.Tensor] | None, *, name: str = "",
                    entry: Entry | None = None, preprocessing: Any = None, labels: Any = None,
                    mean_image: Any = None, num_classes: int | None = None) -> ZooModel:
    """Assemble the ``ZooModel``: body = graph up to the classifier's input (flattened), head = classifier.

    The Caffe names of the classifier layer and of its output blob (``fc8``, ``ip1``) name ``logits``.

    Args:
        plan: the converted graph.
        state: its weights by module key; None leaves the parameters allocated but unset, for a saved
            model whose own weights are loaded next.
        name, entry, preprocessing, labels, mean_image: what the model carries.
        num_classes: the entry's class count, checked against the net's output.

    Raises:
        CaffeError: when the weights do not fit the graph, or ``num_classes`` differs from the output.
    """
    op = head_op(plan)
    if num_classes is not None and num_classes != out_features(plan):
        raise CaffeError(f"{name or plan.source}: the entry says {num_classes} classes but the converted net "
                         f"outputs {out_features(plan)} values (blob {plan.output!r}); fix head.num_classes or "
                         "head.classifier in the entry.")
    feature_blob = op.bottoms[0] if op is not None else plan.output
    body = CaffeGraph([o for o in plan.ops if o is not op], plan.input_blob, feature_blob, flatten=True)
    with torch.device("meta"):
        head: nn.Module = build_module(op) if op is not None else nn.Identity()
    if state is None:
        body, head = body.to_empty(device="cpu"), head.to_empty(device="cpu")
    else:
        body_state, head_state = _split_state(state, op)
        try:
            body.load_state_dict(body_state, strict=True, assign=True)
            head.load_state_dict(head_state, strict=True, assign=True)
        except RuntimeError as err:
            raise CaffeError(f"{name or plan.source}: the converted weights do not fit the graph ({err}); "
                             "convert again.") from err
    aliases = dict(plan.aliases)
    if op is not None:
        aliases.update({n: LOGITS for n in (op.name, *op.tops)})
    kwargs = dict(entry.architecture.kwargs) if entry is not None else {"input": list(plan.input_shape)}
    model = ZooModel(body, head, num_features=math.prod(plan.shapes[feature_blob][1:]), name=name, entry=entry,
                     labels=labels, preprocessing=preprocessing, aliases=aliases, base=name, mean_image=mean_image,
                     build=BuildSpec(library="caffe", builder="caffemodel", kwargs=kwargs,
                                     in_chans=plan.input_shape[0], num_classes=out_features(plan)))
    model.caffe_plan = plan  # the graph description, for tools that want the Caffe names
    return model.eval()


# -- registry entries ----------------------------------------------------------------------------
def _mean_image(entry: Entry, files: dict[str, Path]) -> np.ndarray | None:
    role = entry.preprocessing.mean_file
    if not role:
        return None
    if role not in files:
        raise CaffeError(f"{entry.name}: preprocessing needs the mean file (role {role!r}) but it was not "
                         "fetched; run `zoo download " + entry.name + "`.")
    mean = read_binaryproto(files[role])
    want = entry.preprocessing.input_size[0]
    if mean.shape[0] != want:
        raise CaffeError(f"{files[role]}: the mean image has {mean.shape[0]} channels; the model takes {want}.")
    return mean


def _cache_key(weights: Path, deploy: Path | None, input_shape, classifier) -> dict[str, Any]:
    st = weights.stat()
    key: dict[str, Any] = {"converter": CONVERTER_VERSION, "weights": weights.name, "size": st.st_size,
                           "mtime_ns": st.st_mtime_ns, "input": list(input_shape) if input_shape else None,
                           "classifier": classifier}
    if deploy is not None:
        key["deploy_sha256"] = file_digest(deploy)
    return key


def load_entry(entry: Entry, files: dict[str, Path]) -> ZooModel:
    """The ``ZooModel`` of a Caffe registry entry, converted once into ``<weights dir>/converted/``.

    Args:
        entry: a registry entry with ``architecture.library == "caffe"``.
        files: fetched files by role: ``weights`` (.caffemodel), optionally ``deploy`` (.prototxt) and
            the mean file's role (``mean``, a .binaryproto).

    Returns:
        The model in eval mode, carrying the entry's preprocessing (BGR, 0-255, mean) and labels.

    Raises:
        CaffeError: malformed or unsupported files, or a net that does not match the entry.

    Example:
        >>> from zoo.fetch import download                                        # doctest: +SKIP
        >>> model = load_entry(entry, download(entry))                              # doctest: +SKIP
    """
    if "weights" not in files:
        raise CaffeError(f"{entry.name}: no 'weights' file was given (files: {sorted(files)}).")
    weights = Path(files["weights"])
    deploy = Path(files["deploy"]) if files.get("deploy") else None
    input_shape = entry.architecture.kwargs.get("input") or list(entry.preprocessing.input_size)
    classifier = entry.head.classifier
    out_dir = weights.parent / "converted"
    out_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(weights, deploy, input_shape, classifier)
    with FileLock(str(out_dir / ".lock")):
        state = None
        try:
            # The key is checked before the weights are read: a stale cache costs no weight read.
            if (out_dir / GRAPH_FILE).is_file():
                plan, old_key = read_graph(out_dir)
                if old_key == key:
                    state = _read_weights(out_dir)
        except CaffeError:
            state = None  # damaged cache: convert again below
        if state is None:
            plan = convert(weights, deploy, input_shape=input_shape, classifier=classifier)
            state = materialize(plan)
            save_converted(plan, state, out_dir, key)
    return model_from_plan(plan, state, name=entry.name, entry=entry, preprocessing=entry.preprocessing,
                           labels=labels_for(entry), mean_image=_mean_image(entry, files),
                           num_classes=entry.head.num_classes)


def build_entry(entry: Entry, *, pretrained: bool = True) -> ZooModel:
    """A Caffe registry entry's model: its files fetched and verified, converted once, loaded.

    Raises:
        WeightsError: ``pretrained=False`` (a Caffe graph comes from its weights file).
        CaffeError, DownloadError, ChecksumMismatchError: as ``load_entry`` and ``zoo.fetch``.
    """
    if not pretrained:
        raise WeightsError(f"{entry.name} is a Caffe model: its graph comes from its .caffemodel, so it "
                           "cannot be built without the file (load it with pretrained=True).")
    return load_entry(entry, {spec.role: fetch_file(entry, spec.role) for spec in entry.files})
