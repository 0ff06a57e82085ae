"""Parity with an independent Caffe runtime: OpenCV's Caffe importer runs the same files.

Each net (AlexNet, GoogLeNet, ResNet, SqueezeNet, NIN and VGG-V1 structures at small widths, a net of
corner cases, and nets of the layer types later Caffe nets use: PReLU, Deconvolution, Slice, Crop,
Reshape, Interp, Power, ELU, BNLL...) is written by caffe-onnx's ``caffe_pb2``; OpenCV reads ``deploy.prototxt`` +
``model.caffemodel``; the zoo converts either the weights file alone (its own deploy selection) or the
pair. Every layer's output must agree with OpenCV's (by Caffe layer name) to 1e-4 of its scale.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import nets
from zoo.caffe import convert, materialize, model_from_plan, read_caffemodel
from zoo.caffe.graph import build_graph, plan_graph

TOL = 1e-4


def _opencv(cv2, deploy, model, x, names):
    net = cv2.dnn.readNetFromCaffe(str(deploy), str(model))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.enableFusion(False)  # keep every layer's own output (no conv+relu fusion)
    net.setInput(x)
    return dict(zip(names, net.forward(names)))


def _close(ours: np.ndarray, theirs: np.ndarray, what: str) -> None:
    if ours.shape != theirs.shape and ours.size == theirs.size:
        ours = ours.reshape(theirs.shape)  # OpenCV keeps InnerProduct outputs 2-D, like us; pooled 1x1 maps too
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != OpenCV {theirs.shape}"
    scale = float(np.abs(theirs).max()) or 1.0
    err = float(np.abs(ours - theirs).max()) / scale
    assert err <= TOL, f"{what}: max error {err:.2e} of scale {scale:.3g}"


def _input(shape, seed=1):
    c, h, w = shape
    # Caffe-like inputs: 0-255 pixels minus a mean, so magnitudes are realistic.
    return (np.random.default_rng(seed).random((2, c, h, w), dtype=np.float32) * 255 - 120).astype(np.float32)


@pytest.mark.parametrize("name", nets.NETS)
@pytest.mark.parametrize("with_deploy", [True, False], ids=["deploy+weights", "weights-only"])
def test_every_layer_matches_opencv(name, with_deploy, write_net, cv2):
    if not with_deploy and name in nets.DEPLOY_ONLY:
        pytest.skip(f"{name}: its deploy file holds layers its weights file lacks")
    deploy, model = write_net(name)
    from zoo.caffe import read_prototxt

    shape = plan_graph(read_prototxt(deploy), weights=read_caffemodel(model)).input_shape
    plan = convert(model, deploy if with_deploy else None, input_shape=shape)
    x = _input(plan.input_shape)
    names = [op.name for op in plan.ops]
    theirs = _opencv(cv2, deploy, model, x, names)
    graph = build_graph(plan)
    graph.load_state_dict(materialize(plan), assign=True)
    graph.eval()
    ours: dict[str, torch.Tensor] = {}
    for op in plan.ops:
        graph.get_submodule(op.module).register_forward_hook(
            # A Slice returns one tensor per top; OpenCV's forward(layer name) gives the first.
            lambda _m, _i, out, n=op.name: ours.__setitem__(n, (out[0] if isinstance(out, tuple) else out).clone()))
    with torch.no_grad():
        graph(torch.from_numpy(x))
    for n in names:
        _close(ours[n].numpy(), theirs[n], f"{name} layer {n!r}")


def test_weights_only_drops_training_layers_and_aux_heads(write_net):
    _deploy, model = write_net("googlenet")
    plan = convert(model, input_shape=(3, 64, 64))
    names = [op.name for op in plan.ops]
    assert not any(n.startswith("loss1/") and n != "loss1/classifier" for n in names)
    assert "loss1/classifier" not in names and "data" not in names and "loss" not in names
    assert names[-1] == "loss3/classifier"
    assert plan.input_blob == "data"


# ZooModel: logits, Caffe names as layers, preprocessing-free parity of the classifier output.
CASES = {
    "alexnet": ("fc8", ["conv2", "pool5", "fc7"]),
    "googlenet": ("loss3/classifier", ["pool5/7x7_s1", "inception_4e/output", "conv1/7x7_s2"]),
    "resnet": ("fc10", ["res2a", "scale_conv1", "pool5"]),
    "squeezenet": ("pool10", ["fire4/concat", "conv10"]),
    "nin": ("pool4", ["cccp8-1024", "pool2"]),
    "vgg_v1": ("fc8", ["conv3_3", "pool3"]),
    "misc": ("fc", ["pool_clip", "sum_coeff", "lrn_within"]),
    "layers": ("fc", ["prelu_fc", "deconv1", "crop", "sum"]),
    "layers_v1": ("fc", ["deconv1", "power", "slice"]),
    "interp": ("fc", ["zoom", "size"]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_zoo_model_logits_and_named_layers(name, write_net, cv2):
    deploy, model = write_net(name)
    out_layer, layers = CASES[name]
    plan = convert(model, deploy)
    zm = model_from_plan(plan, materialize(plan), name=name)
    x = _input(plan.input_shape, seed=3)
    theirs = _opencv(cv2, deploy, model, x, [out_layer, *layers])
    with torch.no_grad():
        logits = zm(torch.from_numpy(x))
        feats = zm.forward_layers(torch.from_numpy(x), layers)
    assert logits.shape == (2, 10)
    _close(logits.numpy(), theirs[out_layer].reshape(2, -1), f"{name} logits")
    for layer in layers:
        _close(feats[layer].numpy(), theirs[layer], f"{name} forward_layers {layer!r}")
    if name in ("squeezenet", "nin"):
        # No InnerProduct: the body ends at the pooled class scores, the head is the identity.
        assert isinstance(zm.head, torch.nn.Identity) and zm.num_features == 10
    else:
        assert isinstance(zm.head, torch.nn.Linear) and zm.body(torch.from_numpy(x)).shape[0] == 2


def test_probabilities_match_opencv_softmax(write_net, cv2):
    deploy, model = write_net("alexnet")
    plan = convert(model, deploy)
    zm = model_from_plan(plan, materialize(plan))
    x = _input(plan.input_shape)
    theirs = _opencv(cv2, deploy, model, x, ["prob"])["prob"]
    with torch.no_grad():
        ours = torch.softmax(zm(torch.from_numpy(x)), dim=1).numpy()
    _close(ours, theirs, "prob")
