"""Rules for the Caffe layers without weights: pooling and normalisation (Pooling, LRN), joining and
splitting blobs (Concat, Eltwise, Split, Slice, Crop), reshaping (Flatten, Reshape), resizing (Interp),
and the element-wise activations (ReLU, PReLU's weightless cousins, Power, ...). Each ``resolve``
function checks parameters and infers shapes (see ``rule``); ``build`` functions make the modules.

Imports torch and this package's ``rule``, ``layers`` and ``fields``; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from . import layers as L
from .fields import ENUMS
from .rule import LayerContext, Resolved

__all__ = ["pooling", "lrn", "concat", "eltwise", "flatten", "reshape", "slice_", "crop", "interp", "split",
           "softmax", "dropout", "relu", "elu", "power", "same_shape", "build_pooling", "build_lrn"]

_POOL = {v: k for k, v in ENUMS["PoolMethod"].items()}
_ELTWISE = {v: k for k, v in ENUMS["EltwiseOp"].items()}


def same_shape(ctx: LayerContext) -> Resolved:
    """A layer whose output has its input's shape and that takes no parameters (Sigmoid, TanH, AbsVal,
    BNLL, Split)."""
    return Resolved({}, [ctx.x] * len(ctx.layer.tops))


def _pool_window(ctx: LayerContext, p, glob: bool):
    if glob:
        if p.has("kernel_size") or p.has("kernel_h") or p.get("pad", 0) or p.get("pad_h", 0) or p.get("stride", 1) != 1:
            raise ctx.fail("global_pooling cannot be combined with kernel, pad or stride")
        return (ctx.x[2], ctx.x[3]), (1, 1), (0, 0)
    kernel = ctx.pair(p, "kernel_size", "kernel_h", "kernel_w", None, False)
    stride = ctx.pair(p, "stride", "stride_h", "stride_w", 1, False)
    pad = ctx.pair(p, "pad", "pad_h", "pad_w", 0, False)
    if min(kernel) < 1 or min(stride) < 1:
        raise ctx.fail(f"kernel {kernel} and stride {stride} must be positive")
    if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
        raise ctx.fail(f"pad {pad} must be smaller than the kernel {kernel} (as in Caffe)")
    return kernel, stride, pad


def pooling(ctx: LayerContext) -> Resolved:
    """Caffe ``Pooling``: MAX or AVE, ceil rounding unless ``round_mode: FLOOR`` (``layers.CaffePool2d``)."""
    p = ctx.param("pooling_param")
    method = _POOL.get(p.get("pool", 0))
    if method not in ("MAX", "AVE"):
        raise ctx.fail(f"pooling method {method or p.get('pool')} is not supported "
                       "(STOCHASTIC has no test-time CPU implementation in Caffe either)")
    if p.get("round_mode", 0) not in (0, 1):
        raise ctx.fail(f"round_mode {p.get('round_mode')} is unknown")
    glob, ceil = bool(p.get("global_pooling", False)), p.get("round_mode", 0) == 0
    kernel, stride, pad = _pool_window(ctx, p, glob)
    oh = 1 if glob else L.caffe_pool_size(ctx.x[2], kernel[0], stride[0], pad[0], ceil)
    ow = 1 if glob else L.caffe_pool_size(ctx.x[3], kernel[1], stride[1], pad[1], ceil)
    if oh < 1 or ow < 1:
        raise ctx.fail(f"the kernel {kernel} is larger than its input {ctx.x[2:]} (input too small?)")
    args = dict(method=method, kernel=kernel, stride=stride, pad=pad, global_pooling=glob, ceil=ceil)
    return Resolved(args, [(ctx.x[0], ctx.x[1], oh, ow)])


def build_pooling(a: dict[str, Any]) -> nn.Module:
    return L.CaffePool2d(a["method"], a["kernel"], a["stride"], a["pad"], global_pooling=a["global_pooling"],
                         ceil=a["ceil"])


def lrn(ctx: LayerContext) -> Resolved:
    """Caffe ``LRN``, ACROSS_CHANNELS (torch's own, which divides alpha by the size as Caffe does) or
    WITHIN_CHANNEL (``layers.WithinChannelLRN``)."""
    p = ctx.param("lrn_param")
    size = int(p.get("local_size", 5))
    if size < 1 or size % 2 == 0:
        raise ctx.fail(f"local_size {size} must be odd (as in Caffe)")
    region = p.get("norm_region", 0)
    if region not in (0, 1):
        raise ctx.fail(f"norm_region {region} is unknown")
    args = dict(size=size, alpha=float(p.get("alpha", 1.0)), beta=float(p.get("beta", 0.75)),
                k=float(p.get("k", 1.0)), within=region == 1)
    return Resolved(args, [ctx.x])


def build_lrn(a: dict[str, Any]) -> nn.Module:
    if a["within"]:
        return L.WithinChannelLRN(a["size"], a["alpha"], a["beta"])
    return nn.LocalResponseNorm(a["size"], a["alpha"], a["beta"], a["k"])


def concat(ctx: LayerContext) -> Resolved:
    """Caffe ``Concat`` along ``axis`` (or the legacy ``concat_dim``)."""
    p = ctx.param("concat_param")
    axis = ctx.axis(int(p.get("axis")) if p.has("axis") else int(p.get("concat_dim", 1)))
    for s in ctx.ins[1:]:
        if len(s) != len(ctx.x) or any(a != b for d, (a, b) in enumerate(zip(s, ctx.x)) if d != axis):
            raise ctx.fail(f"inputs {ctx.ins} differ outside the concat axis {axis}")
    y = (*ctx.x[:axis], sum(s[axis] for s in ctx.ins), *ctx.x[axis + 1:])
    return Resolved(dict(axis=axis), [y])


def eltwise(ctx: LayerContext) -> Resolved:
    """Caffe ``Eltwise``: SUM (with one optional coefficient per input), PROD or MAX."""
    p = ctx.param("eltwise_param")
    operation = _ELTWISE.get(p.get("operation", 1))
    if operation is None:
        raise ctx.fail(f"operation {p.get('operation')} is unknown")
    coeffs = p.all("coeff")
    if coeffs and (operation != "SUM" or len(coeffs) != len(ctx.ins)):
        raise ctx.fail(f"has {len(coeffs)} coeff for {len(ctx.ins)} inputs ({operation}); Caffe allows one per "
                       "input, for SUM only")
    if any(s != ctx.x for s in ctx.ins):
        raise ctx.fail(f"needs inputs of one shape, got {ctx.ins}")
    return Resolved(dict(operation=operation, coeffs=[float(c) for c in coeffs] or None), [ctx.x])


def flatten(ctx: LayerContext) -> Resolved:
    """Caffe ``Flatten``: axes ``axis`` to ``end_axis`` (inclusive) become one."""
    p = ctx.param("flatten_param")
    a, e = ctx.axis(int(p.get("axis", 1))), ctx.axis(int(p.get("end_axis", -1)))
    if e < a:
        raise ctx.fail(f"end_axis {e} comes before axis {a}")
    return Resolved(dict(axis=a, end_axis=e), [(*ctx.x[:a], math.prod(ctx.x[a:e + 1]), *ctx.x[e + 1:])])


def reshape(ctx: LayerContext) -> Resolved:
    """Caffe ``Reshape``: the axes ``[axis, axis + num_axes)`` become ``shape``'s dims, where 0 copies the
    input's dim and one -1 is inferred. The batch axis must be kept (0) or inferred (-1)."""
    p = ctx.param("reshape_param")
    dims = [int(d) for d in p.msg("shape").all("dim")]
    axis, num_axes, n = int(p.get("axis", 0)), int(p.get("num_axes", -1)), len(ctx.x)
    start = axis if axis >= 0 else n + axis + 1
    end = n if num_axes == -1 else start + num_axes
    if not 0 <= start <= end <= n or num_axes < -1:
        raise ctx.fail(f"axis {axis} / num_axes {num_axes} do not fit a {n}-D input")
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        raise ctx.fail(f"shape {dims}: at most one -1 and no other negative dim (as in Caffe)")
    if start == 0 and dims and dims[0] > 0:
        raise ctx.fail(f"shape {dims} fixes the batch size to {dims[0]}; write dim: 0 to keep it")
    args = dict(dims=dims, start=start, end=end)
    try:
        y = L.Reshape.target(ctx.x, dims, start, end)
    except ValueError as err:
        raise ctx.fail(f"cannot reshape {ctx.x} to {dims}: {err}") from None
    return Resolved(args, [y])


def slice_(ctx: LayerContext) -> Resolved:
    """Caffe ``Slice``: the input cut along ``axis`` (or legacy ``slice_dim``) at the ``slice_point``s,
    or into equal parts, one per top."""
    p = ctx.param("slice_param")
    axis = ctx.axis(int(p.get("slice_dim")) if p.has("slice_dim") and not p.has("axis") else int(p.get("axis", 1)))
    size, tops, points = ctx.x[axis], len(ctx.layer.tops), [int(v) for v in p.all("slice_point")]
    if points:
        if len(points) != tops - 1 or points != sorted(set(points)) or not 0 < points[0] or points[-1] >= size:
            raise ctx.fail(f"slice_point {points} must be {tops - 1} increasing points inside (0, {size})")
        edges = [0, *points, size]
    elif size % tops:
        raise ctx.fail(f"cannot cut {size} into {tops} equal parts; give slice_point")
    else:
        edges = [i * size // tops for i in range(tops + 1)]
    sizes = [b - a for a, b in zip(edges, edges[1:])]
    shapes = [(*ctx.x[:axis], s, *ctx.x[axis + 1:]) for s in sizes]
    return Resolved(dict(axis=axis, sizes=sizes), shapes)


def crop(ctx: LayerContext) -> Resolved:
    """Caffe ``Crop``: the first input cut to the second's shape from ``axis`` on, at ``offset`` (none:
    0; one: for every cropped axis; else one per cropped axis)."""
    p = ctx.param("crop_param")
    (x, ref), axis = ctx.ins, ctx.axis(int(p.get("axis", 2)))
    if len(ref) != len(x):
        raise ctx.fail(f"crops a {len(x)}-D input to a {len(ref)}-D reference; they must have the same rank")
    given = [int(v) for v in p.all("offset")]
    cropped = len(x) - axis
    if len(given) not in (0, 1, cropped):
        raise ctx.fail(f"has {len(given)} offsets for {cropped} cropped axes (give 0, 1 or {cropped})")
    offsets = given * cropped if len(given) == 1 else given or [0] * cropped
    for i, off in enumerate(offsets):
        if off + ref[axis + i] > x[axis + i]:
            raise ctx.fail(f"offset {off} + size {ref[axis + i]} exceeds the input's axis {axis + i} ({x[axis + i]})")
    return Resolved(dict(axis=axis, offsets=offsets), [(*x[:axis], *ref[axis:])])


def interp(ctx: LayerContext) -> Resolved:
    """``Interp`` (DeepLab, PSPNet): bilinear resizing with aligned corners to ``height``/``width``, or by
    ``zoom_factor`` (size + (size - 1)(zoom - 1))."""
    p = ctx.param("interp_param")
    if p.get("shrink_factor") or p.get("pad_beg", 0) or p.get("pad_end", 0):
        raise ctx.fail("shrink_factor, pad_beg and pad_end are not supported; give height/width or zoom_factor")
    h, w = ctx.x[2:]
    if p.has("height") or p.has("width"):
        size = (int(p.get("height", 0)), int(p.get("width", 0)))
    elif p.has("zoom_factor"):
        z = int(p.get("zoom_factor"))
        size = (h + (h - 1) * (z - 1), w + (w - 1) * (z - 1))
    else:
        raise ctx.fail("needs height and width, or zoom_factor (in the deploy .prototxt: binary files number "
                       "interp_param differently across forks)")
    if min(size) < 1:
        raise ctx.fail(f"output size {size} must be positive")
    return Resolved(dict(size=size), [(*ctx.x[:2], *size)])


def split(ctx: LayerContext) -> Resolved:
    return same_shape(ctx)


def softmax(ctx: LayerContext) -> Resolved:
    return Resolved(dict(axis=ctx.axis(int(ctx.param("softmax_param").get("axis", 1)))), [ctx.x])


def dropout(ctx: LayerContext) -> Resolved:
    """Caffe ``Dropout``: the identity at test time (torch's, in eval mode)."""
    ratio = float(ctx.param("dropout_param").get("dropout_ratio", 0.5))
    if not 0 <= ratio < 1:
        raise ctx.fail(f"dropout_ratio {ratio} must be in [0, 1)")
    return Resolved(dict(p=ratio), [ctx.x])


def relu(ctx: LayerContext) -> Resolved:
    return Resolved(dict(negative_slope=float(ctx.param("relu_param").get("negative_slope", 0.0))), [ctx.x])


def elu(ctx: LayerContext) -> Resolved:
    return Resolved(dict(alpha=float(ctx.param("elu_param").get("alpha", 1.0))), [ctx.x])


def power(ctx: LayerContext) -> Resolved:
    """Caffe ``Power``: ``(shift + scale * x) ** power``."""
    p = ctx.param("power_param")
    args = dict(power=float(p.get("power", 1.0)), scale=float(p.get("scale", 1.0)), shift=float(p.get("shift", 0.0)))
    return Resolved(args, [ctx.x])
