"""A Caffe net turned into a ``torch.nn.Module``: deploy selection, the per-layer rules, the graph module.

Owns: ``plan_graph`` (from a ``NetSpec``: keep the TEST-phase layers, drop data/loss/accuracy layers
and branches the output does not need, such as GoogLeNet's auxiliary heads; find the input and its
shape; resolve every layer through its rule in ``rules.RULES``; fold BatchNorm + Scale; keep the map
back to Caffe layer and blob names), ``GraphPlan``/``Op`` (plain, JSON-able: the ``graph.json`` a
converted folder keeps), ``CaffeGraph`` (the module that runs the ops in Caffe's order, blob by
blob) and ``build_graph``. What each layer type means lives in its rule, not here.

Imports torch, numpy, ``zoo.errors`` and this package's readers and rules; never ``zoo.finetune`` or
``zoo.cli``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CaffeError
from .fields import ENUMS
from .proto import Layer, Message, NetSpec
from .rule import LayerContext, WeightSource, fail
from .rules import RULES, SUPPORTED_TYPES

__all__ = ["Op", "GraphPlan", "plan_graph", "CaffeGraph", "build_graph", "build_module", "sanitize",
           "data_layers", "DATA_TYPES", "SUPPORTED_TYPES"]

DATA_TYPES = {"Data", "ImageData", "WindowData", "HDF5Data", "MemoryData", "DummyData", "Input"}
# Layers that only matter for training: dropped from the deploy net.
_TRAIN_ONLY = {"Accuracy", "Silence", "HDF5Output"}
_TEST = ENUMS["Phase"]["TEST"]
FOLDED = "BatchNorm+Scale"  # the op type of a BatchNorm with its Scale folded in


@dataclass
class Op:
    """One step of the converted net: a Caffe layer (or a folded BatchNorm+Scale pair)."""

    name: str  # Caffe layer name (for a fold: the Scale layer's)
    type: str  # Caffe type, or "BatchNorm+Scale"
    module: str  # sanitised module name
    bottoms: list[str]
    tops: list[str]
    args: dict[str, Any]  # resolved constructor arguments for the rule's build function
    folded: list[str] = field(default_factory=list)  # Caffe layers folded into this op


@dataclass
class GraphPlan:
    """Everything needed to build the graph module, as plain data (saved as ``graph.json``)."""

    input_blob: str
    input_shape: list[int]  # C, H, W
    ops: list[Op]
    output: str  # the blob the graph returns
    classifier: str | None  # module name of the final InnerProduct (the ZooModel head), or None
    shapes: dict[str, list[int]]  # Caffe blob name -> shape (N=1) at its last version
    aliases: dict[str, str]  # Caffe layer/blob name -> module name, where they differ
    source: str = ""
    tensors: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # "<module>.<param>" -> array

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``graph.json`` (the weights are left out, and never deep-copied)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("tensors", "ops")}
        d["ops"] = [asdict(op) for op in self.ops]
        return {"format": "zoo-caffe-graph", "version": 1, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GraphPlan:
        if d.get("format") != "zoo-caffe-graph" or d.get("version") != 1:
            raise CaffeError("graph.json is not a zoo Caffe graph (format/version); delete the converted "
                             "folder so the model is converted again.")
        ops = [Op(**o) for o in d["ops"]]
        return cls(input_blob=d["input_blob"], input_shape=list(d["input_shape"]), ops=ops, output=d["output"],
                   classifier=d["classifier"], shapes=d["shapes"], aliases=d["aliases"], source=d.get("source", ""))


_IDENT = re.compile(r"[^A-Za-z0-9_]")


def sanitize(name: str, taken: set[str]) -> str:
    """A module name for a Caffe layer name: ``conv1/7x7_s2`` -> ``conv1_7x7_s2``; unique within
    ``taken``; never an attribute of ``nn.Module``."""
    base = _IDENT.sub("_", name) or "layer"
    if base[0].isdigit():
        base = "l_" + base
    if hasattr(CaffeGraph, base):
        base += "_"
    out, i = base, 2
    while out in taken:
        out = f"{base}_{i}"
        i += 1
    taken.add(out)
    return out


# -- deploy selection ----------------------------------------------------------------------------
def _rule_matches(rule: Message) -> bool:
    """Caffe's StateMeetsRule for the TEST state (level 0, no stages)."""
    if rule.has("phase") and rule.get("phase") != _TEST:
        return False
    if rule.has("min_level") and 0 < rule.get("min_level"):
        return False
    if rule.has("max_level") and 0 > rule.get("max_level"):
        return False
    return not rule.all("stage")


def in_test_net(layer: Layer) -> bool:
    """Whether Caffe keeps ``layer`` in the TEST-phase net (its include/exclude rules)."""
    include, exclude = layer.params.all("include"), layer.params.all("exclude")
    if include:
        return any(_rule_matches(r) for r in include)
    return not any(_rule_matches(r) for r in exclude)


def data_layers(net: NetSpec) -> list[Layer]:
    """The net's data layers, those of the TEST phase first (a train_val file has one per phase)."""
    found = [layer for layer in net.layers if layer.type in DATA_TYPES]
    return sorted(found, key=lambda layer: not in_test_net(layer))


def _select(net: NetSpec, classifier: str | None) -> tuple[list[Layer], Layer]:
    """The computing layers the output needs, in file order, and the layer that writes the output."""
    compute = [layer for layer in net.layers if in_test_net(layer) and layer.type not in DATA_TYPES
               and not (layer.type.endswith("Loss") or layer.type in _TRAIN_ONLY)]
    if not compute:
        raise fail(net, None, "has no computing layers in the TEST phase")
    producers: list[dict[int, int]] = []  # per layer: bottom index -> producing layer index
    last_writer: dict[str, int] = {}
    for i, layer in enumerate(compute):
        producers.append({j: last_writer[b] for j, b in enumerate(layer.bottoms) if b in last_writer})
        last_writer.update((t, i) for t in layer.tops)
    if classifier is not None:
        end = next((i for i, layer in enumerate(compute) if layer.name == classifier), None)
        if end is None:
            raise fail(net, None, f"has no layer named {classifier!r} (the entry's classifier); layers: "
                       f"{', '.join(layer.name for layer in compute[-8:])} ...")
        if compute[end].type != "InnerProduct":
            raise fail(net, compute[end], "is named as the classifier but is not an InnerProduct")
    else:
        end = _default_end(net, compute, producers)
    needed, stack = set(), [end]
    while stack:
        i = stack.pop()
        if i not in needed:
            needed.add(i)
            stack.extend(producers[i].values())
    if not compute[end].tops:
        raise fail(net, compute[end], "has no top blob")
    return [compute[i] for i in sorted(needed)], compute[end]


def _default_end(net: NetSpec, compute: list[Layer], producers: list[dict[int, int]]) -> int:
    """The layer a training net's last SoftmaxWithLoss reads (through Split copies): what it was trained
    to classify, as its deploy file's output (MTCNN's face score, not the box regression written after
    it). Else the last layer, a trailing Softmax (deploy "prob") left out: the zoo returns logits."""
    losses = [layer for layer in net.layers if layer.type == "SoftmaxWithLoss" and layer.bottoms and in_test_net(layer)]
    writers = [i for i, layer in enumerate(compute)
               if losses and losses[-1].bottoms[0] in layer.tops and layer.index < losses[-1].index]
    end = writers[-1] if writers else len(compute) - 1
    while compute[end].type in ("Split", "Softmax") and 0 in producers[end]:
        end = producers[end][0]
    return end


def _external_input(net: NetSpec, chosen: list[Layer]) -> str:
    """The one blob the chosen layers read but none writes."""
    written: set[str] = set()
    external: list[str] = []
    for layer in chosen:
        external += [b for b in dict.fromkeys(layer.bottoms) if b not in written and b not in external]
        written.update(layer.tops)
    if len(external) != 1:
        raise fail(net, None, f"needs {len(external)} input blobs ({', '.join(external) or 'none'}); the "
                   "converter supports nets with exactly one image input")
    return external[0]


def _input_shape(net: NetSpec, blob: str, given, chosen: list[Layer], weights: NetSpec) -> list[int]:
    """(C, H, W) of the input: given, or the net's input dims / Input layer, or a data layer's crop."""
    if given is not None:
        given = [int(v) for v in given][-3:] if len(given) == 4 else [int(v) for v in given]
        if len(given) != 3 or min(given) < 1:
            raise fail(net, None, f"input shape must be (C, H, W) of positive sizes, got {given}")
        return given
    for name, shape in net.inputs:
        if name == blob and shape:
            return [int(v) for v in shape[-3:]]
    for layer in data_layers(net) + data_layers(weights):
        if blob not in layer.tops:
            continue
        shapes = layer.param("input_param").all("shape") if layer.type == "Input" else []
        if shapes:
            return [int(v) for v in shapes[min(layer.tops.index(blob), len(shapes) - 1)].all("dim")[-3:]]
        crop = layer.param("transform_param").get("crop_size") or layer.param("data_param").get("crop_size")
        # Channels from the first convolution's weights: the data layer does not say.
        first = next((lay for lay in chosen if blob in lay.bottoms and lay.type == "Convolution"), None)
        src = next((lay for lay in weights.layers if first is not None and lay.name == first.name and lay.blobs), None)
        if crop and src is not None and len(src.blobs[0].shape) == 4:
            return [int(src.blobs[0].shape[1]), int(crop), int(crop)]
    raise fail(net, None, f"does not say the size of its input {blob!r}; give input_shape=(C, H, W) "
               "(--input C,H,W on the command line, or architecture.kwargs.input in the entry)")


# -- the plan ------------------------------------------------------------------------------------
def plan_graph(net: NetSpec, *, weights: NetSpec | None = None, input_shape: tuple[int, ...] | None = None,
               classifier: str | None = None, init: int | None = None) -> GraphPlan:
    """Work out the deploy net of ``net`` and resolve every layer into an ``Op``.

    Args:
        net: the structure (a ``.caffemodel`` read as a net, or a deploy or train_val ``.prototxt``).
        weights: where blobs come from, matched by layer name (default: ``net``'s own layers).
        input_shape: (C, H, W) of the input; default: the net's own input/Input layer/data layer.
        classifier: Caffe layer name of the final classifier (an InnerProduct); the graph ends at its
            output. Default: the last layer (a trailing Softmax is left out: the zoo returns logits).
        init: give layers without weights fresh random ones from this seed (He-normal weights, zero
            biases, BatchNorm mean 0 / variance 1, Scale 1 / 0, PReLU 0.25) instead of failing: a net
            from its prototxt alone, for training from scratch.

    Raises:
        CaffeError: naming the file, the layer and the type, for unsupported layers or parameters, a
            missing or misshapen weight, or an input that cannot be determined.

    Example:
        >>> weights = read_caffemodel("bvlc_googlenet.caffemodel")                    # doctest: +SKIP
        >>> plan = plan_graph(read_prototxt("deploy.prototxt"), weights=weights)      # doctest: +SKIP
        >>> graph = build_graph(plan); graph.load_state_dict(materialize(plan), assign=True)  # doctest: +SKIP
    """
    weights = weights or net
    chosen, last = _select(net, classifier)
    input_blob = _external_input(net, chosen)
    shape = _input_shape(net, input_blob, input_shape, chosen, weights)
    source = WeightSource({layer.name: layer for layer in weights.layers if layer.blobs}, init)
    ops, shapes, tensors = _resolve(net, chosen, input_blob, shape, source)
    ops = _fold_batchnorm_scale(ops, tensors, input_blob)
    has_classifier = classifier is not None or last.type == "InnerProduct"
    return GraphPlan(input_blob=input_blob, input_shape=list(shape), ops=ops, output=last.tops[0],
                     classifier=ops[-1].module if has_classifier and ops[-1].type == "InnerProduct" else None,
                     shapes={k: list(v) for k, v in shapes.items()}, aliases=_aliases(ops), source=net.path,
                     tensors=tensors)


def _check_arity(net: NetSpec, layer: Layer, ins: list[tuple[int, ...]]) -> None:
    """The checks every rule shares: a known type, the number of bottoms and tops, the input rank."""
    rule = RULES.get(layer.type)
    if rule is None:
        raise fail(net, layer, f"type {layer.type!r} is not supported by the converter (supported: "
                   f"{', '.join(SUPPORTED_TYPES)}); give a deploy .prototxt without it, or ask for the layer "
                   "to be added")
    for what, count, (lo, hi) in (("bottoms", len(layer.bottoms), rule.bottoms), ("tops", len(layer.tops), rule.tops)):
        if count < lo or (hi is not None and count > hi):
            want = f"{lo}" if lo == hi else f"{lo} or more" if hi is None else f"{lo} to {hi}"
            raise fail(net, layer, f"has {count} {what}; {layer.type} takes {want}")
    if rule.ndim is not None and len(ins[0]) not in rule.ndim:
        raise fail(net, layer, f"needs a {' or '.join(map(str, rule.ndim))}-D input, got shape {ins[0]}")


def _resolve(net: NetSpec, chosen: list[Layer], input_blob: str, input_shape: list[int], source: WeightSource):
    """Every chosen layer through its rule: the ops, each blob's shape, the weights by module key."""
    shapes: dict[str, tuple[int, ...]] = {input_blob: (1, *input_shape)}
    tensors: dict[str, np.ndarray] = {}
    taken: set[str] = set()
    ops: list[Op] = []
    for layer in chosen:
        missing = [b for b in layer.bottoms if b not in shapes]
        if missing:
            raise fail(net, layer, f"reads blob {missing[0]!r} before any layer writes it")
        ins = [shapes[b] for b in layer.bottoms]
        _check_arity(net, layer, ins)
        ctx = LayerContext(net, layer, ins, sanitize(layer.name, taken), source, tensors)
        resolved = RULES[layer.type].resolve(ctx)
        shapes.update(zip(layer.tops, resolved.shapes))
        ops.append(Op(name=layer.name, type=layer.type, module=ctx.module, bottoms=list(layer.bottoms),
                      tops=list(layer.tops), args=resolved.args))
    return ops, shapes, tensors


def _fold_batchnorm_scale(ops: list[Op], tensors: dict[str, np.ndarray], input_blob: str) -> list[Op]:
    """Fold each BatchNorm into the Scale right after it when that Scale alone reads its output (ResNet:
    both in place on one blob): one ``nn.BatchNorm2d`` with the Scale's factors as its affine part."""
    readers: dict[tuple[str, int], int] = {}  # (blob, version) -> number of ops reading it
    version: dict[str, int] = {input_blob: 0}
    for i, op in enumerate(ops):
        for b in op.bottoms:
            readers[(b, version.get(b, -1))] = readers.get((b, version.get(b, -1)), 0) + 1
        version.update((t, i + 1) for t in op.tops)
    out: list[Op] = []
    i = 0
    while i < len(ops):
        bn, nxt = ops[i], ops[i + 1] if i + 1 < len(ops) else None
        if (bn.type == "BatchNorm" and nxt is not None and nxt.type == "Scale" and nxt.bottoms == [bn.tops[0]]
                and len(nxt.tops) == 1 and readers.get((bn.tops[0], i + 1), 0) == 1):
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                tensors[f"{nxt.module}.{key}"] = tensors.pop(f"{bn.module}.{key}")
            if not nxt.args["bias"]:
                tensors[f"{nxt.module}.bias"] = np.zeros(nxt.args["channels"], np.float32)
            out.append(Op(name=nxt.name, type=FOLDED, module=nxt.module, bottoms=bn.bottoms, tops=nxt.tops,
                          args={**bn.args, "affine": True}, folded=[bn.name, nxt.name]))
            i += 2
        else:
            out.append(bn)
            i += 1
    return out


def _aliases(ops: list[Op]) -> dict[str, str]:
    """Caffe names -> module names. Layer names first: a name that is a layer and a blob means the
    layer's output, as in OpenCV's forward(name); a blob name alone means its final value (the last
    in-place writer), as in pycaffe. A BatchNorm folded into its Scale has no output of its own: its
    name is deliberately absent. A Slice's later tops are not its module's (first) output: left out."""
    layer_names = {op.name for op in ops}
    modules = {op.module for op in ops}
    aliases = {op.name: op.module for op in ops if op.name != op.module}
    for op in ops:
        for top in op.tops[:1] if op.type == "Slice" else op.tops:
            if top not in layer_names and top not in modules:
                aliases[top] = op.module
    return aliases


# -- modules -------------------------------------------------------------------------------------
def build_module(op: Op) -> nn.Module:
    """The torch module for one op (parameters uninitialised: weights are assigned afterwards)."""
    rule = RULES.get("BatchNorm" if op.type == FOLDED else op.type)
    if rule is None:
        raise CaffeError(f"layer {op.name!r}: type {op.type!r} is not supported by the converter")
    return rule.build(op.args)


class CaffeGraph(nn.Module):
    """Runs converted Caffe ops in file order, blob by blob (in-place layers overwrite their blob, so
    each layer sees the version Caffe would). Submodules are named after the layers (sanitised).

    ``forward(x)`` returns the output blob (flattened from axis 1 when ``flatten``); ``blobs(x, names)``
    returns any blobs by Caffe name.
    """

    def __init__(self, ops: list[Op], input_blob: str, output: str, *, flatten: bool = False):
        super().__init__()
        self.input_blob, self.output, self.flatten = input_blob, output, flatten
        self.steps = [(op.module, list(op.bottoms), list(op.tops)) for op in ops]
        with torch.device("meta"):  # no memory and no random init: the real weights are assigned later
            for op in ops:
                self.add_module(op.module, build_module(op))

    def _run(self, x: torch.Tensor, stop: set[str] | None = None) -> dict[str, torch.Tensor]:
        env = {self.input_blob: x}
        for module, bottoms, tops in self.steps:
            out = self._modules[module](*[env[b] for b in bottoms])
            # A Slice gives one tensor per top; a Split one tensor under every top.
            env.update(zip(tops, out) if isinstance(out, tuple) else ((t, out) for t in tops))
            if stop is not None and stop.issubset(env):
                break
        return env

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._run(x)[self.output]
        return out.flatten(1) if self.flatten else out

    def blobs(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        """The final value of each named Caffe blob (as pycaffe's ``net.blobs[name]`` after forward)."""
        env = self._run(x)
        missing = [n for n in names if n not in env]
        if missing:
            raise CaffeError(f"no blob named {missing[0]!r} in this graph (blobs: {', '.join(env)})")
        return {n: env[n] for n in names}


def build_graph(plan: GraphPlan, ops: list[Op] | None = None, output: str | None = None, *,
                flatten: bool = False) -> CaffeGraph:
    """A ``CaffeGraph`` of ``ops`` (default: all of the plan's) without weights (meta tensors)."""
    return CaffeGraph(plan.ops if ops is None else ops, plan.input_blob, output or plan.output, flatten=flatten)
