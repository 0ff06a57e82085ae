"""A user's Caffe files turned into a saved zoo model folder, and such folders loaded again.

Owns: ``import_caffe`` (``zoo import-caffe``: convert, read Caffe's input conventions from the files,
and write a folder that ``zoo.load`` treats like any saved model), ``build_saved`` (the network of a
saved model whose graph is a Caffe one, for ``zoo.factory.load_saved``) and ``load_dir``.

An import folder holds what every saved model holds, ``model.json`` (format ``zoo-model``: base, build,
preprocessing, labels) and ``model.safetensors`` (the model's state dict), plus ``graph.json`` (the
converted Caffe graph the build spec needs), ``entry.json`` (a registry file with one local entry:
point ``ZOO_REGISTRY`` at it and ``zoo list --source local`` shows it) and, when one was used, the
mean file. Folders written before ``model.json`` existed (graph-keyed weights) still load.

Imports torch, numpy, ``zoo.factory``, ``zoo.registry`` and this package; never ``zoo.finetune`` or
``zoo.cli``.
"""

from __future__ import annotations

import dataclasses

import json
import re
import shutil
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zoo.registry import Entry, labels_for
from zoo.registry.catalog import load_entry_file
from zoo.registry.schema import SCHEMA_VERSION, Preprocessing

from .._io import file_digest, write_json
from ..errors import CaffeError
from ..factory import MODEL_FILE, load_saved, save_model
from ..model import ZooModel
from .conventions import MEAN_ROLE, Conventions, preprocessing_record, read_conventions
from .convert import (CONVERTER_VERSION, ENTRY_FILE, GRAPH_FILE, MEAN_FILE, build_entry, head_op, load_converted,
                      materialize, model_from_plan, out_features, read_graph)
from .graph import GraphPlan, plan_graph
from .proto import read_binaryproto, read_caffemodel
from .prototxt import read_prototxt

__all__ = ["import_caffe", "build_saved", "load_dir"]


def _entry_name(name: str | None, stem: str) -> str:
    if name:
        return name if "." in name else name + ".caffe"
    arch = re.sub(r"[^a-z0-9_\-]+", "_", stem.lower()).strip("_-") or "model"
    return f"{arch if arch[0].isalnum() else 'm' + arch}.caffe"


def _mean_image(conv: Conventions, c: int, h: int, w: int) -> np.ndarray | None:
    if conv.mean_file is None:
        return None
    image = read_binaryproto(conv.mean_file)
    if image.shape[0] != c:
        raise CaffeError(f"{conv.mean_file}: the mean image has {image.shape[0]} channels; the net takes {c}.")
    if image.shape[1] < h or image.shape[2] < w:
        raise CaffeError(f"{conv.mean_file}: the mean image {image.shape[1:]} is smaller than the input {h}x{w}.")
    return image


def _record(name: str, weights: Path, plan: GraphPlan, pre: dict[str, Any], conv: Conventions,
            labels: list[str] | None, license: str, out: Path) -> dict[str, Any]:  # noqa: A002
    """The local registry entry of the import (validated by the registry's own parser before use)."""
    files = [{"role": "weights", "filename": weights.name, "format": "caffemodel", "size": weights.stat().st_size,
              "checksum": {"sha1": file_digest(weights, "sha1"), "trust": "local"},
              "sources": [{"url": weights.as_uri()}]}]
    if "mean_file" in pre:
        files.append({"role": MEAN_ROLE, "filename": MEAN_FILE, "format": "binaryproto",
                      "checksum": {"sha1": file_digest(out / MEAN_FILE, "sha1"), "trust": "local"},
                      "sources": [{"url": (out / MEAN_FILE).resolve().as_uri()}]})
    head: dict[str, Any] = {"num_classes": out_features(plan)}
    if labels is not None:
        head["labels"] = list(labels)
    if head_op(plan) is not None:
        head["classifier"] = head_op(plan).name
    description = f"Imported from {weights.name} by zoo import-caffe. Input conventions: {'; '.join(conv.notes)}."
    return {"name": name, "architecture": {"library": "caffe", "builder": "caffemodel",
                                           "kwargs": {"input": list(plan.input_shape)}},
            "files": files, "license": license, "preprocessing": pre, "head": head, "description": description,
            "origin": str(weights), "tags": ["caffe", "imported"]}


def import_caffe(weights_path: str | Path, deploy_path: str | Path | None = None, *, out_dir: str | Path,
                 name: str | None = None, input_shape: tuple[int, int, int] | None = None,
                 mean: list[float] | None = None, mean_file: str | Path | None = None, scale: float | None = None,
                 crop: int | Literal[False] | None = None, classifier: str | None = None,
                 labels: list[str] | None = None, license: str = "unknown") -> Path:  # noqa: A002 (the registry's word)
    """Convert a user's Caffe model into a saved model folder that ``zoo.load(out_dir)`` loads.

    The input conventions come from the files unless given: the data layer's ``transform_param`` of a
    train_val prototxt, or of the training net a snapshot ``.caffemodel`` stores. The net is fed as
    Caffe fed it: the whole image at the input size, or, when a crop is known, a centre crop of the
    image resized to the mean file's (or the given) size.

    Args:
        weights_path: the ``.caffemodel``.
        deploy_path: a deploy or train_val ``.prototxt`` (default: the net stored in the weights file).
        out_dir: the folder to write (created; existing files are replaced atomically).
        name: the entry name ``arch.tag`` (default: ``<file stem>.caffe``).
        input_shape: (C, H, W) (default: what the files say).
        mean: the mean pixel in BGR order (default: the files' ``mean_value`` or ``mean_file``).
        mean_file: a per-pixel mean ``.binaryproto`` (default: the one the files name).
        scale: Caffe's transform scale, applied after the mean (default: the files', else 1).
        crop: the size images are resized to before a centre crop of the input size; ``False`` feeds
            the whole image even when the files name a ``crop_size`` (default: the files' crop).
        classifier: Caffe layer name of the final classifier (default: the last layer, if it is an
            InnerProduct).
        labels: class names, one per output.
        license: the licence to record (an id on the registry's allow-list).

    Returns:
        ``out_dir``.

    Raises:
        CaffeError: malformed or unsupported files, a mean file that cannot be found, or
            inconsistent options.

    Example:
        >>> import_caffe("lenet_iter_10000.caffemodel", "lenet_train_test.prototxt", out_dir="lenet",
        ...              input_shape=(1, 28, 28))                                   # doctest: +SKIP
        >>> model = zoo.load("lenet")                                                 # doctest: +SKIP
    """
    weights, out = Path(weights_path).resolve(), Path(out_dir)
    weights_net = read_caffemodel(weights)
    structure = read_prototxt(deploy_path) if deploy_path is not None else weights_net
    plan = plan_graph(structure, weights=weights_net, input_shape=input_shape, classifier=classifier)
    conv = read_conventions(structure, weights_net, scale=scale, mean=mean, mean_file=mean_file,
                            crop=crop if crop is not False else None, no_crop=crop is False)
    mean_image = _mean_image(conv, *plan.input_shape)
    pre = preprocessing_record(conv, plan.input_shape, mean_image)
    if labels is not None and len(labels) != out_features(plan):
        raise CaffeError(f"{len(labels)} labels were given; the net has {out_features(plan)} outputs.")
    out.mkdir(parents=True, exist_ok=True)
    if mean_image is not None:
        shutil.copyfile(conv.mean_file, out / MEAN_FILE)
    entry_name = _entry_name(name, weights.stem)
    data = {"schema": SCHEMA_VERSION,
            "entries": [_record(entry_name, weights, plan, pre, conv, labels, license, out)]}
    # Validate with the registry's own parser before writing: a folder that cannot load is a bug here.
    entry = load_entry_file(out / ENTRY_FILE, text=json.dumps(data), collection="local")[0]
    graph = plan.to_dict()
    model = model_from_plan(plan, materialize(plan), name=entry_name, entry=entry, preprocessing=entry.preprocessing,
                            labels=labels_for(entry), mean_image=mean_image)
    del weights_net
    save_model(model, out)
    write_json(out / GRAPH_FILE, {**graph, "key": {"converter": CONVERTER_VERSION, "weights": weights.name}})
    write_json(out / ENTRY_FILE, data)
    return out


def _own_entry(directory: Path) -> Entry | None:
    if not (directory / ENTRY_FILE).is_file():
        return None
    entries = load_entry_file(directory / ENTRY_FILE, collection="local")
    return entries[0] if entries else None


def build_saved(directory: str | Path, entry: Entry | None, preprocessing: Preprocessing | None) -> ZooModel:
    """The network of a saved model built on a Caffe graph, before its cut, head and own weights.

    The graph is the folder's ``graph.json`` (an import), else the base entry's converted graph (a model
    fine-tuned from a Caffe registry entry, or from a registered import).

    Args:
        directory: the saved model's folder.
        entry: its base entry, when the registry has it.
        preprocessing: the preprocessing its ``model.json`` records (default: the entry's).

    Raises:
        CaffeError: no graph in the folder and no registry entry to rebuild it from.
    """
    directory = Path(directory)
    own = _own_entry(directory) or entry
    if (directory / GRAPH_FILE).is_file():
        plan, _key = read_graph(directory)
        pre = preprocessing or (own.preprocessing if own is not None else None)
        mean_image = read_binaryproto(directory / MEAN_FILE) if pre is not None and pre.mean_file else None
        return model_from_plan(plan, None, name=own.name if own else directory.name, entry=own, preprocessing=pre,
                               labels=labels_for(own) if own else None, mean_image=mean_image)
    if entry is not None and entry.files:
        return build_entry(dataclasses.replace(entry, preprocessing=preprocessing) if preprocessing else entry)
    raise CaffeError(f"{directory}: was saved from a Caffe model but holds no {GRAPH_FILE}, and its base model is "
                     "not in the registry; register the import it came from (ZOO_REGISTRY=IMPORT/entry.json) or "
                     f"copy the import's {GRAPH_FILE} into it.")


def load_dir(path: str | Path) -> ZooModel:
    """Load a folder written by ``import_caffe`` (``zoo import-caffe``): no Caffe files needed.

    Raises:
        CaffeError: a missing or damaged file in the folder.

    Example:
        >>> model = load_dir("mynet")           # doctest: +SKIP  (zoo.load("mynet") does the same)
        >>> model.forward_layers(x, ["pool5/7x7_s1", "fc8"])   # doctest: +SKIP
    """
    directory = Path(path)
    if (directory / MODEL_FILE).is_file():
        return load_saved(directory)
    if not (directory / GRAPH_FILE).is_file():
        raise CaffeError(f"{directory}: has no {GRAPH_FILE}; it is not a converted Caffe model folder "
                         "(create one with `zoo import-caffe`).")
    # A folder from before model.json: the weights are keyed by graph module.
    entry = _own_entry(directory)
    plan, state, _key = load_converted(directory)
    mean_image = read_binaryproto(directory / MEAN_FILE) if entry is not None and entry.preprocessing.mean_file else None
    return model_from_plan(plan, state, name=entry.name if entry else directory.name, entry=entry,
                           preprocessing=entry.preprocessing if entry else None,
                           labels=labels_for(entry) if entry else None, mean_image=mean_image,
                           num_classes=entry.head.num_classes if entry else None)
