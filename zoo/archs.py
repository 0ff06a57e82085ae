"""The zoo's own reference architectures, from the lecture's ladder to ResNet.

Owns: ``build(builder, *, in_chans, num_classes, **kwargs) -> (network, classifier_path)`` for
``softmax`` (flatten + one Linear), ``mlp_sigmoid`` (one sigmoid hidden layer), ``mlp_relu`` (ReLU +
dropout hidden layers), ``lenet`` (conv-pool-conv-pool-fc-fc, BatchNorm optional), ``googlenet``
(Inception v1) and ``resnet18/34/50/101/152`` (torchvision's builders, adapted to any number of input
channels, with a small-input stem for 28-32 px images when ``small_input=True``).

Every network ends ``... -> pooled/flattened features -> fc`` with the classifier a single
``nn.Linear`` at the returned path (always ``"fc"``), so ``zoo.model.split_classifier`` turns it into a
``ZooModel(body, head)``. Imports torch and torchvision; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import inspect
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torchvision.models as tvm
from torch import nn
from torchvision.models.googlenet import BasicConv2d

from .errors import RegistryError, close_matches

__all__ = ["build", "BUILDERS", "SoftmaxRegression", "MLP", "LeNet"]

CLASSIFIER = "fc"


class SoftmaxRegression(nn.Module):
    """The lecture's 1-layer network: pixels -> logits (softmax lives in the loss)."""

    def __init__(self, in_chans: int, num_classes: int, *, image_size: int = 28):
        super().__init__()
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(in_chans * image_size * image_size, num_classes)

    def forward(self, x):
        return self.fc(self.flatten(x))


class MLP(nn.Module):
    """Fully connected hidden layers, then ``fc``. ``act`` is ``sigmoid`` (the lecture's 625-unit
    hidden layer) or ``relu`` (the "modern" net: two ReLU layers with dropout)."""

    def __init__(self, in_chans: int, num_classes: int, *, image_size: int = 28, hidden: tuple[int, ...] = (625,),
                 act: str = "sigmoid", dropout: float = 0.0, input_dropout: float = 0.0):
        super().__init__()
        acts: dict[str, Callable[[], nn.Module]] = {"sigmoid": nn.Sigmoid, "relu": lambda: nn.ReLU(inplace=True)}
        if act not in acts:
            raise RegistryError(f"MLP activation must be sigmoid or relu, got {act!r}", field="architecture.kwargs")
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten(1))]
        if input_dropout:
            layers.append(("drop0", nn.Dropout(input_dropout)))
        width = in_chans * image_size * image_size
        for i, h in enumerate(hidden, 1):
            layers += [(f"fc{i}", nn.Linear(width, h)), (f"act{i}", acts[act]())]
            if dropout:
                layers.append((f"drop{i}", nn.Dropout(dropout)))
            width = h
        self.features = nn.Sequential(OrderedDict(layers))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.fc(self.features(x))


class LeNet(nn.Module):
    """A LeNet-style convnet: conv-pool-conv-pool, then one hidden fully connected layer and ``fc``.

    Modernised the usual way (ReLU, max-pooling, 3x3 convolutions with padding, optional BatchNorm,
    dropout before the classifier). An adaptive pool makes it size-agnostic (28 and 32 px both give
    7x7 maps before the hidden layer).
    """

    def __init__(self, in_chans: int, num_classes: int, *, channels: tuple[int, int] = (32, 64), hidden: int = 128,
                 batchnorm: bool = True, dropout: float = 0.25):
        super().__init__()
        c1, c2 = channels

        def block(cin: int, cout: int, i: int) -> list[tuple[str, nn.Module]]:
            out: list[tuple[str, nn.Module]] = [(f"conv{i}", nn.Conv2d(cin, cout, 3, padding=1, bias=not batchnorm))]
            if batchnorm:
                out.append((f"bn{i}", nn.BatchNorm2d(cout)))
            return out + [(f"relu{i}", nn.ReLU(inplace=True)), (f"pool{i}", nn.MaxPool2d(2))]

        self.features = nn.Sequential(OrderedDict([*block(in_chans, c1, 1), *block(c1, c2, 2)]))
        self.pool = nn.AdaptiveAvgPool2d((7, 7))
        self.flatten = nn.Flatten(1)
        self.hidden = nn.Sequential(OrderedDict([("fc1", nn.Linear(c2 * 49, hidden)), ("relu", nn.ReLU(inplace=True)),
                                                 ("drop", nn.Dropout(dropout))]))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc(self.hidden(self.flatten(self.pool(self.features(x)))))


def _softmax(in_chans: int, num_classes: int, image_size: int = 28) -> nn.Module:
    return SoftmaxRegression(in_chans, num_classes, image_size=image_size)


def _mlp_sigmoid(in_chans: int, num_classes: int, image_size: int = 28, hidden: int = 625) -> nn.Module:
    return MLP(in_chans, num_classes, image_size=image_size, hidden=(hidden,), act="sigmoid")


def _mlp_relu(in_chans: int, num_classes: int, image_size: int = 28, hidden: list[int] | tuple[int, ...] = (625, 625),
              dropout: float = 0.5, input_dropout: float = 0.2) -> nn.Module:
    return MLP(in_chans, num_classes, image_size=image_size, hidden=tuple(hidden), act="relu", dropout=dropout,
               input_dropout=input_dropout)


def _lenet(in_chans: int, num_classes: int, channels: list[int] | tuple[int, int] = (32, 64), hidden: int = 128,
           batchnorm: bool = True, dropout: float = 0.25) -> nn.Module:
    return LeNet(in_chans, num_classes, channels=tuple(channels), hidden=hidden, batchnorm=batchnorm, dropout=dropout)


def _googlenet(in_chans: int, num_classes: int, small_input: bool = False, dropout: float = 0.2) -> nn.Module:
    net = tvm.googlenet(weights=None, num_classes=num_classes, aux_logits=False, transform_input=False,
                    init_weights=True, dropout=dropout)
    if small_input:
        # 28-32 px: a 3x3 stride-1 stem and no first max-pool, so the inception blocks see 14-16 px maps
        # (as the CIFAR ports of GoogLeNet do) instead of 1-2 px.
        net.conv1 = BasicConv2d(in_chans, 64, kernel_size=3, stride=1, padding=1)
        net.maxpool1 = nn.Identity()
    elif in_chans != 3:
        net.conv1 = BasicConv2d(in_chans, 64, kernel_size=7, stride=2, padding=3)
    return net


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def make(in_chans: int, num_classes: int, small_input: bool = False, zero_init_residual: bool = False) -> nn.Module:
        net = getattr(tvm, f"resnet{depth}")(weights=None, num_classes=num_classes,
                                             zero_init_residual=zero_init_residual)
        if small_input:
            # The CIFAR stem of He et al. (2016, sec. 4.2): 3x3 stride 1, no max-pool.
            net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_chans != 3:
            net.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        if small_input or in_chans != 3:
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        return net

    make.__name__ = f"_resnet{depth}"
    return make


BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "softmax": _softmax,
    "mlp_sigmoid": _mlp_sigmoid,
    "mlp_relu": _mlp_relu,
    "lenet": _lenet,
    "googlenet": _googlenet,
    **{f"resnet{d}": _resnet(d) for d in (18, 34, 50, 101, 152)},
}

# Module path of the first convolution (or first Linear) per builder, for registry heads.
FIRST_LAYER = {"softmax": "fc", "mlp_sigmoid": "features.fc1", "mlp_relu": "features.fc1",
               "lenet": "features.conv1", "googlenet": "conv1.conv",
               **{f"resnet{d}": "conv1" for d in (18, 34, 50, 101, 152)}}


def build(builder: str, *, in_chans: int, num_classes: int, **kwargs: Any) -> tuple[nn.Module, str]:
    """Build a reference architecture with random weights.

    Args:
        builder: one of ``BUILDERS`` (``softmax``, ``mlp_sigmoid``, ``mlp_relu``, ``lenet``, ``googlenet``,
            ``resnet18`` ... ``resnet152``).
        in_chans: input channels (1 for grayscale, 3 for RGB).
        num_classes: outputs of the classifier.
        **kwargs: builder options: ``image_size`` (softmax/MLPs: the square input side, default 28),
            ``hidden``, ``dropout``, ``input_dropout`` (MLPs), ``channels``, ``hidden``, ``batchnorm``,
            ``dropout`` (lenet), ``small_input`` (googlenet, resnets: a stem for 28-32 px inputs),
            ``zero_init_residual`` (resnets).

    Returns:
        ``(network, "fc")``: the network and the module path of its classifier (a single Linear whose
        input is the pooled, flattened feature vector).

    Raises:
        RegistryError: an unknown builder or option, naming the valid ones.

    Example:
        >>> net, classifier = build("lenet", in_chans=1, num_classes=10)
        >>> classifier
        'fc'
    """
    make = BUILDERS.get(builder)
    if make is None:
        near = close_matches(builder, BUILDERS)
        hint = f" Did you mean {', '.join(near)}?" if near else ""
        raise RegistryError(f"{builder!r} is not a zoo reference architecture.{hint} "
                            f"Builders: {', '.join(BUILDERS)}", field="architecture.builder")
    if in_chans < 1 or num_classes < 1:
        raise RegistryError(f"{builder}: in_chans and num_classes must be positive, got {in_chans}, {num_classes}",
                            field="architecture")
    allowed = [p for p in inspect.signature(make).parameters if p not in ("in_chans", "num_classes")]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise RegistryError(f"{builder} takes no option(s) {unknown}; its options are {allowed}",
                            field="architecture.kwargs")
    return make(in_chans, num_classes, **kwargs), CLASSIFIER
