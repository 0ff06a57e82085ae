"""Rules for the Caffe layers that carry weights: Convolution, Deconvolution, InnerProduct, BatchNorm,
Scale, PReLU. Each ``resolve`` function checks the parameters, infers the output shape and claims the
blobs (see ``rule``); each ``build`` function makes the torch module. Caffe semantics: the project's
research notes on the Caffe format (§4); BatchNorm's stored statistics are divided by its third blob.

Imports numpy, torch and this package's ``rule`` and ``layers``; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import nn

from . import layers as L
from .rule import LayerContext, Resolved

__all__ = ["convolution", "deconvolution", "inner_product", "batch_norm", "scale", "prelu",
           "build_convolution", "build_deconvolution", "build_inner_product", "build_batch_norm", "build_scale",
           "build_prelu"]


def _conv_params(ctx: LayerContext) -> dict[str, Any]:
    """Convolution/Deconvolution parameters, checked against the input's channels."""
    p = ctx.param("convolution_param")
    if p.get("axis", 1) != 1:
        raise ctx.fail(f"convolution_param.axis {p.get('axis')} is not supported (only 1)")
    cout, groups, cin = int(p.get("num_output", 0)), int(p.get("group", 1)), ctx.x[1]
    kernel = ctx.pair(p, "kernel_size", "kernel_h", "kernel_w", None, True)
    stride = ctx.pair(p, "stride", "stride_h", "stride_w", 1, True)
    pad = ctx.pair(p, "pad", "pad_h", "pad_w", 0, True)
    dil = ctx.pair(p, "dilation", "dilation_h", "dilation_w", 1, True)
    if cout < 1 or groups < 1 or cin % groups or cout % groups:
        raise ctx.fail(f"num_output {cout} / group {groups} do not fit {cin} input channels")
    if min(kernel) < 1 or min(stride) < 1 or min(dil) < 1:
        raise ctx.fail(f"kernel {kernel}, stride {stride}, dilation {dil} must be positive")
    return dict(cin=cin, cout=cout, kernel=kernel, stride=stride, pad=pad, dilation=dil, groups=groups,
                bias=bool(p.get("bias_term", True)))


def _claim_weight_bias(ctx: LayerContext, weight_shape: tuple[int, ...], n: int, bias: bool) -> list[np.ndarray]:
    shapes = [weight_shape, (n,)] if bias else [weight_shape]
    arrays = ctx.claim(shapes, ["weight", "bias"][:len(shapes)])
    ctx.store("weight", arrays[0])
    if bias:
        ctx.store("bias", arrays[1])
    return arrays


def convolution(ctx: LayerContext) -> Resolved:
    """Caffe ``Convolution``: output size floor((size + 2p - (d(k-1)+1)) / s) + 1, as in torch."""
    a = _conv_params(ctx)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["pad"], a["dilation"]
    oh = (ctx.x[2] + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (ctx.x[3] + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    if oh < 1 or ow < 1:
        raise ctx.fail(f"the kernel {a['kernel']} (dilation {a['dilation']}) is larger than its padded input "
                       f"{ctx.x[2:]} (input too small?)")
    _claim_weight_bias(ctx, (a["cout"], a["cin"] // a["groups"], kh, kw), a["cout"], a["bias"])
    return Resolved(a, [(ctx.x[0], a["cout"], oh, ow)])


def build_convolution(a: dict[str, Any]) -> nn.Module:
    return nn.Conv2d(a["cin"], a["cout"], tuple(a["kernel"]), tuple(a["stride"]), tuple(a["pad"]),
                     tuple(a["dilation"]), a["groups"], a["bias"])


def deconvolution(ctx: LayerContext) -> Resolved:
    """Caffe ``Deconvolution`` (a transposed convolution): output size s(size - 1) + d(k-1)+1 - 2p; its
    weight blob is (C_in, num_output / group, kh, kw), the layout of ``nn.ConvTranspose2d``."""
    a = _conv_params(ctx)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = a["kernel"], a["stride"], a["pad"], a["dilation"]
    oh = sh * (ctx.x[2] - 1) + dh * (kh - 1) + 1 - 2 * ph
    ow = sw * (ctx.x[3] - 1) + dw * (kw - 1) + 1 - 2 * pw
    if oh < 1 or ow < 1:
        raise ctx.fail(f"pad {a['pad']} leaves no output for the input {ctx.x[2:]}")
    _claim_weight_bias(ctx, (a["cin"], a["cout"] // a["groups"], kh, kw), a["cout"], a["bias"])
    return Resolved(a, [(ctx.x[0], a["cout"], oh, ow)])


def build_deconvolution(a: dict[str, Any]) -> nn.Module:
    return nn.ConvTranspose2d(a["cin"], a["cout"], tuple(a["kernel"]), tuple(a["stride"]), tuple(a["pad"]),
                              groups=a["groups"], bias=a["bias"], dilation=tuple(a["dilation"]))


def inner_product(ctx: LayerContext) -> Resolved:
    """Caffe ``InnerProduct``: every axis from ``axis`` on flattened (C order), then ``x W^T + b``."""
    p = ctx.param("inner_product_param")
    axis = ctx.axis(int(p.get("axis", 1)))
    k = int(np.prod(ctx.x[axis:]))
    n = int(p.get("num_output", 0))
    if n < 1:
        raise ctx.fail("num_output must be positive")
    bias, transpose = bool(p.get("bias_term", True)), bool(p.get("transpose", False))
    shapes = [(k, n) if transpose else (n, k), (n,)][:2 if bias else 1]
    arrays = ctx.claim(shapes, ["weight", "bias"][:len(shapes)])
    ctx.store("weight", arrays[0].T if transpose else arrays[0])
    if bias:
        ctx.store("bias", arrays[1])
    return Resolved(dict(cin=k, cout=n, bias=bias, axis=axis), [(*ctx.x[:axis], n)])


def build_inner_product(a: dict[str, Any]) -> nn.Module:
    return L.InnerProduct(a["cin"], a["cout"], a["bias"], a["axis"])


def batch_norm(ctx: LayerContext) -> Resolved:
    """Caffe ``BatchNorm`` at test time: the stored mean and variance divided by the stored factor (its
    third blob; 0 means 0). The affine part is a separate ``Scale`` layer, folded in later when it alone
    reads this output."""
    c = ctx.x[1]
    mean, var, factor_blob = ctx.claim([(c,), (c,), (1,)], ["mean", "variance", "scale factor"])
    s = float(factor_blob.reshape(-1)[0])
    factor = np.float32(0.0 if s == 0 else 1.0 / s)
    ctx.store("running_mean", mean.astype(np.float32) * factor)
    ctx.store("running_var", var.astype(np.float32) * factor)
    ctx.store("num_batches_tracked", np.zeros((), np.int64))
    eps = float(ctx.param("batch_norm_param").get("eps", 1e-5))
    return Resolved(dict(channels=c, eps=eps, affine=False), [ctx.x])


def build_batch_norm(a: dict[str, Any]) -> nn.Module:
    return nn.BatchNorm2d(a["channels"], eps=a["eps"], affine=a["affine"])


def scale(ctx: LayerContext) -> Resolved:
    """Caffe ``Scale`` with one input and learned factors over axis 1: ``x * gamma (+ beta)``."""
    p = ctx.param("scale_param")
    if p.get("axis", 1) != 1 or p.get("num_axes", 1) != 1:
        raise ctx.fail("scale_param axis/num_axes other than 1 are not supported")
    c, bias = ctx.x[1], bool(p.get("bias_term", False))
    _claim_weight_bias(ctx, (c,), c, bias)
    return Resolved(dict(channels=c, bias=bias), [ctx.x])


def build_scale(a: dict[str, Any]) -> nn.Module:
    return L.Scale(a["channels"], a["bias"])


def prelu(ctx: LayerContext) -> Resolved:
    """Caffe ``PReLU``: ``max(0, x) + a * min(0, x)`` with one slope per channel (axis 1), or one for
    all channels when ``channel_shared``."""
    shared = bool(ctx.param("prelu_param").get("channel_shared", False))
    n = 1 if shared else ctx.x[1]
    (slopes,) = ctx.claim([(n,)], ["slopes"])
    ctx.store("weight", slopes)
    return Resolved(dict(num_parameters=n), [ctx.x])


def build_prelu(a: dict[str, Any]) -> nn.Module:
    return nn.PReLU(a["num_parameters"])
