"""Caffe's pooling arithmetic against a direct loop written from Caffe's definition (PoolingLayer:
ceil/floor output size, the last-window clip only when pad > 0, AVE divisor over the window clipped
to size + pad, MAX over the window clipped to the image, -FLT_MAX for an empty window), over random
configurations that include pad > kernel/2 and stride > kernel, which torch's own pooling refuses or
sizes differently."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from zoo.caffe.layers import CaffePool2d, WithinChannelLRN

FLT_MAX = np.float32(3.4028234663852886e38)


def caffe_pool(x: np.ndarray, method: str, k: int, s: int, p: int, ceil: bool) -> np.ndarray:
    h, w = x.shape
    def size(n):
        out = (math.ceil if ceil else math.floor)((n + 2 * p - k) / s) + 1
        if p and (out - 1) * s >= n + p:
            out -= 1
        return out
    oh, ow = size(h), size(w)
    out = np.zeros((oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * s - p, j * s - p
            he, we = min(hs + k, h + p), min(ws + k, w + p)
            area = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            window = x[hs:he, ws:we]
            if method == "MAX":
                out[i, j] = window.max() if window.size else -FLT_MAX
            else:  # an empty window past size + pad (stride > kernel, pad 0) divides 0 by <= 0: NaN, as in Caffe
                with np.errstate(invalid="ignore", divide="ignore"):
                    out[i, j] = np.float64(window.sum()) / area
    return out


@settings(max_examples=300, deadline=None)
@given(h=st.integers(1, 12), w=st.integers(1, 12), k=st.integers(1, 5), s=st.integers(1, 4),
       pad_frac=st.floats(0, 0.99), method=st.sampled_from(["MAX", "AVE"]), ceil=st.booleans(),
       seed=st.integers(0, 2**16))
def test_pooling_matches_caffe_definition(h, w, k, s, pad_frac, method, ceil, seed):
    p = int(pad_frac * k)  # Caffe requires pad < kernel
    if h + 2 * p < k or w + 2 * p < k:
        return
    x = np.random.default_rng(seed).standard_normal((h, w)).astype(np.float32)
    want = caffe_pool(x.astype(np.float64), method, k, s, p, ceil)
    got = CaffePool2d(method, (k, k), (s, s), (p, p), ceil=ceil)(torch.from_numpy(x)[None, None])[0, 0]
    assert tuple(got.shape) == want.shape
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


def test_within_channel_lrn_matches_definition():
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 6)).astype(np.float64)
    n, alpha, beta = 3, 0.7, 0.75
    sq = np.pad(x * x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    avg = np.zeros_like(x)
    for i in range(5):
        for j in range(6):
            avg[:, :, i, j] = sq[:, :, i:i + n, j:j + n].sum(axis=(2, 3)) / (n * n)
    want = x * (1 + alpha * avg) ** -beta
    got = WithinChannelLRN(n, alpha, beta)(torch.from_numpy(x))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10)
