"""A Caffe net turned into a ``torch.nn.Module``: deploy selection, shape inference, weights, modules.

Owns: ``plan_graph`` (from a ``NetSpec``: keep the TEST-phase layers, drop data/loss/accuracy layers
and branches the output does not need, such as GoogLeNet's auxiliary heads; infer every blob's shape;
check and canonicalise the weights; fold BatchNorm + Scale; sanitise module names and keep the map back
to Caffe layer and blob names), ``Plan``/``Op`` (plain, JSON-able: the ``graph.json`` the cache keeps),
``CaffeGraph`` (the module that runs the ops in Caffe's order, blob by blob) and ``build_graph``.

Caffe semantics come from /work/shared/reference/caffe.md §3.5 and §4. Imports torch, numpy,
``zoo.errors`` and the readers of this package; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CaffeError
from . import layers as L
from .proto import ENUMS, Blob, Layer, Message, NetSpec

__all__ = ["Op", "Plan", "plan_graph", "CaffeGraph", "build_graph", "build_module", "sanitize",
           "DATA_TYPES", "SUPPORTED_TYPES"]

DATA_TYPES = {"Data", "ImageData", "WindowData", "HDF5Data", "MemoryData", "DummyData", "Input"}
# Layers that only matter for training: dropped from the deploy net.
_TRAIN_ONLY = {"Accuracy", "Silence", "HDF5Output"}
SUPPORTED_TYPES = ("Convolution", "Pooling", "ReLU", "LRN", "InnerProduct", "Dropout", "Concat", "Softmax",
                   "BatchNorm", "Scale", "Eltwise", "Flatten", "Split")
_POOL = {v: k for k, v in ENUMS["PoolMethod"].items()}
_ELTWISE = {v: k for k, v in ENUMS["EltwiseOp"].items()}
_TEST = ENUMS["Phase"]["TEST"]


@dataclass
class Op:
    """One step of the converted net: a Caffe layer (or a folded BatchNorm+Scale pair)."""

    name: str  # Caffe layer name (for a fold: the Scale layer's)
    type: str  # Caffe type, or "BatchNorm+Scale"
    module: str  # sanitised module name
    bottoms: list[str]
    tops: list[str]
    args: dict[str, Any]  # resolved constructor arguments for build_module
    folded: list[str] = field(default_factory=list)  # Caffe layers folded into this op


@dataclass
class Plan:
    """Everything needed to build the module, as plain data (saved as ``graph.json``)."""

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
    def from_dict(cls, d: dict[str, Any]) -> Plan:
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


def _in_test_net(layer: Layer) -> bool:
    include, exclude = layer.params.all("include"), layer.params.all("exclude")
    if include:
        return any(_rule_matches(r) for r in include)
    return not any(_rule_matches(r) for r in exclude)


def _is_loss(type_: str) -> bool:
    return type_.endswith("Loss") or type_ in _TRAIN_ONLY


def _fail(net: NetSpec, layer: Layer | None, what: str) -> CaffeError:
    where = f"layer {layer.name!r} ({layer.type})" if layer is not None else "the net"
    return CaffeError(f"{net.path or 'net'}: {where}: {what}")


# -- the plan ------------------------------------------------------------------------------------
def plan_graph(net: NetSpec, *, weights: NetSpec | None = None, input_shape: tuple[int, ...] | None = None,
               classifier: str | None = None, init: int | None = None) -> Plan:
    """Work out the deploy net of ``net`` and resolve every layer into an ``Op``.

    Args:
        net: the structure (a ``.caffemodel`` read as a net, or a deploy ``.prototxt``).
        weights: where blobs come from, matched by layer name (default: ``net``'s own layers).
        input_shape: (C, H, W) of the input; default: the net's own input/Input layer/data layer.
        classifier: Caffe layer name of the final classifier (an InnerProduct); the graph ends at its
            output. Default: the last layer (a trailing Softmax is left out: the zoo returns logits).
        init: give layers without weights fresh random ones from this seed (He-normal weights, zero
            biases, BatchNorm mean 0 / variance 1, Scale 1 / 0) instead of failing: a net from its
            prototxt alone, for training from scratch.

    Raises:
        CaffeError: naming the file, the layer and the type, for unsupported layers or parameters, a
            missing or misshapen weight, or an input that cannot be determined.

    Example:
        >>> weights = read_caffemodel("bvlc_googlenet.caffemodel")                    # doctest: +SKIP
        >>> plan = plan_graph(read_prototxt("deploy.prototxt"), weights=weights)      # doctest: +SKIP
        >>> graph = build_graph(plan); graph.load_state_dict(materialize(plan), assign=True)  # doctest: +SKIP
    """
    weights = weights or net
    blob_source = {layer.name: layer for layer in weights.layers if layer.blobs}
    # 1. TEST-phase layers, without training-only ones.
    kept = [layer for layer in net.layers if _in_test_net(layer) and not _is_loss(layer.type)]
    if not kept:
        raise _fail(net, None, "has no layers in the TEST phase")
    input_layers = [layer for layer in kept if layer.type in DATA_TYPES]
    compute = [layer for layer in kept if layer.type not in DATA_TYPES]
    if not compute:
        raise _fail(net, None, "has no computing layers")
    # 2. Which layer writes each blob version; the output and its ancestors.
    producers: list[dict[int, int]] = []  # per layer: bottom index -> producing layer index
    last_writer: dict[str, int] = {}
    consumed: set[tuple[str, int]] = set()
    for i, layer in enumerate(compute):
        producers.append({j: last_writer[b] for j, b in enumerate(layer.bottoms) if b in last_writer})
        for j, b in enumerate(layer.bottoms):
            if b in last_writer:
                consumed.add((b, last_writer[b]))
        for t in layer.tops:
            last_writer[t] = i
    if classifier is not None:
        matches = [i for i, layer in enumerate(compute) if layer.name == classifier]
        if not matches:
            raise _fail(net, None, f"has no layer named {classifier!r} (the entry's classifier); layers: "
                        f"{', '.join(layer.name for layer in compute[-8:])} ...")
        end = matches[0]
        if compute[end].type != "InnerProduct":
            raise _fail(net, compute[end], "is named as the classifier but is not an InnerProduct")
    else:
        end = len(compute) - 1
        # A trailing Softmax (deploy "prob") is probabilities; the zoo's contract is logits.
        while compute[end].type == "Softmax" and end > 0 and 0 in producers[end]:
            end = producers[end][0]
    needed: set[int] = set()
    stack = [end]
    while stack:
        i = stack.pop()
        if i in needed:
            continue
        needed.add(i)
        stack.extend(producers[i].values())
    chosen = [compute[i] for i in sorted(needed)]
    output = compute[end].tops[0] if compute[end].tops else ""
    if not output:
        raise _fail(net, compute[end], "has no top blob")
    # 3. The input: the one blob the chosen layers read but none writes.
    written: set[str] = set()
    external: list[str] = []
    for layer in chosen:
        for b in layer.bottoms:
            if b not in written and b not in external:
                external.append(b)
        written.update(layer.tops)
    if len(external) != 1:
        raise _fail(net, None, f"needs {len(external)} input blobs ({', '.join(external) or 'none'}); the "
                    "converter supports nets with exactly one image input")
    input_blob = external[0]
    shape = _input_shape(net, input_blob, input_layers, input_shape, chosen, blob_source)
    return _resolve(net, chosen, input_blob, shape, output, classifier is not None or
                    compute[end].type == "InnerProduct", blob_source, init)


def _input_shape(net: NetSpec, blob: str, input_layers: list[Layer], given, chosen, blob_source) -> list[int]:
    if given is not None:
        given = [int(v) for v in given]
        if len(given) == 4:
            given = given[1:]
        if len(given) != 3 or min(given) < 1:
            raise _fail(net, None, f"input shape must be (C, H, W) of positive sizes, got {given}")
        return given
    for name, shape in net.inputs:
        if name == blob and shape:
            return [int(v) for v in shape[-3:]]
    for layer in input_layers:
        if blob in layer.tops:
            if layer.type == "Input":
                shapes = layer.param("input_param").all("shape")
                if shapes:
                    dims = shapes[min(layer.tops.index(blob), len(shapes) - 1)].all("dim")
                    return [int(v) for v in dims[-3:]]
            crop = layer.param("transform_param").get("crop_size") or layer.param("data_param").get("crop_size")
            if crop:
                # Channels from the first convolution's weights: the data layer does not say.
                first = next((lay for lay in chosen if blob in lay.bottoms and lay.type == "Convolution"), None)
                src = blob_source.get(first.name) if first is not None else None
                if src is not None and len(src.blobs[0].shape) == 4:
                    return [int(src.blobs[0].shape[1]), int(crop), int(crop)]
    raise _fail(net, None, f"does not say the size of its input {blob!r}; give input_shape=(C, H, W) "
                "(--input C,H,W on the command line, or architecture.kwargs.input in the entry)")


def _init_blob(seed: int, type_: str, index: int, shape: tuple[int, ...]) -> Blob:
    """A fresh parameter blob for ``init``: He-normal weights, zero biases, identity BatchNorm/Scale."""
    if type_ in ("Convolution", "InnerProduct") and index == 0:
        rng = np.random.default_rng([seed, *shape])
        fan_in = math.prod(shape[1:]) or 1
        data = (rng.standard_normal(math.prod(shape)) * math.sqrt(2.0 / fan_in)).astype(np.float32)
    elif (type_, index) in (("BatchNorm", 1), ("BatchNorm", 2), ("Scale", 0)):
        data = np.ones(math.prod(shape), np.float32)  # BN variance and scale factor, Scale gamma
    else:
        data = np.zeros(math.prod(shape), np.float32)
    return Blob(tuple(shape), data)


def _fit(net: NetSpec, layer: Layer, blob: Blob, want: tuple[int, ...], what: str) -> np.ndarray:
    """The blob's data reshaped to ``want``; legacy 4-D dims pad with leading 1s, so compare without them."""
    have = tuple(blob.shape)

    def strip(s):
        s = tuple(s)
        while len(s) > 1 and s[0] == 1:
            s = s[1:]
        return s

    if strip(have) != strip(want):
        raise _fail(net, layer, f"{what} has shape {have} in the weights but the net needs {want}; the "
                    "weights do not belong to this net definition")
    return blob.data.reshape(want)


def _pair(net, layer, p: Message, single: str, h: str, w: str, default: int | None, repeated: bool) -> tuple[int, int]:
    if p.has(h) or p.has(w):
        if not (p.has(h) and p.has(w)):
            raise _fail(net, layer, f"sets only one of {h}/{w}")
        return int(p.get(h)), int(p.get(w))
    values = p.all(single) if repeated else ([p.get(single)] if p.has(single) else [])
    if not values:
        if default is None:
            raise _fail(net, layer, f"has no {single}")
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise _fail(net, layer, f"has {len(values)} {single} values; only 2-D layers are supported")


def _axis(axis: int, ndim: int, net, layer) -> int:
    a = axis + ndim if axis < 0 else axis
    if not 0 <= a < ndim:
        raise _fail(net, layer, f"axis {axis} is out of range for a {ndim}-D input")
    return a


def _resolve(net: NetSpec, chosen: list[Layer], input_blob: str, input_shape: list[int], output: str,
             has_classifier: bool, blob_source: dict[str, Layer], init: int | None = None) -> Plan:
    shapes: dict[str, tuple[int, ...]] = {input_blob: (1, *input_shape)}
    ops: list[Op] = []
    tensors: dict[str, np.ndarray] = {}
    taken: set[str] = set()
    # Reader count per blob version, to fold BatchNorm into a Scale that alone reads its output.
    readers: dict[tuple[str, int], int] = {}
    version: dict[str, int] = {input_blob: 0}
    for i, layer in enumerate(chosen):
        for b in layer.bottoms:
            key = (b, version.get(b, -1))
            readers[key] = readers.get(key, 0) + 1
        for t in layer.tops:
            version[t] = i + 1
    skip_next: set[int] = set()

    def blobs_of(layer: Layer, lo: int, hi: int, want: list[tuple[int, ...]]) -> list[Blob]:
        src = blob_source.get(layer.name)
        if src is None and init is not None:
            return [_init_blob(init, layer.type, i, shape) for i, shape in enumerate(want)]
        if src is None:
            raise _fail(net, layer, "has no weights (no layer of that name in the weights file holds blobs)")
        if src.type != layer.type:
            raise _fail(net, layer, f"matches a {src.type} layer of the weights file by name; types differ")
        if not lo <= len(src.blobs) <= hi:
            raise _fail(net, layer, f"has {len(src.blobs)} weight blobs; expected {lo}"
                        + (f" to {hi}" if hi != lo else ""))
        return src.blobs

    for i, layer in enumerate(chosen):
        if i in skip_next:
            continue
        t = layer.type
        if t not in SUPPORTED_TYPES:
            raise _fail(net, layer, f"type {t!r} is not supported by the converter (supported: "
                        f"{', '.join(SUPPORTED_TYPES)}); give a deploy .prototxt without it, or ask for the "
                        "layer to be added")
        missing = [b for b in layer.bottoms if b not in shapes]
        if missing:
            raise _fail(net, layer, f"reads blob {missing[0]!r} before any layer writes it")
        ins = [shapes[b] for b in layer.bottoms]
        if not ins:
            raise _fail(net, layer, "has no bottom blob")
        if not layer.tops:
            raise _fail(net, layer, "has no top blob")
        x = ins[0]
        module = sanitize(layer.name, taken)
        args: dict[str, Any] = {}
        folded: list[str] = []
        name, op_type, tops = layer.name, t, list(layer.tops)
        if t in ("Convolution", "Pooling", "LRN", "BatchNorm") and len(x) != 4:
            raise _fail(net, layer, f"needs a 4-D input (N, C, H, W), got shape {x}")
        if t not in ("Concat", "Eltwise") and len(layer.bottoms) != 1:
            raise _fail(net, layer, f"has {len(layer.bottoms)} bottoms; {t} takes one")
        if t not in ("Split",) and len(layer.tops) != 1:
            raise _fail(net, layer, f"has {len(layer.tops)} tops; {t} writes one")
        if t == "Convolution":
            p = layer.param("convolution_param")
            if p.get("axis", 1) != 1:
                raise _fail(net, layer, f"convolution_param.axis {p.get('axis')} is not supported (only 1)")
            cout = int(p.get("num_output", 0))
            groups = int(p.get("group", 1))
            kernel = _pair(net, layer, p, "kernel_size", "kernel_h", "kernel_w", None, True)
            stride = _pair(net, layer, p, "stride", "stride_h", "stride_w", 1, True)
            pad = _pair(net, layer, p, "pad", "pad_h", "pad_w", 0, True)
            dil = _pair(net, layer, p, "dilation", "dilation_h", "dilation_w", 1, True)
            cin = x[1]
            if cout < 1 or groups < 1 or cin % groups or cout % groups:
                raise _fail(net, layer, f"num_output {cout} / group {groups} do not fit {cin} input channels")
            if min(kernel) < 1 or min(stride) < 1 or min(dil) < 1:
                raise _fail(net, layer, f"kernel {kernel}, stride {stride}, dilation {dil} must be positive")
            oh = (x[2] + 2 * pad[0] - (dil[0] * (kernel[0] - 1) + 1)) // stride[0] + 1
            ow = (x[3] + 2 * pad[1] - (dil[1] * (kernel[1] - 1) + 1)) // stride[1] + 1
            if oh < 1 or ow < 1:
                raise _fail(net, layer, f"the kernel {kernel} (dilation {dil}) is larger than its padded input "
                            f"{x[2:]} (input too small?)")
            bias = bool(p.get("bias_term", True))
            blobs = blobs_of(layer, 2 if bias else 1, 2 if bias else 1,
                             [(cout, cin // groups, *kernel), (cout,)][:2 if bias else 1])
            tensors[f"{module}.weight"] = _fit(net, layer, blobs[0], (cout, cin // groups, *kernel), "weight")
            if bias:
                tensors[f"{module}.bias"] = _fit(net, layer, blobs[1], (cout,), "bias")
            args = dict(cin=cin, cout=cout, kernel=kernel, stride=stride, pad=pad, dilation=dil,
                        groups=groups, bias=bias)
            y = (x[0], cout, oh, ow)
        elif t == "Pooling":
            p = layer.param("pooling_param")
            method = _POOL.get(p.get("pool", 0))
            if method not in ("MAX", "AVE"):
                raise _fail(net, layer, f"pooling method {method or p.get('pool')} is not supported "
                            "(STOCHASTIC has no test-time CPU implementation in Caffe either)")
            glob = bool(p.get("global_pooling", False))
            ceil = p.get("round_mode", 0) == 0
            if p.get("round_mode", 0) not in (0, 1):
                raise _fail(net, layer, f"round_mode {p.get('round_mode')} is unknown")
            if glob:
                kernel, stride, pad = (x[2], x[3]), (1, 1), (0, 0)
                if p.has("kernel_size") or p.has("kernel_h") or p.get("pad", 0) or p.get("pad_h", 0) \
                        or p.get("stride", 1) != 1:
                    raise _fail(net, layer, "global_pooling cannot be combined with kernel, pad or stride")
            else:
                kernel = _pair(net, layer, p, "kernel_size", "kernel_h", "kernel_w", None, False)
                stride = _pair(net, layer, p, "stride", "stride_h", "stride_w", 1, False)
                pad = _pair(net, layer, p, "pad", "pad_h", "pad_w", 0, False)
                if min(kernel) < 1 or min(stride) < 1:
                    raise _fail(net, layer, f"kernel {kernel} and stride {stride} must be positive")
                if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
                    raise _fail(net, layer, f"pad {pad} must be smaller than the kernel {kernel} (as in Caffe)")
            oh = L.caffe_pool_size(x[2], kernel[0], stride[0], pad[0], ceil) if not glob else 1
            ow = L.caffe_pool_size(x[3], kernel[1], stride[1], pad[1], ceil) if not glob else 1
            if oh < 1 or ow < 1:
                raise _fail(net, layer, f"the kernel {kernel} is larger than its input {x[2:]} (input too small?)")
            args = dict(method=method, kernel=kernel, stride=stride, pad=pad, global_pooling=glob, ceil=ceil)
            y = (x[0], x[1], oh, ow)
        elif t == "LRN":
            p = layer.param("lrn_param")
            size = int(p.get("local_size", 5))
            if size < 1 or size % 2 == 0:
                raise _fail(net, layer, f"local_size {size} must be odd (as in Caffe)")
            region = p.get("norm_region", 0)
            if region not in (0, 1):
                raise _fail(net, layer, f"norm_region {region} is unknown")
            args = dict(size=size, alpha=float(p.get("alpha", 1.0)), beta=float(p.get("beta", 0.75)),
                        k=float(p.get("k", 1.0)), within=region == 1)
            y = x
        elif t == "ReLU":
            args = dict(negative_slope=float(layer.param("relu_param").get("negative_slope", 0.0)))
            y = x
        elif t == "Dropout":
            args = dict(p=float(layer.param("dropout_param").get("dropout_ratio", 0.5)))
            if not 0 <= args["p"] < 1:
                raise _fail(net, layer, f"dropout_ratio {args['p']} must be in [0, 1)")
            y = x
        elif t == "Softmax":
            args = dict(axis=_axis(int(layer.param("softmax_param").get("axis", 1)), len(x), net, layer))
            y = x
        elif t == "InnerProduct":
            p = layer.param("inner_product_param")
            axis = _axis(int(p.get("axis", 1)), len(x), net, layer)
            k = math.prod(x[axis:])
            n = int(p.get("num_output", 0))
            if n < 1:
                raise _fail(net, layer, "num_output must be positive")
            bias = bool(p.get("bias_term", True))
            transpose = bool(p.get("transpose", False))
            blobs = blobs_of(layer, 2 if bias else 1, 2 if bias else 1,
                             [(k, n) if transpose else (n, k), (n,)][:2 if bias else 1])
            if transpose:
                tensors[f"{module}.weight"] = _fit(net, layer, blobs[0], (k, n), "weight").T
            else:
                tensors[f"{module}.weight"] = _fit(net, layer, blobs[0], (n, k), "weight")
            if bias:
                tensors[f"{module}.bias"] = _fit(net, layer, blobs[1], (n,), "bias")
            args = dict(cin=k, cout=n, bias=bias, axis=axis)
            y = (*x[:axis], n)
        elif t == "Concat":
            p = layer.param("concat_param")
            axis = int(p.get("axis")) if p.has("axis") else int(p.get("concat_dim", 1))
            axis = _axis(axis, len(x), net, layer)
            for s in ins[1:]:
                if len(s) != len(x) or any(a != b for d, (a, b) in enumerate(zip(s, x)) if d != axis):
                    raise _fail(net, layer, f"inputs {ins} differ outside the concat axis {axis}")
            args = dict(axis=axis)
            y = (*x[:axis], sum(s[axis] for s in ins), *x[axis + 1:])
        elif t == "Eltwise":
            p = layer.param("eltwise_param")
            operation = _ELTWISE.get(p.get("operation", 1))
            if operation is None:
                raise _fail(net, layer, f"operation {p.get('operation')} is unknown")
            coeffs = p.all("coeff")
            if coeffs and (operation != "SUM" or len(coeffs) != len(ins)):
                raise _fail(net, layer, f"has {len(coeffs)} coeff for {len(ins)} inputs ({operation}); Caffe "
                            "allows one per input, for SUM only")
            if len(ins) < 2 or any(s != x for s in ins):
                raise _fail(net, layer, f"needs two or more inputs of one shape, got {ins}")
            args = dict(operation=operation, coeffs=[float(c) for c in coeffs] or None)
            y = x
        elif t == "Flatten":
            p = layer.param("flatten_param")
            a = _axis(int(p.get("axis", 1)), len(x), net, layer)
            e = _axis(int(p.get("end_axis", -1)), len(x), net, layer)
            if e < a:
                raise _fail(net, layer, f"end_axis {e} comes before axis {a}")
            args = dict(axis=a, end_axis=e)
            y = (*x[:a], math.prod(x[a:e + 1]), *x[e + 1:])
        elif t == "Split":
            y = x
        elif t == "BatchNorm":
            p = layer.param("batch_norm_param")
            c = x[1]
            blobs = blobs_of(layer, 3, 3, [(c,), (c,), (1,)])
            factor_blob = _fit(net, layer, blobs[2], (1,), "scale factor")
            s = float(factor_blob.reshape(-1)[0])
            factor = 0.0 if s == 0 else 1.0 / s
            mean = _fit(net, layer, blobs[0], (c,), "mean").astype(np.float32) * np.float32(factor)
            var = _fit(net, layer, blobs[1], (c,), "variance").astype(np.float32) * np.float32(factor)
            args = dict(channels=c, eps=float(p.get("eps", 1e-5)), affine=False)
            # Fold a Scale that alone reads this output (ResNet: both in place on the same blob).
            nxt = chosen[i + 1] if i + 1 < len(chosen) else None
            key = (layer.tops[0], i + 1)
            if (nxt is not None and nxt.type == "Scale" and nxt.bottoms == [layer.tops[0]]
                    and len(nxt.tops) == 1 and readers.get(key, 0) == 1):
                sp = nxt.param("scale_param")
                if sp.get("axis", 1) == 1 and sp.get("num_axes", 1) == 1:
                    sbias = bool(sp.get("bias_term", False))
                    sblobs = blobs_of(nxt, 2 if sbias else 1, 2 if sbias else 1, [(c,), (c,)][:2 if sbias else 1])
                    taken.discard(module)
                    module = sanitize(nxt.name, taken)
                    tensors[f"{module}.weight"] = _fit(net, nxt, sblobs[0], (c,), "scale")
                    tensors[f"{module}.bias"] = (_fit(net, nxt, sblobs[1], (c,), "bias") if sbias
                                                 else np.zeros(c, np.float32))
                    args["affine"] = True
                    folded = [layer.name, nxt.name]
                    name, op_type, tops = nxt.name, "BatchNorm+Scale", list(nxt.tops)
                    skip_next.add(i + 1)
            tensors[f"{module}.running_mean"] = mean
            tensors[f"{module}.running_var"] = var
            tensors[f"{module}.num_batches_tracked"] = np.zeros((), np.int64)
            y = x
        elif t == "Scale":
            p = layer.param("scale_param")
            if p.get("axis", 1) != 1 or p.get("num_axes", 1) != 1:
                raise _fail(net, layer, "scale_param axis/num_axes other than 1 are not supported")
            bias = bool(p.get("bias_term", False))
            blobs = blobs_of(layer, 2 if bias else 1, 2 if bias else 1, [(x[1],), (x[1],)][:2 if bias else 1])
            tensors[f"{module}.weight"] = _fit(net, layer, blobs[0], (x[1],), "scale")
            if bias:
                tensors[f"{module}.bias"] = _fit(net, layer, blobs[1], (x[1],), "bias")
            args = dict(channels=x[1], bias=bias)
            y = x
        else:  # pragma: no cover - SUPPORTED_TYPES and the branches agree
            raise AssertionError(t)
        for top in tops:
            shapes[top] = tuple(y)
        ops.append(Op(name=name, type=op_type, module=module, bottoms=list(layer.bottoms), tops=tops,
                      args=args, folded=folded))
    # Layer names first: a name that is a layer and a blob means the layer's output, as in OpenCV's
    # forward(name); a blob name alone means its final value (the last in-place writer), as in pycaffe.
    # A BatchNorm folded into its Scale has no output of its own: its name is deliberately absent.
    layer_names = {op.name for op in ops}
    modules = {op.module for op in ops}
    aliases = {op.name: op.module for op in ops if op.name != op.module}
    for op in ops:
        for top in op.tops:
            if top not in layer_names and top not in modules:
                aliases[top] = op.module
    classifier = ops[-1].module if has_classifier and ops[-1].type == "InnerProduct" else None
    return Plan(input_blob=input_blob, input_shape=list(input_shape), ops=ops, output=output,
                classifier=classifier, shapes={k: list(v) for k, v in shapes.items()}, aliases=aliases,
                source=net.path, tensors=tensors)


# -- modules -------------------------------------------------------------------------------------
def build_module(op: Op) -> nn.Module:
    """The torch module for one op (parameters uninitialised: weights are assigned afterwards)."""
    a, t = op.args, op.type
    if t == "Convolution":
        return nn.Conv2d(a["cin"], a["cout"], tuple(a["kernel"]), tuple(a["stride"]), tuple(a["pad"]),
                         tuple(a["dilation"]), a["groups"], a["bias"])
    if t == "Pooling":
        return L.CaffePool2d(a["method"], a["kernel"], a["stride"], a["pad"], global_pooling=a["global_pooling"],
                             ceil=a["ceil"])
    if t == "LRN":
        if a["within"]:
            return L.WithinChannelLRN(a["size"], a["alpha"], a["beta"])
        # torch divides alpha by size, as Caffe does: pass Caffe's alpha unchanged.
        return nn.LocalResponseNorm(a["size"], a["alpha"], a["beta"], a["k"])
    if t == "ReLU":
        return nn.LeakyReLU(a["negative_slope"]) if a["negative_slope"] else nn.ReLU()
    if t == "Dropout":
        return nn.Dropout(a["p"])
    if t == "Softmax":
        return nn.Softmax(dim=a["axis"])
    if t == "InnerProduct":
        return L.InnerProduct(a["cin"], a["cout"], a["bias"], a["axis"])
    if t == "Concat":
        return L.Concat(a["axis"])
    if t == "Eltwise":
        return L.Eltwise(a["operation"], a["coeffs"])
    if t == "Flatten":
        return nn.Flatten(a["axis"], a["end_axis"])
    if t == "Split":
        return L.Split()
    if t in ("BatchNorm", "BatchNorm+Scale"):
        return nn.BatchNorm2d(a["channels"], eps=a["eps"], affine=a["affine"])
    if t == "Scale":
        return L.Scale(a["channels"], a["bias"])
    raise CaffeError(f"layer {op.name!r}: type {t!r} is not supported by the converter")


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
            for t in tops:
                env[t] = out
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


def build_graph(plan: Plan, ops: list[Op] | None = None, output: str | None = None, *,
                flatten: bool = False) -> CaffeGraph:
    """A ``CaffeGraph`` of ``ops`` (default: all of the plan's) without weights (meta tensors)."""
    return CaffeGraph(plan.ops if ops is None else ops, plan.input_blob, output or plan.output, flatten=flatten)
