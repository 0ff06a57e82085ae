"""What every per-layer rule of the converter shares: ``Rule``, ``Resolved`` and ``LayerContext``.

A rule turns one Caffe layer into one op of the converted graph. Its ``resolve`` function checks the
layer's parameters, infers the shape of every top blob, claims the layer's weight blobs (checked and
reshaped, or freshly initialised for a net built from its prototxt alone) and returns the arguments
its ``build`` function needs to make the torch module. The context a rule works in (the layer, its
input shapes, the weights, the error helper) is a ``LayerContext``; ``rules`` holds the table.

Imports numpy, torch (for the modules' type), ``zoo.errors`` and this package's readers; never
``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from ..errors import CaffeError
from .proto import Blob, Layer, Message, NetSpec

__all__ = ["Rule", "Resolved", "LayerContext", "WeightSource", "fail"]

Shape = tuple[int, ...]


def fail(net: NetSpec, layer: Layer | None, what: str) -> CaffeError:
    """The converter's one error form: ``<file>: layer 'name' (Type): what is wrong``."""
    where = f"layer {layer.name!r} ({layer.type})" if layer is not None else "the net"
    return CaffeError(f"{net.path or 'net'}: {where}: {what}")


@dataclass(frozen=True)
class Resolved:
    """A resolved layer: the ``build`` arguments (plain, JSON-able) and one shape per top blob."""

    args: dict[str, Any]
    shapes: list[Shape]


@dataclass(frozen=True)
class Rule:
    """How the converter handles one Caffe layer type.

    ``resolve`` checks, infers shapes and claims blobs; ``build`` makes the module from the resolved
    arguments (on the meta device: real weights are assigned afterwards). ``bottoms`` and ``tops``
    are the (least, most) blob counts the type takes, ``None`` meaning no upper bound; ``ndim`` lists
    the input ranks it accepts (``None``: any).
    """

    resolve: Callable[[LayerContext], Resolved]
    build: Callable[[dict[str, Any]], nn.Module]
    bottoms: tuple[int, int | None] = (1, 1)
    tops: tuple[int, int | None] = (1, 1)
    ndim: tuple[int, ...] | None = None


@dataclass
class WeightSource:
    """Where weight blobs come from: the weights file's layers by name, or fresh ones from ``init``."""

    layers: dict[str, Layer]
    init: int | None = None  # seed for fresh weights (a net from its prototxt alone), or None


@dataclass
class LayerContext:
    """One layer being resolved: its input shapes, its module name and the weights it may claim."""

    net: NetSpec
    layer: Layer
    ins: list[Shape]
    module: str
    weights: WeightSource
    tensors: dict[str, np.ndarray] = field(default_factory=dict)  # "<module>.<param>" -> array

    @property
    def x(self) -> Shape:
        """The first input's shape (N = 1)."""
        return self.ins[0]

    def fail(self, what: str) -> CaffeError:
        return fail(self.net, self.layer, what)

    def param(self, name: str) -> Message:
        """A parameter sub-message of the layer (all defaults when absent)."""
        return self.layer.param(name)

    def axis(self, axis: int, ndim: int | None = None) -> int:
        """A Caffe axis (negative counts from the end) as an index into a ``ndim``-D shape."""
        ndim = len(self.x) if ndim is None else ndim
        a = axis + ndim if axis < 0 else axis
        if not 0 <= a < ndim:
            raise self.fail(f"axis {axis} is out of range for a {ndim}-D input")
        return a

    def pair(self, p: Message, single: str, h: str, w: str, default: int | None,
             repeated: bool) -> tuple[int, int]:
        """A 2-D size given once for both axes, once per axis, or as ``<name>_h``/``<name>_w``."""
        if p.has(h) or p.has(w):
            if not (p.has(h) and p.has(w)):
                raise self.fail(f"sets only one of {h}/{w}")
            return int(p.get(h)), int(p.get(w))
        values = p.all(single) if repeated else ([p.get(single)] if p.has(single) else [])
        if not values:
            if default is None:
                raise self.fail(f"has no {single}")
            return default, default
        if len(values) == 1:
            return int(values[0]), int(values[0])
        if len(values) == 2:
            return int(values[0]), int(values[1])
        raise self.fail(f"has {len(values)} {single} values; only 2-D layers are supported")

    def claim(self, shapes: list[Shape], names: list[str]) -> list[np.ndarray]:
        """The layer's weight blobs, one per wanted shape, checked and reshaped to it.

        Raises:
            CaffeError: no blobs of that layer name, a different type, count or shape.
        """
        src = self.weights.layers.get(self.layer.name)
        if src is None and self.weights.init is not None:
            blobs = [_init_blob(self.weights.init, self.layer.type, i, s) for i, s in enumerate(shapes)]
        elif src is None:
            raise self.fail("has no weights (no layer of that name in the weights file holds blobs)")
        elif src.type != self.layer.type:
            raise self.fail(f"matches a {src.type} layer of the weights file by name; types differ")
        elif len(src.blobs) != len(shapes):
            raise self.fail(f"has {len(src.blobs)} weight blobs; expected {len(shapes)}")
        else:
            blobs = src.blobs
        return [self._fit(b, s, what) for b, s, what in zip(blobs, shapes, names)]

    def store(self, key: str, array: np.ndarray) -> None:
        """Keep ``array`` as the module's parameter or buffer ``key``."""
        self.tensors[f"{self.module}.{key}"] = array

    def _fit(self, blob: Blob, want: Shape, what: str) -> np.ndarray:
        """The blob's data reshaped to ``want``; legacy 4-D dims pad with leading 1s, so compare without them."""
        if _strip(blob.shape) != _strip(want):
            raise self.fail(f"{what} has shape {tuple(blob.shape)} in the weights but the net needs {want}; the "
                            "weights do not belong to this net definition")
        return blob.data.reshape(want)


def _strip(shape) -> Shape:
    s = tuple(shape)
    while len(s) > 1 and s[0] == 1:
        s = s[1:]
    return s


def _init_blob(seed: int, type_: str, index: int, shape: Shape) -> Blob:
    """A fresh blob: He-normal weights, zero biases, identity BatchNorm/Scale, PReLU slopes 0.25
    (Caffe's default filler for PReLU)."""
    n = math.prod(shape)
    if type_ in ("Convolution", "Deconvolution", "InnerProduct") and index == 0:
        rng = np.random.default_rng([seed, *shape])
        fan_in = math.prod(shape[1:]) or 1
        data = (rng.standard_normal(n) * math.sqrt(2.0 / fan_in)).astype(np.float32)
    elif (type_, index) in (("BatchNorm", 1), ("BatchNorm", 2), ("Scale", 0)):
        data = np.ones(n, np.float32)  # BN variance and scale factor, Scale gamma
    elif type_ == "PReLU":
        data = np.full(n, 0.25, np.float32)
    else:
        data = np.zeros(n, np.float32)
    return Blob(tuple(shape), data)
