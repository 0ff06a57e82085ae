"""The converter's rule table: every supported layer type is exercised by a parity net, and each rule's
own checks and shapes on small text nets (the cases OpenCV's runtime cannot serve as the reference for:
an even Slice, Caffe's refusals)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nets
from zoo.caffe import materialize, parse_prototxt, read_prototxt
from zoo.caffe.graph import build_graph, plan_graph
from zoo.caffe.rules import RULES
from zoo.errors import CaffeError


def test_every_rule_is_exercised_by_a_parity_net(write_net):
    """Adding a layer type to the table without a parity net (tests/caffe/nets.py) fails here."""
    seen = set()
    for name in nets.NETS:
        deploy, _model = write_net(name)
        seen |= {layer.type for layer in read_prototxt(deploy).layers}
    assert set(RULES) - seen == set()


def _net(body: str, shape=(1, 6, 4, 5)) -> str:
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n' + body


def _graph(text: str):
    plan = plan_graph(parse_prototxt(text, "t.prototxt"), init=0)
    graph = build_graph(plan)
    graph.load_state_dict(materialize(plan), assign=True)
    return plan, graph.eval()


def test_slice_without_points_cuts_equal_parts():
    text = _net('layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" top: "c" '
                'slice_param { axis: 1 } }\n'
                'layer { name: "cat" type: "Concat" bottom: "c" bottom: "a" top: "cat" }')
    plan, graph = _graph(text)
    assert plan.shapes["a"] == [1, 2, 4, 5] and plan.shapes["cat"] == [1, 4, 4, 5]
    x = torch.randn(3, 6, 4, 5)
    blobs = graph.blobs(x, ["a", "b", "c", "cat"])
    for got, want in zip((blobs["a"], blobs["b"], blobs["c"]), torch.chunk(x, 3, dim=1)):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(blobs["cat"], torch.cat([x[:, 4:], x[:, :2]], dim=1))


@pytest.mark.parametrize("layer, match", [
    ('layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" top: "c" top: "d" }', "cannot cut 6 into 4"),
    ('layer { name: "s" type: "Slice" bottom: "data" top: "a" top: "b" slice_param { slice_point: 6 } }',
     r"slice_point \[6\] must be 1 increasing points inside \(0, 6\)"),
    ('layer { name: "r" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 1 dim: -1 } } }',
     "fixes the batch size to 1; write dim: 0"),
    ('layer { name: "r" type: "Reshape" bottom: "data" top: "r" reshape_param { shape { dim: 0 dim: 7 dim: -1 } } }',
     "cannot reshape"),
    ('layer { name: "i" type: "Interp" bottom: "data" top: "i" interp_param { shrink_factor: 2 } }',
     "shrink_factor, pad_beg and pad_end are not supported"),
    ('layer { name: "i" type: "Interp" bottom: "data" top: "i" }', "needs height and width, or zoom_factor"),
    ('layer { name: "c" type: "Crop" bottom: "data" bottom: "data" top: "c" crop_param { offset: 1 } }',
     "offset 1 \\+ size 4 exceeds"),
    ('layer { name: "c" type: "Crop" bottom: "data" top: "c" }', "has 1 bottoms; Crop takes 2"),
    ('layer { name: "d" type: "Deconvolution" bottom: "data" top: "d" convolution_param { num_output: 4 '
     'kernel_size: 3 group: 4 } }', "do not fit 6 input channels"),
])
def test_rules_refuse_what_caffe_refuses(layer, match):
    with pytest.raises(CaffeError, match=rf"t\.prototxt: layer '\w+' \(\w+\): .*{match}"):
        plan_graph(parse_prototxt(_net(layer), "t.prototxt"), init=0)


def test_reshape_works_out_each_batch_and_prelu_starts_at_a_quarter():
    text = _net('layer { name: "r" type: "Reshape" bottom: "data" top: "r" '
                'reshape_param { shape { dim: 0 dim: -1 dim: 10 } } }\n'
                'layer { name: "p" type: "PReLU" bottom: "r" top: "r" }')
    plan, graph = _graph(text)
    assert plan.shapes["r"] == [1, 12, 10]
    x = torch.randn(5, 6, 4, 5)
    out = graph(x)
    want = x.reshape(5, 12, 10)
    np.testing.assert_allclose(out.detach().numpy(), torch.where(want > 0, want, 0.25 * want).numpy(), rtol=1e-6)
