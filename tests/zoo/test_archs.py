"""Every reference architecture builds for 1 and 3 channels and any number of classes, runs at 28 and
32 px, and ends in a single Linear classifier at the path ``build`` returns (the ZooModel contract)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from zoo import archs
from zoo.errors import RegistryError
from zoo.model import split_classifier

torch.set_num_threads(1)  # the suite shares 2 cores

FLAT = {"softmax", "mlp_sigmoid", "mlp_relu"}  # these take the input size as an option
SMALL_STEM = {"googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}


@pytest.mark.parametrize("builder", list(archs.BUILDERS))
@pytest.mark.parametrize(("in_chans", "size", "num_classes"), [(1, 28, 10), (3, 32, 7), (1, 32, 2), (3, 28, 1)])
def test_builds_and_runs(builder, in_chans, size, num_classes):
    kwargs = {"image_size": size} if builder in FLAT else {"small_input": True} if builder in SMALL_STEM else {}
    torch.manual_seed(0)
    net, path = archs.build(builder, in_chans=in_chans, num_classes=num_classes, **kwargs)
    net.eval()
    x = torch.randn(2, in_chans, size, size)
    with torch.no_grad():
        logits = net(x)
    assert logits.shape == (2, num_classes)
    assert torch.isfinite(logits).all()
    classifier = net.get_submodule(path)
    assert isinstance(classifier, nn.Linear) and classifier.out_features == num_classes
    first = net.get_submodule(archs.FIRST_LAYER[builder])
    assert (first.in_channels if isinstance(first, nn.Conv2d) else first.in_features) in (
        in_chans, in_chans * size * size)
    body, head = split_classifier(net, path)
    with torch.no_grad():
        feats = body(x)
        assert feats.shape == (2, classifier.in_features)  # pooled, flattened pre-logits
        torch.testing.assert_close(head(feats), logits)


@pytest.mark.parametrize("builder", ["resnet18", "googlenet"])
def test_standard_stem_keeps_imagenet_shape(builder):
    net, _ = archs.build(builder, in_chans=1, num_classes=3)
    assert net.get_submodule(archs.FIRST_LAYER[builder]).stride == (2, 2)
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 1, 64, 64)).shape == (1, 3)


def test_small_stem_is_3x3_stride_1_without_maxpool():
    net, _ = archs.build("resnet50", in_chans=3, num_classes=10, small_input=True)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)


def test_lenet_without_batchnorm_and_options():
    net, _ = archs.build("lenet", in_chans=1, num_classes=5, batchnorm=False, channels=[8, 16], hidden=32)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert net.fc.in_features == 32
    mlp, _ = archs.build("mlp_relu", in_chans=1, num_classes=10, hidden=[100, 50])
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [100, 50, 10]


def test_unknown_builder_and_option_name_the_valid_ones():
    with pytest.raises(RegistryError, match="Did you mean resnet18"):
        archs.build("resnet19", in_chans=3, num_classes=10)
    with pytest.raises(RegistryError, match="small_input"):
        archs.build("resnet18", in_chans=3, num_classes=10, small_inputs=True)
