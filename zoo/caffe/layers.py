"""PyTorch modules for the Caffe layers whose semantics no torch builtin reproduces exactly.

Owns: ``CaffePool2d`` (Caffe's output size: ceil rounding by default, the last-window clip applied
only when pad > 0, AVE divisor counting padding but not the ceil overhang), ``WithinChannelLRN``,
``InnerProduct`` (flattens from ``axis`` like Caffe), ``Concat``, ``Eltwise``, ``Scale``, ``Split``,
``Slice`` (several outputs), ``Crop``, ``Reshape`` (Caffe's 0 and -1 dims, worked out per batch),
``Interp``, ``Power`` and ``AbsVal``. Imports torch only; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["caffe_pool_size", "CaffePool2d", "WithinChannelLRN", "InnerProduct", "Concat", "Eltwise",
           "Scale", "Split", "Slice", "Crop", "Reshape", "Interp", "Power", "AbsVal"]

_FLT_MAX = 3.4028234663852886e38


def caffe_pool_size(size: int, kernel: int, stride: int, pad: int, ceil: bool = True) -> int:
    """Caffe's pooled length (``PoolingLayer::Reshape``): ceil (or floor) of (size + 2p - k)/s, plus one,
    then, only when pad > 0, drop a last window that would start beyond size + pad."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class CaffePool2d(nn.Module):
    """MAX or AVE pooling with Caffe's arithmetic (see ``caffe_pool_size``).

    The input is padded explicitly (``-inf`` for MAX, zeros for AVE) far enough for every window,
    pooled without padding, and trimmed to Caffe's size; AVE divides the window sums by Caffe's
    divisor ``(min(start + k, size + pad) - start)`` per axis, which counts the padding but not the
    ceil overhang. This also covers pad > kernel/2, which torch's own pooling refuses.
    """

    def __init__(self, method: str, kernel: tuple[int, int], stride: tuple[int, int], pad: tuple[int, int],
                 *, global_pooling: bool = False, ceil: bool = True):
        super().__init__()
        if method not in ("MAX", "AVE"):
            raise ValueError(f"pooling method must be MAX or AVE, got {method}")
        self.method, self.kernel, self.stride, self.pad = method, tuple(kernel), tuple(stride), tuple(pad)
        self.global_pooling, self.ceil = global_pooling, ceil

    def extra_repr(self) -> str:
        if self.global_pooling:
            return f"{self.method}, global"
        return (f"{self.method}, kernel={self.kernel}, stride={self.stride}, pad={self.pad}, "
                f"round={'ceil' if self.ceil else 'floor'}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.global_pooling:
            return x.amax(dim=(-2, -1), keepdim=True) if self.method == "MAX" else x.mean(dim=(-2, -1), keepdim=True)
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad
        h, w = x.shape[-2:]
        oh = caffe_pool_size(h, kh, sh, ph, self.ceil)
        ow = caffe_pool_size(w, kw, sw, pw, self.ceil)
        # Right/bottom padding so that the last window fits; negative means the tail is unused.
        rh = max(0, (oh - 1) * sh + kh - h - ph)
        rw = max(0, (ow - 1) * sw + kw - w - pw)
        if self.method == "MAX":
            xp = F.pad(x, (pw, rw, ph, rh), value=-math.inf) if (pw or rw or ph or rh) else x
            out = F.max_pool2d(xp, (kh, kw), (sh, sw))[..., :oh, :ow]
            # A window wholly outside the input (stride > kernel, pad 0) is -FLT_MAX in Caffe.
            return out.clamp_min(-_FLT_MAX) if (rh or rw) else out
        xp = F.pad(x, (pw, rw, ph, rh)) if (pw or rw or ph or rh) else x
        # The padding is explicit, so every window holds kh*kw values: the mean times kh*kw is the sum.
        # (Not divisor_override=1: the ONNX exporters drop that argument without a word.)
        sums = (F.avg_pool2d(xp, (kh, kw), (sh, sw)) * (kh * kw))[..., :oh, :ow]
        return sums / self._divisor(h, w, oh, ow, x)

    def _divisor(self, h: int, w: int, oh: int, ow: int, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw), (ph, pw) = self.kernel, self.stride, self.pad

        def axis(n: int, size: int, k: int, s: int, p: int) -> torch.Tensor:
            start = torch.arange(n, device=x.device, dtype=x.dtype) * s - p
            return torch.clamp(start + k, max=size + p) - start

        return axis(oh, h, kh, sh, ph)[:, None] * axis(ow, w, kw, sw, pw)[None, :]


class WithinChannelLRN(nn.Module):
    """Caffe LRN with ``norm_region: WITHIN_CHANNEL``: ``x * (1 + alpha * avg(x^2))^-beta`` where avg
    is an n x n AVE pooling with pad (n-1)/2 (its divisor is always n*n at stride 1). Caffe ignores k
    here (the shift is fixed at 1)."""

    def __init__(self, size: int, alpha: float, beta: float):
        super().__init__()
        self.size, self.alpha, self.beta = size, alpha, beta

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.size - 1) // 2
        avg = F.avg_pool2d(x * x, self.size, 1, pad, count_include_pad=True)
        return x * (1.0 + self.alpha * avg).pow(-self.beta)


class InnerProduct(nn.Linear):
    """Caffe ``InnerProduct``: flattens every axis from ``axis`` on (C-order, as Caffe), then ``x W^T + b``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, axis: int = 1,
                 device=None, dtype=None):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim > self.axis + 1:
            x = x.flatten(self.axis)
        return F.linear(x, self.weight, self.bias)


class Concat(nn.Module):
    """Concatenate the inputs along ``axis`` (Caffe ``Concat``)."""

    def __init__(self, axis: int = 1):
        super().__init__()
        self.axis = axis

    def extra_repr(self) -> str:
        return f"axis={self.axis}"

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return torch.cat(xs, dim=self.axis)


class Eltwise(nn.Module):
    """Element-wise SUM (with optional per-input coefficients), PROD or MAX (Caffe ``Eltwise``)."""

    def __init__(self, operation: str, coeffs: list[float] | None = None):
        super().__init__()
        self.operation, self.coeffs = operation, list(coeffs) if coeffs else None

    def extra_repr(self) -> str:
        return f"{self.operation}" + (f", coeffs={self.coeffs}" if self.coeffs else "")

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.operation == "SUM":
            if self.coeffs:
                out = xs[0] * self.coeffs[0]
                for c, x in zip(self.coeffs[1:], xs[1:]):
                    out = out + c * x
                return out
            out = xs[0]
            for x in xs[1:]:
                out = out + x
            return out
        out = xs[0]
        for x in xs[1:]:
            out = out * x if self.operation == "PROD" else torch.maximum(out, x)
        return out


class Scale(nn.Module):
    """Caffe ``Scale`` with one input: ``x * gamma (+ beta)``, broadcast over axis 1."""

    def __init__(self, channels: int, bias: bool, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(channels, device=device, dtype=dtype)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        out = x * self.weight.view(shape)
        return out + self.bias.view(shape) if self.bias is not None else out


class Split(nn.Identity):
    """Caffe ``Split``: the same tensor under several blob names (the graph fans it out)."""


class Slice(nn.Module):
    """Caffe ``Slice``: the input cut along ``axis`` into pieces of ``sizes``; returns a tuple (one per top)."""

    def __init__(self, axis: int, sizes: list[int]):
        super().__init__()
        self.axis, self.sizes = axis, list(sizes)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, sizes={self.sizes}"

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(torch.split(x, self.sizes, dim=self.axis))


class Crop(nn.Module):
    """Caffe ``Crop``: ``x`` cut to ``reference``'s size on every axis from ``axis`` on, at ``offsets``."""

    def __init__(self, axis: int, offsets: list[int]):
        super().__init__()
        self.axis, self.offsets = axis, list(offsets)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, offsets={self.offsets}"

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        for i, off in enumerate(self.offsets):
            x = x.narrow(self.axis + i, off, reference.shape[self.axis + i])
        return x


class Reshape(nn.Module):
    """Caffe ``Reshape``: axes ``[start, end)`` become ``dims`` (0 copies the input's dim, one -1 is
    inferred), worked out from each input's own shape so any batch size passes."""

    def __init__(self, dims: list[int], start: int, end: int):
        super().__init__()
        self.dims, self.start, self.end = list(dims), start, end

    def extra_repr(self) -> str:
        return f"dims={self.dims}, axes=[{self.start}, {self.end})"

    @staticmethod
    def target(shape: tuple[int, ...], dims: list[int], start: int, end: int) -> tuple[int, ...]:
        """The output shape (raises ValueError when the sizes do not work out)."""
        new = [shape[start + i] if d == 0 else d for i, d in enumerate(dims)]
        if any(d == 0 and start + i >= len(shape) for i, d in enumerate(dims)):
            raise ValueError("a 0 dim copies an axis the input does not have")
        count = math.prod(shape[start:end])
        known = math.prod(d for d in new if d != -1)
        if -1 in new:
            if known == 0 or count % known:
                raise ValueError(f"{count} values do not split into {new}")
            new[new.index(-1)] = count // known
        elif known != count:
            raise ValueError(f"{count} values cannot take the shape {new}")
        return (*shape[:start], *new, *shape[end:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(self.target(tuple(x.shape), self.dims, self.start, self.end))


class Interp(nn.Module):
    """``Interp`` (DeepLab, PSPNet): bilinear resizing with aligned corners to ``size``."""

    def __init__(self, size: tuple[int, int]):
        super().__init__()
        self.size = tuple(size)

    def extra_repr(self) -> str:
        return f"size={self.size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=True)


class Power(nn.Module):
    """Caffe ``Power``: ``(shift + scale * x) ** power``."""

    def __init__(self, power: float = 1.0, scale: float = 1.0, shift: float = 0.0):
        super().__init__()
        self.power, self.scale, self.shift = power, scale, shift

    def extra_repr(self) -> str:
        return f"power={self.power}, scale={self.scale}, shift={self.shift}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.scale + self.shift if (self.scale != 1.0 or self.shift != 0.0) else x
        return y if self.power == 1.0 else y.pow(self.power)


class AbsVal(nn.Module):
    """Caffe ``AbsVal``: ``|x|``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs()
