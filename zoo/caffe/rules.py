"""The converter's table: one ``Rule`` per Caffe layer type it supports.

To support a new layer type, write its ``resolve`` function (check parameters, infer shapes, claim
blobs; see ``rule.LayerContext``) in ``rules_weighted`` (layers with weights) or ``rules_shape``,
give it a ``build`` function or a module class, add one line here, and one parity test against
OpenCV's Caffe runtime in ``tests/caffe``.

Imports torch and this package's rule modules; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

from torch import nn

from . import layers as L
from . import rules_shape as S
from . import rules_weighted as W
from .rule import Rule

__all__ = ["RULES", "SUPPORTED_TYPES"]

_SPATIAL = (4,)  # N, C, H, W

RULES: dict[str, Rule] = {
    # layers with weights
    "Convolution": Rule(W.convolution, W.build_convolution, ndim=_SPATIAL),
    "Deconvolution": Rule(W.deconvolution, W.build_deconvolution, ndim=_SPATIAL),
    "InnerProduct": Rule(W.inner_product, W.build_inner_product),
    "BatchNorm": Rule(W.batch_norm, W.build_batch_norm, ndim=_SPATIAL),
    "Scale": Rule(W.scale, W.build_scale, ndim=(2, 3, 4, 5)),
    "PReLU": Rule(W.prelu, W.build_prelu, ndim=(2, 3, 4, 5)),
    # pooling, normalisation
    "Pooling": Rule(S.pooling, S.build_pooling, ndim=_SPATIAL),
    "LRN": Rule(S.lrn, S.build_lrn, ndim=_SPATIAL),
    # joining, splitting, reshaping, resizing
    "Concat": Rule(S.concat, lambda a: L.Concat(a["axis"]), bottoms=(1, None)),
    "Eltwise": Rule(S.eltwise, lambda a: L.Eltwise(a["operation"], a["coeffs"]), bottoms=(2, None)),
    "Split": Rule(S.split, lambda a: L.Split(), tops=(1, None)),
    "Slice": Rule(S.slice_, lambda a: L.Slice(a["axis"], a["sizes"]), tops=(1, None)),
    "Crop": Rule(S.crop, lambda a: L.Crop(a["axis"], a["offsets"]), bottoms=(2, 2)),
    "Flatten": Rule(S.flatten, lambda a: nn.Flatten(a["axis"], a["end_axis"])),
    "Reshape": Rule(S.reshape, lambda a: L.Reshape(a["dims"], a["start"], a["end"])),
    "Interp": Rule(S.interp, lambda a: L.Interp(a["size"]), ndim=_SPATIAL),
    # element-wise
    "ReLU": Rule(S.relu, lambda a: nn.LeakyReLU(a["negative_slope"]) if a["negative_slope"] else nn.ReLU()),
    "ELU": Rule(S.elu, lambda a: nn.ELU(a["alpha"])),
    "Sigmoid": Rule(S.same_shape, lambda a: nn.Sigmoid()),
    "TanH": Rule(S.same_shape, lambda a: nn.Tanh()),
    "AbsVal": Rule(S.same_shape, lambda a: L.AbsVal()),
    # Caffe's BNLL is log(1 + e^x); softplus equals it to float precision (it returns x beyond 20).
    "BNLL": Rule(S.same_shape, lambda a: nn.Softplus()),
    "Power": Rule(S.power, lambda a: L.Power(a["power"], a["scale"], a["shift"])),
    "Dropout": Rule(S.dropout, lambda a: nn.Dropout(a["p"])),
    "Softmax": Rule(S.softmax, lambda a: nn.Softmax(dim=a["axis"])),
}

SUPPORTED_TYPES = tuple(RULES)
