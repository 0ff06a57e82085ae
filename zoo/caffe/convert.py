"""Caffe files in, ``ZooModel`` out: conversion, the converted cache, and imported model folders.

Owns: ``convert`` (read a ``.caffemodel``, optionally a deploy ``.prototxt``, plan the graph),
``materialize`` (copy each weight blob once from the memory-mapped file into its tensor, handing the
file's pages back as it goes), the streaming safetensors writer, ``model_from_plan`` (the graph split
into ``body`` = everything up to the classifier's input, flattened, and ``head`` = the classifier),
``load_entry`` (registry entries: convert once into ``<weights dir>/converted/``), ``import_caffe``
and ``load_dir`` (a user's model as a local registry entry folder).

A net without an InnerProduct classifier (SqueezeNet, NIN: a 1x1 convolution, ReLU and global
average pooling end the net) keeps the whole graph in ``body``: its ``pool`` output is the pooled class
scores, exactly what the original computes, and ``head`` is ``nn.Identity``. Splitting at the last
convolution instead would need ReLU and pooling inside the head, so ``pool`` would no longer be the
pooled vector the ZooModel contract promises. To fine-tune such a net, ``cut`` it at a feature layer
(e.g. ``fire9/concat`` or ``drop9``) and reset the classifier.

Imports torch, numpy, safetensors, filelock, ``zoo.model``, ``zoo.errors``, ``zoo.registry``; never
``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import json
import math
import mmap
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.registry import Entry, labels_for
from zoo.registry.catalog import load_entry_file
from zoo.registry.schema import SCHEMA_VERSION

from .._io import atomic_write, file_digest, write_json
from ..errors import CaffeError
from ..model import ZooModel
from .graph import CaffeGraph, Op, GraphPlan, build_module, plan_graph
from .proto import NetSpec, read_binaryproto, read_caffemodel
from .prototxt import read_prototxt

__all__ = ["convert", "materialize", "save_converted", "load_converted", "model_from_plan", "load_entry",
           "import_caffe", "load_dir", "CONVERTER_VERSION", "GRAPH_FILE", "WEIGHTS_FILE", "ENTRY_FILE"]

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
    plan, key = _read_graph(directory)
    return plan, _read_weights(directory), key


def _read_graph(directory: Path) -> tuple[GraphPlan, dict[str, Any]]:
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
def _head_op(plan: GraphPlan) -> Op | None:
    """The classifier op that becomes the ``ZooModel`` head, or None (the whole graph is the body)."""
    head_op = next((op for op in plan.ops if op.module == plan.classifier), None)
    if head_op is not None and head_op.args.get("axis", 1) != 1:
        return None  # an axis-2 classifier is no (N, K) -> (N, classes) head: keep it in the body
    return head_op


def _out_features(plan: GraphPlan, head_op: Op | None) -> int:
    return head_op.args["cout"] if head_op is not None else math.prod(plan.shapes[plan.output][1:])


def model_from_plan(plan: GraphPlan, state: dict[str, torch.Tensor], *, name: str = "", entry: Entry | None = None,
                    preprocessing: Any = None, labels: Any = None, mean_image: Any = None,
                    num_classes: int | None = None) -> ZooModel:
    """Assemble the ``ZooModel``: body = graph up to the classifier's input (flattened), head = classifier.

    Raises:
        CaffeError: when the weights do not fit the graph, or ``num_classes`` differs from the output.
    """
    ops = plan.ops
    head_op = _head_op(plan)
    out_features = _out_features(plan, head_op)
    if head_op is not None:
        body_ops = [op for op in ops if op is not head_op]
        feature_blob = head_op.bottoms[0]
        body = CaffeGraph(body_ops, plan.input_blob, feature_blob, flatten=True)
        with torch.device("meta"):
            head: nn.Module = build_module(head_op)
    else:
        feature_blob = plan.output
        body = CaffeGraph(ops, plan.input_blob, plan.output, flatten=True)
        head = nn.Identity()
    num_features = math.prod(plan.shapes[feature_blob][1:])
    if num_classes is not None and num_classes != out_features:
        raise CaffeError(f"{name or plan.source}: the entry says {num_classes} classes but the converted net "
                         f"outputs {out_features} values (blob {plan.output!r}); fix head.num_classes or "
                         "head.classifier in the entry.")
    body_state, head_state = {}, {}
    prefix = f"{head_op.module}." if head_op is not None else None
    for key, value in state.items():
        if prefix and key.startswith(prefix):
            head_state[key[len(prefix):]] = value
        else:
            body_state[key] = value
    try:
        body.load_state_dict(body_state, strict=True, assign=True)
        if head_op is not None:
            head.load_state_dict(head_state, strict=True, assign=True)
    except RuntimeError as err:
        raise CaffeError(f"{name or plan.source}: the converted weights do not fit the graph ({err}); "
                         "convert again.") from err
    model = ZooModel(body, head, num_features=num_features, name=name, entry=entry, labels=labels,
                     preprocessing=preprocessing, aliases=dict(plan.aliases), base=name, mean_image=mean_image)
    model.caffe_plan = plan  # the graph description, for tools that want the Caffe names
    return model.eval()


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
    from filelock import FileLock

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
                plan, old_key = _read_graph(out_dir)
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


# -- imported models -----------------------------------------------------------------------------
def _entry_name(stem: str) -> str:
    arch = re.sub(r"[^a-z0-9_\-]+", "_", stem.lower()).strip("_-") or "model"
    if not arch[0].isalnum():
        arch = "m" + arch
    return f"{arch}.caffe"


def _data_mean(net: NetSpec, channels: int) -> list[float] | None:
    for layer in net.layers:
        values = layer.param("transform_param").all("mean_value")
        if values:
            if len(values) == 1:
                return [float(values[0])] * channels
            if len(values) == channels:
                return [float(v) for v in values]
    return None


def import_caffe(weights_path: str | Path, deploy_path: str | Path | None = None, *, out_dir: str | Path,
                 name: str | None = None, input_shape: tuple[int, int, int] | None = None,
                 mean: list[float] | None = None, mean_file: str | Path | None = None,
                 classifier: str | None = None, labels: list[str] | None = None,
                 license: str = "unknown") -> Path:  # noqa: A002 (the registry's word)
    """Convert a user's Caffe model into a local entry folder that ``zoo.load(out_dir)`` loads.

    The folder holds ``model.safetensors`` and ``graph.json`` (the converted net), ``entry.json`` (a
    registry file with one local entry: point ``ZOO_REGISTRY`` at it, or copy it into
    ``<config>/registry/``, and ``zoo list --source local`` shows it) and, when given, the mean file.

    Args:
        weights_path: the ``.caffemodel``.
        deploy_path: its deploy ``.prototxt`` (default: the net stored in the weights file).
        out_dir: the folder to write (created; existing files are replaced atomically).
        name: the entry name ``arch.tag`` (default: ``<file stem>.caffe``).
        input_shape: (C, H, W) (default: what the files say).
        mean: the mean pixel in BGR order (default: the data layer's ``mean_value`` if the file has one).
        mean_file: a per-pixel mean ``.binaryproto``.
        classifier: Caffe layer name of the final classifier (default: the last layer, if it is an
            InnerProduct).
        labels: class names, one per output.
        license: the licence to record (an id on the registry's allow-list).

    Returns:
        ``out_dir``.

    Raises:
        CaffeError: malformed or unsupported files, or inconsistent options.

    Example:
        >>> import_caffe("net.caffemodel", "deploy.prototxt", out_dir="mynet")   # doctest: +SKIP
        >>> model = zoo.load("mynet")                                              # doctest: +SKIP
    """
    weights = Path(weights_path).resolve()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights_net = read_caffemodel(weights)
    structure = read_prototxt(deploy_path) if deploy_path is not None else weights_net
    plan = plan_graph(structure, weights=weights_net, input_shape=input_shape, classifier=classifier)
    c, h, w = plan.input_shape
    pixel = list(mean) if mean is not None else _data_mean(weights_net, c)
    mean_image = None
    if mean_file is not None:
        mean_image = read_binaryproto(mean_file)
        if mean_image.shape[0] != c:
            raise CaffeError(f"{mean_file}: the mean image has {mean_image.shape[0]} channels; the net takes {c}.")
        if mean_image.shape[1] < h or mean_image.shape[2] < w:
            raise CaffeError(f"{mean_file}: the mean image {mean_image.shape[1:]} is smaller than the input {h}x{w}.")
        shutil.copyfile(mean_file, out / MEAN_FILE)
        if pixel is None:
            pixel = [float(v) for v in mean_image.reshape(c, -1).mean(axis=1)]
    if pixel is not None and len(pixel) != c:
        raise CaffeError(f"the mean has {len(pixel)} values; the net takes {c} channels (give one per channel).")
    # The head as load_dir will build it, so that num_classes and labels agree with the loaded model.
    head_op = _head_op(plan)
    out_features = _out_features(plan, head_op)
    if labels is not None and len(labels) != out_features:
        raise CaffeError(f"{len(labels)} labels were given; the net has {out_features} outputs.")
    state = materialize(plan)
    del weights_net
    save_converted(plan, state, out, {"converter": CONVERTER_VERSION, "weights": weights.name})
    entry_name = name if name else _entry_name(weights.stem)
    if "." not in entry_name:
        entry_name += ".caffe"
    files = [{"role": "weights", "filename": weights.name, "format": "caffemodel", "size": weights.stat().st_size,
              "checksum": {"sha1": file_digest(weights, "sha1"), "trust": "local"},
              "sources": [{"url": weights.as_uri()}]}]
    side = max(h, w)
    # Caffe's ImageNet convention: resize to 256, crop 224/227; other sizes keep the same ratio.
    resize = 256 if 224 <= side <= 256 else max(side, round(side * 8 / 7))
    pre: dict[str, Any] = {"input_size": [c, h, w], "resize": resize, "interpolation": "bilinear",
                           "channel_order": "BGR" if c == 3 else "L" if c == 1 else "RGB",
                           "scale": 255.0, "std": [1.0] * c, "mean": pixel or [0.0] * c}
    if mean_image is not None:
        files.append({"role": "mean", "filename": MEAN_FILE, "format": "binaryproto",
                      "checksum": {"sha1": file_digest(out / MEAN_FILE, "sha1"), "trust": "local"},
                      "sources": [{"url": (out / MEAN_FILE).resolve().as_uri()}]})
        pre["mean_file"] = "mean"
    head: dict[str, Any] = {"num_classes": out_features}
    if labels is not None:
        head["labels"] = list(labels)
    if head_op is not None:
        head["classifier"] = head_op.name
    description = f"Imported from {weights.name} by zoo import-caffe."
    if pixel is None:
        description += " No mean was known: the mean is 0 (pass --mean or --mean-file to set it)."
    record = {"name": entry_name, "architecture": {"library": "caffe", "builder": "caffemodel",
                                                   "kwargs": {"input": [c, h, w]}},
              "files": files, "license": license, "preprocessing": pre, "head": head,
              "description": description, "origin": str(weights), "tags": ["caffe", "imported"]}
    data = {"schema": SCHEMA_VERSION, "entries": [record]}
    # Validate with the registry's own parser before writing: a folder that cannot load is a bug here.
    load_entry_file(out / ENTRY_FILE, text=json.dumps(data), collection="local")
    write_json(out / ENTRY_FILE, data)
    return out


def load_dir(path: str | Path) -> ZooModel:
    """Load a folder written by ``import_caffe`` (``zoo import-caffe``): no Caffe files needed.

    Raises:
        CaffeError: a missing or damaged file in the folder.

    Example:
        >>> model = load_dir("mynet")           # doctest: +SKIP  (zoo.load("mynet") does the same)
        >>> model.forward_layers(x, ["pool5/7x7_s1"])   # doctest: +SKIP
    """
    directory = Path(path)
    if not (directory / GRAPH_FILE).is_file():
        raise CaffeError(f"{directory}: has no {GRAPH_FILE}; it is not a converted Caffe model folder "
                         "(create one with `zoo import-caffe`).")
    entry = None
    if (directory / ENTRY_FILE).is_file():
        entries = load_entry_file(directory / ENTRY_FILE, collection="local")
        entry = entries[0] if entries else None
    plan, state, _key = load_converted(directory)
    mean_image = None
    if entry is not None and entry.preprocessing.mean_file:
        mean_image = read_binaryproto(directory / MEAN_FILE)
    return model_from_plan(plan, state, name=entry.name if entry else directory.name, entry=entry,
                           preprocessing=entry.preprocessing if entry else None,
                           labels=labels_for(entry) if entry else None, mean_image=mean_image,
                           num_classes=entry.head.num_classes if entry else None)
