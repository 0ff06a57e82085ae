"""Small Caffe nets written with an independent writer: the generated ``caffe_pb2`` of ``caffe-onnx``.

Each builder makes a "training" net (data layer, every layer with random blobs, loss and accuracy
layers, auxiliary heads) written as ``model.caffemodel``, and the matching ``deploy.prototxt`` (Input
layer or legacy input dims, no blobs, a final Softmax), in the structure of a Caffe Model Zoo family at
small widths. Nothing here uses the zoo's own reader or writer.

Run as a script (``python nets.py NAME SEED OUT_DIR``) to write the files from a fresh process, for
when ``google.protobuf`` was already imported with a backend that cannot load the old-style module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

NETS = ("alexnet", "googlenet", "resnet", "squeezenet", "nin", "vgg_v1", "misc", "layers", "layers_v1", "interp")
# Nets whose deploy file holds layers the training net (the .caffemodel) lacks: deploy + weights only.
DEPLOY_ONLY = ("interp",)


def load_pb2():
    """``caffe_pb2`` from caffe-onnx, or raise ImportError with the reason."""
    os.environ["PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION"] = "python"
    from google.protobuf.internal import api_implementation

    if api_implementation.Type() != "python":
        raise ImportError("google.protobuf was imported with the upb backend before the caffe tests could select "
                          "the pure-python one")
    import importlib
    import warnings

    with warnings.catch_warnings():  # the old-style module calls deprecated descriptor constructors
        warnings.simplefilter("ignore", DeprecationWarning)
        return importlib.import_module("proto.caffe_pb2")


class Builder:
    def __init__(self, pb, seed: int, *, name: str, input_shape, v1: bool = False, legacy_dims: bool = False,
                 legacy_input: bool = False):
        self.pb, self.v1, self.legacy_dims = pb, v1, legacy_dims
        self.rng = np.random.default_rng(seed)
        self.train = pb.NetParameter(name=name)
        self.deploy = pb.NetParameter(name=name)
        self.shape = {"data": tuple(input_shape)}  # channels per blob (for weight shapes)
        self.text_params: dict[str, str] = {}  # layer name -> parameter text the writer cannot express
        c, h, w = input_shape
        # training net: a data layer (dropped by the converter) and a label
        data = self._new(self.train, "data", "Data", [], ["data", "label"])
        data.transform_param.crop_size = h
        data.transform_param.mean_value.extend([104.0, 117.0, 123.0])
        if legacy_input:
            self.deploy.input.append("data")
            self.deploy.input_dim.extend([1, c, h, w])
        else:
            inp = self._new(self.deploy, "data", "Input", [], ["data"])
            inp.input_param.shape.add().dim.extend([1, c, h, w])

    _V1 = {"Data": "DATA", "Convolution": "CONVOLUTION", "ReLU": "RELU", "Pooling": "POOLING", "LRN": "LRN",
           "InnerProduct": "INNER_PRODUCT", "Dropout": "DROPOUT", "Softmax": "SOFTMAX",
           "SoftmaxWithLoss": "SOFTMAX_LOSS", "Accuracy": "ACCURACY", "Concat": "CONCAT", "Eltwise": "ELTWISE",
           "Split": "SPLIT", "Flatten": "FLATTEN", "Deconvolution": "DECONVOLUTION", "Sigmoid": "SIGMOID",
           "TanH": "TANH", "AbsVal": "ABSVAL", "BNLL": "BNLL", "Power": "POWER", "Slice": "SLICE"}

    def _new(self, net, name, type_, bottoms, tops):
        if self.v1:
            layer = net.layers.add()
            layer.type = getattr(self.pb.V1LayerParameter, self._V1[type_])
        else:
            layer = net.layer.add()
            layer.type = type_
        layer.name = name
        layer.bottom.extend(bottoms)
        layer.top.extend(tops)
        return layer

    def add(self, name, type_, bottoms, tops, *, train_only=False, deploy=True):
        """The layer in the training net and (unless train_only) the deploy net: (train, deploy)."""
        t = self._new(self.train, name, type_, bottoms, tops)
        d = self._new(self.deploy, name, type_, bottoms, tops) if deploy and not train_only else None
        return t, d

    def blob(self, layer, array, *, legacy=None):
        b = layer.blobs.add()
        legacy = self.legacy_dims if legacy is None else legacy
        if legacy:
            dims = [1] * (4 - array.ndim) + list(array.shape)
            b.num, b.channels, b.height, b.width = dims
        else:
            b.shape.dim.extend(array.shape)
        b.data.extend(array.astype(np.float32).ravel().tolist())

    def rand(self, *shape, scale=None):
        fan = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        s = scale if scale is not None else 1.0 / np.sqrt(max(fan, 1))
        return (self.rng.standard_normal(shape) * s).astype(np.float32)

    def _both(self, pair, fn):
        for layer in pair:
            if layer is not None:
                fn(layer)

    # -- layers --
    def conv(self, name, bottom, top, cout, k, s=1, p=0, group=1, bias=True, dilation=None, hw=False):
        c, h, w = self.shape[bottom]
        kh, kw = (k, k) if isinstance(k, int) else k
        pair = self.add(name, "Convolution", [bottom], [top])

        def setp(layer):
            cp = layer.convolution_param
            cp.num_output = cout
            if hw:
                cp.kernel_h, cp.kernel_w = kh, kw
                cp.stride_h = cp.stride_w = s
                cp.pad_h = cp.pad_w = p
            else:
                cp.kernel_size.append(kh)
                if kh != kw:
                    cp.kernel_size.append(kw)
                if s != 1:
                    cp.stride.append(s)
                if p:
                    cp.pad.append(p)
            if group != 1:
                cp.group = group
            if not bias:
                cp.bias_term = False
            if dilation:
                cp.dilation.append(dilation)

        self._both(pair, setp)
        self.blob(pair[0], self.rand(cout, c // group, kh, kw))
        if bias:
            self.blob(pair[0], self.rand(cout, scale=0.1))
        d = dilation or 1
        self.shape[top] = (cout, (h + 2 * p - (d * (kh - 1) + 1)) // s + 1, (w + 2 * p - (d * (kw - 1) + 1)) // s + 1)
        return top

    def relu(self, name, blob, slope=0.0):
        pair = self.add(name, "ReLU", [blob], [blob])
        if slope:
            self._both(pair, lambda layer: setattr(layer.relu_param, "negative_slope", slope))
        return blob

    def pool(self, name, bottom, top, method, k=None, s=1, p=0, global_=False):
        c, h, w = self.shape[bottom]
        pair = self.add(name, "Pooling", [bottom], [top])

        def setp(layer):
            pp = layer.pooling_param
            pp.pool = getattr(self.pb.PoolingParameter, method)
            if global_:
                pp.global_pooling = True
            else:
                pp.kernel_size = k
                if s != 1:
                    pp.stride = s
                if p:
                    pp.pad = p

        self._both(pair, setp)
        if global_:
            self.shape[top] = (c, 1, 1)
        else:
            def size(n):
                out = -(-(n + 2 * p - k) // s) + 1
                if p and (out - 1) * s >= n + p:
                    out -= 1
                return out
            self.shape[top] = (c, size(h), size(w))
        return top

    def lrn(self, name, bottom, top, size=5, alpha=1e-2, beta=0.75, k=1.0, within=False):
        pair = self.add(name, "LRN", [bottom], [top])

        def setp(layer):
            lp = layer.lrn_param
            lp.local_size, lp.alpha, lp.beta = size, alpha, beta
            if k != 1.0:
                lp.k = k
            if within:
                lp.norm_region = self.pb.LRNParameter.WITHIN_CHANNEL

        self._both(pair, setp)
        self.shape[top] = self.shape[bottom]
        return top

    def ip(self, name, bottom, top, n, *, train_only=False, bias=True):
        k = int(np.prod(self.shape[bottom]))
        pair = self.add(name, "InnerProduct", [bottom], [top], train_only=train_only)

        def setp(layer):
            layer.inner_product_param.num_output = n
            if not bias:
                layer.inner_product_param.bias_term = False

        self._both(pair, setp)
        self.blob(pair[0], self.rand(n, k))
        if bias:
            self.blob(pair[0], self.rand(n, scale=0.1))
        self.shape[top] = (n,)
        return top

    def dropout(self, name, blob, ratio=0.5, train_only=False):
        pair = self.add(name, "Dropout", [blob], [blob], train_only=train_only)
        self._both(pair, lambda layer: setattr(layer.dropout_param, "dropout_ratio", ratio))
        return blob

    def concat(self, name, bottoms, top):
        self.add(name, "Concat", list(bottoms), [top])
        c = sum(self.shape[b][0] for b in bottoms)
        self.shape[top] = (c, *self.shape[bottoms[0]][1:])
        return top

    def eltwise(self, name, bottoms, top, op="SUM", coeff=None):
        pair = self.add(name, "Eltwise", list(bottoms), [top])

        def setp(layer):
            if op != "SUM":
                layer.eltwise_param.operation = getattr(self.pb.EltwiseParameter, op)
            if coeff:
                layer.eltwise_param.coeff.extend(coeff)

        self._both(pair, setp)
        self.shape[top] = self.shape[bottoms[0]]
        return top

    def bn_scale(self, prefix, blob, *, scale=True, factor=2.0):
        c = self.shape[blob][0]
        t, _ = self.add(f"bn_{prefix}", "BatchNorm", [blob], [blob])
        mean = self.rng.standard_normal(c).astype(np.float32) * 0.1
        var = (self.rng.random(c).astype(np.float32) + 0.5)
        self.blob(t, mean * factor, legacy=False)
        self.blob(t, var * factor, legacy=False)
        self.blob(t, np.array([factor], np.float32), legacy=False)
        if scale:
            s, d = self.add(f"scale_{prefix}", "Scale", [blob], [blob])
            self._both((s, d), lambda layer: setattr(layer.scale_param, "bias_term", True))
            self.blob(s, (self.rng.random(c) + 0.5).astype(np.float32), legacy=False)
            self.blob(s, self.rng.standard_normal(c).astype(np.float32) * 0.1, legacy=False)
        return blob

    def layer(self, name, type_, bottoms, tops, shape, setp=None, *, deploy_only=False):
        """Any layer; ``shape`` (C, H, W...) is its top's (every top's, for one top)."""
        if deploy_only:
            pair = (None, self._new(self.deploy, name, type_, list(bottoms), list(tops)))
        else:
            pair = self.add(name, type_, list(bottoms), list(tops))
        if setp is not None:
            self._both(pair, setp)
        for top in tops:
            self.shape[top] = tuple(shape)
        return pair

    def prelu(self, name, blob, *, shared=False):
        pair = self.add(name, "PReLU", [blob], [blob])
        if shared:
            self._both(pair, lambda layer: setattr(layer.prelu_param, "channel_shared", True))
        n = 1 if shared else self.shape[blob][0]
        self.blob(pair[0], (self.rng.random(n) * 0.5).astype(np.float32), legacy=False)
        return blob

    def deconv(self, name, bottom, top, cout, k, s=1, p=0, group=1):
        c, h, w = self.shape[bottom]
        pair = self.add(name, "Deconvolution", [bottom], [top])

        def setp(layer):
            cp = layer.convolution_param
            cp.num_output = cout
            cp.kernel_size.append(k)
            if s != 1:
                cp.stride.append(s)
            if p:
                cp.pad.append(p)
            if group != 1:
                cp.group = group

        self._both(pair, setp)
        self.blob(pair[0], self.rand(c, cout // group, k, k))
        self.blob(pair[0], self.rand(cout, scale=0.1))
        self.shape[top] = (cout, s * (h - 1) + k - 2 * p, s * (w - 1) + k - 2 * p)
        return top

    def loss(self, name, bottom, *, accuracy=True):
        self.add(name, "SoftmaxWithLoss", [bottom, "label"], [name], train_only=True)
        if accuracy:
            a, _ = self.add(name + "_acc", "Accuracy", [bottom, "label"], [name + "_acc"], train_only=True)
            rule = a.include.add()
            rule.phase = self.pb.TEST

    def finish(self, logits):
        self.add("prob", "Softmax", [logits], ["prob"], train_only=False, deploy=True)
        # "prob" exists in the deploy net only: remove it from the training net again
        if self.v1:
            del self.train.layers[-1]
        else:
            del self.train.layer[-1]
        self.loss("loss", logits)

    def write(self, out: Path):
        from google.protobuf import text_format

        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.caffemodel").write_bytes(self.train.SerializeToString())
        text = text_format.MessageToString(self.deploy)
        for name, params in self.text_params.items():  # fields caffe_pb2 does not know (fork layers)
            text = text.replace(f'name: "{name}"\n', f'name: "{name}"\n  {params}\n', 1)
        (out / "deploy.prototxt").write_text(text)
        return out / "deploy.prototxt", out / "model.caffemodel"


# -- the families ------------------------------------------------------------------------------
def alexnet(pb, seed):
    """AlexNet: group-2 convolutions, LRN before pooling, three InnerProducts; legacy 4-D blob dims."""
    b = Builder(pb, seed, name="AlexNet-small", input_shape=(3, 75, 75), legacy_dims=True)
    x = b.relu("relu1", b.conv("conv1", "data", "conv1", 16, 11, s=4))
    x = b.pool("pool1", b.lrn("norm1", x, "norm1"), "pool1", "MAX", 3, 2)
    x = b.relu("relu2", b.conv("conv2", x, "conv2", 32, 5, p=2, group=2))
    x = b.pool("pool2", b.lrn("norm2", x, "norm2"), "pool2", "MAX", 3, 2)
    x = b.relu("relu3", b.conv("conv3", x, "conv3", 24, 3, p=1))
    x = b.relu("relu4", b.conv("conv4", x, "conv4", 24, 3, p=1, group=2))
    x = b.relu("relu5", b.conv("conv5", x, "conv5", 16, 3, p=1, group=2))
    x = b.pool("pool5", x, "pool5", "MAX", 3, 2)
    x = b.dropout("drop6", b.relu("relu6", b.ip("fc6", x, "fc6", 32)))
    x = b.dropout("drop7", b.relu("relu7", b.ip("fc7", x, "fc7", 32)))
    b.finish(b.ip("fc8", x, "fc8", 10))
    return b


def _inception(b, name, x, c1, c3r, c3, c5r, c5, pp):
    p = name + "/"
    a = b.relu(p + "relu_1x1", b.conv(p + "1x1", x, p + "1x1", c1, 1))
    r = b.relu(p + "relu_3x3_reduce", b.conv(p + "3x3_reduce", x, p + "3x3_reduce", c3r, 1))
    c = b.relu(p + "relu_3x3", b.conv(p + "3x3", r, p + "3x3", c3, 3, p=1))
    r5 = b.relu(p + "relu_5x5_reduce", b.conv(p + "5x5_reduce", x, p + "5x5_reduce", c5r, 1))
    f = b.relu(p + "relu_5x5", b.conv(p + "5x5", r5, p + "5x5", c5, 5, p=2))
    q = b.pool(p + "pool", x, p + "pool", "MAX", 3, 1, 1)
    q = b.relu(p + "relu_pool_proj", b.conv(p + "pool_proj", q, p + "pool_proj", pp, 1))
    return b.concat(p + "output", [a, c, f, q], p + "output")


def googlenet(pb, seed):
    """GoogLeNet: names with '/', inception concat, ceil pooling (64 -> 32 -> 16 -> 8), an auxiliary
    head in the training net only, in-place dropout on pool5/7x7_s1."""
    b = Builder(pb, seed, name="GoogleNet-small", input_shape=(3, 64, 64))
    x = b.relu("conv1/relu_7x7", b.conv("conv1/7x7_s2", "data", "conv1/7x7_s2", 16, 7, s=2, p=3))
    x = b.pool("pool1/3x3_s2", x, "pool1/3x3_s2", "MAX", 3, 2)
    x = b.lrn("pool1/norm1", x, "pool1/norm1")
    x = b.relu("conv2/relu_3x3_reduce", b.conv("conv2/3x3_reduce", x, "conv2/3x3_reduce", 16, 1))
    x = b.relu("conv2/relu_3x3", b.conv("conv2/3x3", x, "conv2/3x3", 24, 3, p=1))
    x = b.lrn("conv2/norm2", x, "conv2/norm2")
    x = b.pool("pool2/3x3_s2", x, "pool2/3x3_s2", "MAX", 3, 2)
    x = _inception(b, "inception_3a", x, 8, 8, 12, 4, 4, 4)
    x = b.pool("pool3/3x3_s2", x, "pool3/3x3_s2", "MAX", 3, 2)
    x = _inception(b, "inception_4a", x, 12, 8, 12, 4, 6, 6)
    # auxiliary head: training net only
    a = b.pool("loss1/ave_pool", x, "loss1/ave_pool", "AVE", 3, 2)
    a = b.relu("loss1/relu_conv", b.conv("loss1/conv", a, "loss1/conv", 8, 1))
    aux = b.ip("loss1/classifier", a, "loss1/classifier", 10, train_only=True)
    b.add("loss1/loss", "SoftmaxWithLoss", [aux, "label"], ["loss1/loss1"], train_only=True)
    x = _inception(b, "inception_4e", x, 12, 8, 16, 4, 8, 8)
    x = b.pool("pool5/7x7_s1", x, "pool5/7x7_s1", "AVE", 4, 1)
    x = b.dropout("pool5/drop_7x7_s1", x, 0.4)
    b.finish(b.ip("loss3/classifier", x, "loss3/classifier", 10))
    _train_only(b, ["loss1/ave_pool", "loss1/conv", "loss1/relu_conv"])
    return b


def _train_only(b, names):
    """Remove layers from the deploy net (they stay in the training net)."""
    keep = [layer for layer in b.deploy.layer if layer.name not in names]
    del b.deploy.layer[:]
    b.deploy.layer.extend(keep)


def resnet(pb, seed):
    """ResNet: BatchNorm (scale factor blob) + Scale in place, Eltwise SUM, stride on the 1x1 convs,
    ceil max pooling (32 -> 16), average pooling over the last map."""
    b = Builder(pb, seed, name="ResNet-small", input_shape=(3, 64, 64))
    x = b.conv("conv1", "data", "conv1", 16, 7, s=2, p=3)
    x = b.relu("conv1_relu", b.bn_scale("conv1", x))
    x = b.pool("pool1", x, "pool1", "MAX", 3, 2)

    def block(name, x, cin, mid, cout, stride, project):
        if project:
            sc = b.bn_scale(name + "_branch1", b.conv(f"res{name}_branch1", x, f"res{name}_branch1", cout, 1,
                                                     s=stride, bias=False))
        else:
            sc = x
        y = b.conv(f"res{name}_branch2a", x, f"res{name}_branch2a", mid, 1, s=stride, bias=False)
        y = b.relu(f"res{name}_branch2a_relu", b.bn_scale(name + "_branch2a", y))
        y = b.conv(f"res{name}_branch2b", y, f"res{name}_branch2b", mid, 3, p=1, bias=False)
        y = b.relu(f"res{name}_branch2b_relu", b.bn_scale(name + "_branch2b", y))
        y = b.bn_scale(name + "_branch2c", b.conv(f"res{name}_branch2c", y, f"res{name}_branch2c", cout, 1,
                                                  bias=False))
        out = b.eltwise(f"res{name}", [sc, y], f"res{name}")
        return b.relu(f"res{name}_relu", out)

    x = block("2a", x, 16, 8, 32, 1, True)
    x = block("2b", x, 32, 8, 32, 1, False)
    x = block("3a", x, 32, 16, 48, 2, True)
    x = b.pool("pool5", x, "pool5", "AVE", b.shape[x][1], 1)
    b.finish(b.ip("fc10", x, "fc10", 10))
    return b


def squeezenet(pb, seed):
    """SqueezeNet v1.1: fire modules (squeeze 1x1, expand 1x1 + 3x3, concat), ceil pooling, no
    InnerProduct: conv10, ReLU, global average pooling."""
    b = Builder(pb, seed, name="SqueezeNet-small", input_shape=(3, 63, 63))
    x = b.relu("relu_conv1", b.conv("conv1", "data", "conv1", 16, 3, s=2))
    x = b.pool("pool1", x, "pool1", "MAX", 3, 2)

    def fire(n, x, s, e):
        p = f"fire{n}/"
        sq = b.relu(p + "relu_squeeze1x1", b.conv(p + "squeeze1x1", x, p + "squeeze1x1", s, 1))
        e1 = b.relu(p + "relu_expand1x1", b.conv(p + "expand1x1", sq, p + "expand1x1", e, 1))
        e3 = b.relu(p + "relu_expand3x3", b.conv(p + "expand3x3", sq, p + "expand3x3", e, 3, p=1))
        return b.concat(p + "concat", [e1, e3], p + "concat")

    x = fire(2, x, 8, 16)
    x = fire(3, x, 8, 16)
    x = b.pool("pool3", x, "pool3", "MAX", 3, 2)
    x = fire(4, x, 12, 24)
    x = b.dropout("drop9", x)
    x = b.relu("relu_conv10", b.conv("conv10", x, "conv10", 10, 1))
    x = b.pool("pool10", x, "pool10", "AVE", global_=True)
    b.finish(x)
    return b


def nin(pb, seed):
    """Network in Network: mlpconv (conv + two 1x1 'cccp' convs), max pooling, a final 1x1 conv with
    as many outputs as classes, average pooling over the whole map; V1 format like the original."""
    b = Builder(pb, seed, name="NIN-small", input_shape=(3, 67, 67), v1=True, legacy_dims=True,
                legacy_input=True)
    x = b.relu("relu0", b.conv("conv1", "data", "conv1", 16, 11, s=4))
    x = b.relu("relu1", b.conv("cccp1", x, "cccp1", 16, 1))
    x = b.relu("relu2", b.conv("cccp2", x, "cccp2", 16, 1))
    x = b.pool("pool0", x, "pool0", "MAX", 3, 2)
    x = b.relu("relu3", b.conv("conv2", x, "conv2", 24, 5, p=2))
    x = b.relu("relu5", b.conv("cccp3", x, "cccp3", 24, 1))
    x = b.pool("pool2", x, "pool2", "MAX", 3, 2)
    x = b.dropout("drop", x)
    x = b.relu("relu8", b.conv("conv4-1024", x, "conv4-1024", 32, 3, p=1))
    x = b.relu("relu9", b.conv("cccp8-1024", x, "cccp8-1024", 10, 1))
    x = b.pool("pool4", x, "pool4", "AVE", b.shape[x][1], 1)
    b.finish(x)
    return b


def vgg_v1(pb, seed):
    """VGG-16 in the legacy V1 format: ``layers`` with enum types, legacy blob dims, and a deploy net
    with ``input``/``input_dim``."""
    b = Builder(pb, seed, name="VGG_ILSVRC_16_layers-small", input_shape=(3, 32, 32), v1=True, legacy_dims=True,
                legacy_input=True)
    x = "data"
    widths = [(8, 2), (16, 2), (24, 3)]
    for i, (c, n) in enumerate(widths, 1):
        for j in range(1, n + 1):
            x = b.relu(f"relu{i}_{j}", b.conv(f"conv{i}_{j}", x, f"conv{i}_{j}", c, 3, p=1))
        x = b.pool(f"pool{i}", x, f"pool{i}", "MAX", 2, 2)
    x = b.dropout("drop6", b.relu("relu6", b.ip("fc6", x, "fc6", 32)))
    x = b.dropout("drop7", b.relu("relu7", b.ip("fc7", x, "fc7", 32)))
    b.finish(b.ip("fc8", x, "fc8", 10))
    return b


def misc(pb, seed):
    """Corner cases in one net: leaky ReLU, WITHIN_CHANNEL LRN, pooling with pad > 0 (the last-window
    clip) and floor-vs-ceil sizes, kernel_h/kernel_w, dilation, Eltwise SUM with coeff / PROD / MAX,
    BatchNorm without Scale, Flatten, an InnerProduct on a flattened map."""
    b = Builder(pb, seed, name="misc", input_shape=(3, 21, 21))
    x = b.relu("lrelu1", b.conv("conv1", "data", "conv1", 8, 3, s=2, p=1, hw=True), slope=0.1)  # 11x11
    y = b.lrn("lrn_within", x, "lrn_within", size=3, alpha=0.5, beta=0.75, within=True)
    p1 = b.pool("pool_pad", y, "pool_pad", "MAX", 3, 2, 1)
    p2 = b.pool("pool_ave_pad", y, "pool_ave_pad", "AVE", 3, 2, 1)
    s = b.eltwise("sum_coeff", [p1, p2], "sum_coeff", "SUM", coeff=[0.5, -2.0])
    m = b.eltwise("prod", [p1, p2], "prod", "PROD")
    mx = b.eltwise("max", [s, m], "max", "MAX")
    z = b.conv("conv_dil", mx, "conv_dil", 8, 3, p=2, dilation=2)
    z = b.bn_scale("dil", z, scale=False, factor=4.0)
    z = b.pool("pool_ave", z, "pool_ave", "AVE", 2, 2)
    b.add("flat", "Flatten", [z], ["flat"])
    b.shape["flat"] = (int(np.prod(b.shape[z])),)
    # 11 -> 4 only through Caffe's clip rule (ceil gives 5; the last window would start in the padding)
    c1 = b.pool("pool_clip", y, "pool_clip", "MAX", 3, 3, 1)
    c2 = b.pool("pool_clip_ave", y, "pool_clip_ave", "AVE", 3, 3, 1)
    c = b.eltwise("clip_sum", [c1, c2], "clip_sum")
    b.add("flat_clip", "Flatten", [c], ["flat_clip"])
    b.shape["flat_clip"] = (int(np.prod(b.shape[c])),)
    both = b.concat("flat_all", ["flat", "flat_clip"], "flat_all")
    b.finish(b.ip("fc", both, "fc", 10))
    return b


def layers(pb, seed):
    """The layer types real Caffe nets add to the classic ones: PReLU per channel and shared (also on
    an InnerProduct's 2-D output, as MTCNN), Deconvolution with groups, Split, Slice at slice points,
    Sigmoid, TanH, AbsVal, BNLL, Power, ELU, Crop with offsets, Reshape with 0 and -1 dims, Flatten."""
    b = Builder(pb, seed, name="layers", input_shape=(3, 20, 20))
    x = b.prelu("prelu1", b.conv("conv1", "data", "conv1", 8, 3, p=1))
    x = b.prelu("prelu_shared", b.deconv("deconv1", x, "deconv1", 6, 4, s=2, p=1, group=2), shared=True)  # 40
    x = b.pool("pool1", x, "pool1", "MAX", 2, 2)  # 6 x 20 x 20

    def slice_points(layer):
        layer.slice_param.axis = 1
        layer.slice_param.slice_point.extend([2, 5])

    b.layer("split", "Split", [x], ["x1", "x2"], (6, 20, 20))
    b.layer("slice", "Slice", ["x1"], ["s_a", "s_b", "s_c"], (2, 20, 20), slice_points)
    b.shape["s_b"], b.shape["s_c"] = (3, 20, 20), (1, 20, 20)
    b.layer("sig", "Sigmoid", ["s_a"], ["sig"], (2, 20, 20))
    b.layer("tanh", "TanH", ["s_b"], ["tanh"], (3, 20, 20))
    b.layer("bnll", "BNLL", ["tanh"], ["bnll"], (3, 20, 20))
    b.layer("abs", "AbsVal", ["s_c"], ["abs"], (1, 20, 20))

    def power(layer):
        layer.power_param.power, layer.power_param.scale, layer.power_param.shift = 2.0, 0.5, 1.0

    b.layer("power", "Power", ["abs"], ["power"], (1, 20, 20), power)
    x = b.concat("cat", ["sig", "bnll", "power"], "cat")  # 6 x 20 x 20
    x = b.eltwise("sum", [x, "x2"], "sum")
    ref = b.pool("pool_ref", x, "pool_ref", "AVE", 2, 2)  # 6 x 10 x 10

    def crop(layer):
        layer.crop_param.axis = 2
        layer.crop_param.offset.extend([3, 5])

    b.layer("crop", "Crop", [x, ref], ["crop"], (6, 10, 10), crop)

    def reshape(layer):
        layer.reshape_param.shape.dim.extend([0, -1, 4, 5])

    b.layer("reshape", "Reshape", ["crop"], ["reshape"], (30, 4, 5), reshape)
    b.layer("elu", "ELU", ["reshape"], ["reshape"], (30, 4, 5), lambda layer: setattr(layer.elu_param, "alpha", 0.5))
    b.layer("flat", "Flatten", ["reshape"], ["flat"], (600,))
    x = b.prelu("prelu_fc", b.ip("fc1", "flat", "fc1", 16))
    b.finish(b.ip("fc", x, "fc", 10))
    return b


def layers_v1(pb, seed):
    """The same kinds of layers in the legacy V1 format (enum types, V1 field numbers for slice_param
    and power_param): Deconvolution, Slice, Sigmoid, TanH, AbsVal, BNLL, Power, Flatten."""
    b = Builder(pb, seed, name="layers_v1", input_shape=(3, 12, 12), v1=True, legacy_dims=True, legacy_input=True)
    x = b.relu("relu1", b.conv("conv1", "data", "conv1", 6, 3, p=1))
    x = b.deconv("deconv1", x, "deconv1", 4, 3, s=2, p=1)  # 23 x 23

    def slice_points(layer):
        layer.slice_param.slice_dim = 1
        layer.slice_param.slice_point.append(1)

    b.layer("slice", "Slice", [x], ["s_a", "s_b"], (1, 23, 23), slice_points)
    b.shape["s_b"] = (3, 23, 23)
    b.layer("sig", "Sigmoid", ["s_a"], ["sig"], (1, 23, 23))
    b.layer("abs", "AbsVal", ["s_b"], ["abs"], (3, 23, 23))
    b.layer("bnll", "BNLL", ["abs"], ["bnll"], (3, 23, 23))

    def power(layer):
        layer.power_param.power, layer.power_param.shift = 0.5, 2.0

    b.layer("power", "Power", ["bnll"], ["power"], (3, 23, 23), power)
    b.layer("tanh", "TanH", ["power"], ["power"], (3, 23, 23))
    x = b.concat("cat", ["sig", "power"], "cat")
    x = b.pool("pool", x, "pool", "MAX", 3, 2)
    b.layer("flat", "Flatten", [x], ["flat"], (int(np.prod(b.shape[x])),))
    b.finish(b.ip("fc", "flat", "fc", 10))
    return b


def interp(pb, seed):
    """``Interp`` (a DeepLab/PSPNet layer, not in BVLC's caffe.proto) by zoom factor and by height/width;
    written into the deploy file as text, its parameters unknown to the generated writer."""
    b = Builder(pb, seed, name="interp", input_shape=(3, 9, 11))
    x = b.relu("relu1", b.conv("conv1", "data", "conv1", 6, 3, p=1))
    b.layer("zoom", "Interp", [x], ["zoom"], (6, 17, 21), deploy_only=True)
    b.text_params["zoom"] = "interp_param { zoom_factor: 2 }"
    b.layer("size", "Interp", ["zoom"], ["size"], (6, 12, 7), deploy_only=True)
    b.text_params["size"] = "interp_param { height: 12 width: 7 }"
    b.layer("tanh", "TanH", ["size"], ["tanh"], (6, 12, 7), deploy_only=True)
    x = b.pool("pool", "tanh", "pool", "AVE", global_=True)
    b.finish(b.ip("fc", x, "fc", 10))
    return b


BUILDERS = {"alexnet": alexnet, "googlenet": googlenet, "resnet": resnet, "squeezenet": squeezenet, "nin": nin,
            "vgg_v1": vgg_v1, "misc": misc, "layers": layers, "layers_v1": layers_v1, "interp": interp}


def write(name: str, seed: int, out: Path):
    return BUILDERS[name](load_pb2(), seed).write(out)


if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
