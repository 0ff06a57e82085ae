"""The readers against the independent writer: blob encodings, legacy fields, text format, mean files,
and the errors for files the converter must refuse (each naming the file, the layer and the problem)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from zoo.caffe import convert, read_caffemodel, read_prototxt
from zoo.caffe.graph import plan_graph
from zoo.caffe.proto import parse_binaryproto, parse_caffemodel
from zoo.caffe.prototxt import parse_prototxt
from zoo.errors import CaffeError


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


# -- blobs ---------------------------------------------------------------------------------------
def test_blob_shape_legacy_dims_double_data_and_diff(pb2, tmp_path):
    values = np.arange(24, dtype=np.float64) / 7
    b = pb2.BlobProto()
    b.num, b.channels, b.height, b.width = 1, 2, 3, 4
    b.double_data.extend(values.tolist())
    b.diff.extend([9.0] * 24)  # training state: ignored
    mean = parse_binaryproto(b.SerializeToString())
    assert mean.shape == (2, 3, 4) and mean.dtype == np.float32
    np.testing.assert_allclose(mean.ravel(), values.astype(np.float32))
    # shape (field 7) wins over the legacy dims
    b2 = pb2.BlobProto()
    b2.num, b2.channels = 1, 24
    b2.shape.dim.extend([1, 3, 2, 4])
    b2.data.extend(values.tolist())
    assert parse_binaryproto(b2.SerializeToString()).shape == (3, 2, 4)
    path = tmp_path / "mean.binaryproto"
    path.write_bytes(b2.SerializeToString())
    from zoo.caffe import read_binaryproto

    assert read_binaryproto(path).shape == (3, 2, 4)


def test_unpacked_floats_are_read_like_packed(pb2):
    values = np.random.default_rng(0).standard_normal(50).astype(np.float32)
    shape = pb2.BlobShape()
    shape.dim.extend([1, 2, 5, 5])
    # protobuf writers emit packed floats; a conforming reader must also take one record per value.
    unpacked = b"".join(b"\x2d" + struct.pack("<f", v) for v in values)
    blob = b"\x3a" + _varint(len(shape.SerializeToString())) + shape.SerializeToString() + unpacked
    np.testing.assert_array_equal(parse_binaryproto(blob).ravel(), values)
    # mixed: part packed, part unpacked, in two records of the same field
    packed = struct.pack("<25f", *values[:25])
    mixed = (b"\x3a" + _varint(len(shape.SerializeToString())) + shape.SerializeToString()
             + b"\x2a" + _varint(len(packed)) + packed + b"".join(b"\x2d" + struct.pack("<f", v) for v in values[25:]))
    np.testing.assert_array_equal(parse_binaryproto(mixed).ravel(), values)


def test_unknown_fields_are_skipped(pb2):
    net = pb2.NetParameter(name="n")
    layer = net.layer.add(name="ip", type="InnerProduct")
    layer.bottom.append("data")
    layer.top.append("ip")
    layer.inner_product_param.num_output = 2
    blob = layer.blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1, 2, 3, 4, 5, 6])
    layer.blobs.add().data.extend([0.5, -0.5])
    layer.param.add(lr_mult=2.0)  # ParamSpec: not in the reader's schema
    data = net.SerializeToString() + b"\xc2\x3e\x03abc" + b"\xf8\x3e\x05"  # fields 999 (bytes) and 1007 (varint)
    parsed = parse_caffemodel(data)
    assert parsed.layers[0].blobs[0].shape == (2, 3)
    plan = plan_graph(parsed, input_shape=(3, 1, 1))
    assert plan.ops[0].args["cout"] == 2


def test_v1_net_with_legacy_inputs(write_net):
    deploy, model = write_net("vgg_v1")
    net = read_prototxt(deploy)
    assert net.era == "V1" and net.inputs == [("data", (1, 3, 32, 32))]
    weights = read_caffemodel(model)
    assert weights.era == "V1" and weights.layers[1].type == "Convolution"
    assert weights.layers[1].blobs[1].shape == (1, 1, 1, 8)  # legacy bias dims


# -- prototxt ------------------------------------------------------------------------------------
PROTOTXT = r'''
# a comment
name: "test\tnet"  # trailing comment
input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
layer {
  name: 'conv/1' type: "Convolution" bottom: "data" top: "conv/1"
  param { lr_mult: 1 decay_mult: 1 }
  convolution_param: { num_output: 4 kernel_size: 3 pad: [1] stride: 1
    weight_filler { type: "xavier" } bias_term: false }
}
layer < name: "pool" type: "Pooling" bottom: "conv/1" top: "pool"
  pooling_param { pool: AVE kernel_size: 2 stride: 2 } >
layer { name: "e" type: "Eltwise" bottom: "pool" bottom: "pool" top: "e"
  eltwise_param { operation: SUM coeff: 0.5 coeff: -1.5e0 } }
'''


def test_prototxt_syntax_matches_protobuf_text_format(pb2):
    from google.protobuf import text_format

    ours = parse_prototxt(PROTOTXT, "t.prototxt")
    ref = text_format.Parse(PROTOTXT, pb2.NetParameter())
    theirs = parse_caffemodel(ref.SerializeToString(), "ref")
    assert ours.name == theirs.name == "test\tnet"
    assert ours.inputs == theirs.inputs == [("data", (1, 3, 8, 8))]
    assert [layer.name for layer in ours.layers] == ["conv/1", "pool", "e"]
    for a, b in zip(ours.layers, theirs.layers):
        assert (a.type, a.bottoms, a.tops) == (b.type, b.bottoms, b.tops)
        assert a.params.to_dict() == b.params.to_dict()
    assert ours.layers[2].param("eltwise_param").all("coeff") == [0.5, -1.5]


@pytest.mark.parametrize("text, line", [
    ('layer {\n name: "a"\n', 2),
    ('layer {\n name: a }', 2),
    ('layer { name: "a" type: "Pooling" pooling_param { pool: MEDIAN } }', 1),
    ('name: "x"\n\n  $', 3),
])
def test_prototxt_errors_name_the_line(text, line):
    with pytest.raises(CaffeError, match=rf"bad\.prototxt, line {line}"):
        parse_prototxt(text, "bad.prototxt")


# -- refusals ------------------------------------------------------------------------------------
def _net(pb2, *layers):
    net = pb2.NetParameter(name="n")
    inp = net.layer.add(name="data", type="Input")
    inp.top.append("data")
    inp.input_param.shape.add().dim.extend([1, 3, 8, 8])
    for name, type_, bottom in layers:
        layer = net.layer.add(name=name, type=type_)
        layer.bottom.append(bottom)
        layer.top.append(name)
    return net


def test_unsupported_layer_names_layer_and_type(pb2):
    net = _net(pb2, ("norm", "MVN", "data"))
    with pytest.raises(CaffeError, match=r"layer 'norm' \(MVN\): type 'MVN' is not supported"):
        plan_graph(parse_caffemodel(net.SerializeToString(), "x.caffemodel"))


def test_stochastic_pooling_is_refused(pb2):
    net = _net(pb2, ("pool", "Pooling", "data"))
    net.layer[1].pooling_param.pool = pb2.PoolingParameter.STOCHASTIC
    net.layer[1].pooling_param.kernel_size = 2
    with pytest.raises(CaffeError, match="'pool' .*STOCHASTIC"):
        plan_graph(parse_caffemodel(net.SerializeToString(), "x.caffemodel"))


def test_weights_that_do_not_match_the_prototxt(write_net, tmp_path):
    deploy, model = write_net("alexnet")
    text = deploy.read_text().replace("num_output: 24", "num_output: 20", 1)
    bad = tmp_path / "deploy.prototxt"
    bad.write_text(text)
    with pytest.raises(CaffeError, match=r"layer 'conv3' \(Convolution\): weight has shape .* needs \(20, 32, 3, 3\)"):
        convert(model, bad)
    renamed = tmp_path / "renamed.prototxt"
    renamed.write_text(deploy.read_text().replace('"fc7"', '"fc7b"'))
    with pytest.raises(CaffeError, match="'fc7b'.*has no weights"):
        convert(model, renamed)


def test_truncated_file_names_file_and_layer(write_net, tmp_path):
    _deploy, model = write_net("alexnet")
    data = model.read_bytes()
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CaffeError, match=r"cut\.caffemodel: is not a valid Caffe model in layer #\d+ '\w+', which is cut off.*truncated"):
        read_caffemodel(cut)
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(CaffeError, match="empty"):
        read_caffemodel(empty)
    with pytest.raises(CaffeError, match="cannot be opened"):
        read_caffemodel(tmp_path / "missing.caffemodel")


def test_input_size_is_required_when_the_files_do_not_say(pb2):
    net = pb2.NetParameter(name="n")
    layer = net.layer.add(name="relu", type="ReLU")
    layer.bottom.append("x")
    layer.top.append("x")
    with pytest.raises(CaffeError, match="input_shape=\\(C, H, W\\)"):
        plan_graph(parse_caffemodel(net.SerializeToString(), "x.caffemodel"))
    assert plan_graph(parse_caffemodel(net.SerializeToString()), input_shape=(3, 4, 4)).input_blob == "x"


def test_unknown_classifier_and_v0_and_mixed_formats(pb2, write_net):
    _deploy, model = write_net("alexnet")
    with pytest.raises(CaffeError, match="no layer named 'fc9'"):
        convert(model, input_shape=(3, 75, 75), classifier="fc9")
    with pytest.raises(CaffeError, match="is named as the classifier but is not an InnerProduct"):
        convert(model, input_shape=(3, 75, 75), classifier="conv1")
    net = pb2.NetParameter()
    net.layers.add(name="old").layer.name = "v0"
    with pytest.raises(CaffeError, match="V0 format"):
        parse_caffemodel(net.SerializeToString(), "old.caffemodel")
    both = pb2.NetParameter()
    both.layer.add(name="a")
    both.layers.add(name="b")
    with pytest.raises(CaffeError, match="both 'layer'"):
        parse_caffemodel(both.SerializeToString(), "mixed.caffemodel")


def test_prototxt_alone_builds_an_initialised_net(write_net):
    deploy, _model = write_net("resnet")
    plan = plan_graph(read_prototxt(deploy), init=0)
    from zoo.caffe import materialize, model_from_plan

    model = model_from_plan(plan, materialize(plan))
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10)
    with pytest.raises(CaffeError, match="has no weights"):
        plan_graph(read_prototxt(deploy))
