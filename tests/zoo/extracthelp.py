"""Small real models and real images for the extraction tests (imported by them, not a test module)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import nn

from zoo.model import ZooModel
from zoo.registry.schema import Preprocessing


def tiny_model(seed: int = 0, size: int = 32) -> ZooModel:
    """A small conv net in the zoo contract: quick enough for many images in a test."""
    torch.manual_seed(seed)
    body = nn.Sequential()
    body.add_module("stem", nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU()))
    body.add_module("stage", nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()))
    body.add_module("pool", nn.AdaptiveAvgPool2d(1))
    body.add_module("flat", nn.Flatten())
    for m in body.modules():  # non-trivial BatchNorm statistics, so eval mode matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    pre = Preprocessing(input_size=(3, size, size), resize=size + size // 8)
    return ZooModel(body, nn.Linear(16, 5), num_features=16, name="tiny", preprocessing=pre).eval()


def photo(seed: int, size=(48, 40)) -> Image.Image:
    """Smooth colour gradients plus noise: JPEG-realistic content."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = np.stack([np.sin(xx * rng.uniform(2, 8) + c) * np.cos(yy * rng.uniform(2, 8)) for c in range(3)], -1)
    arr = (base * 90 + 128 + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
    return Image.fromarray(arr)


def reference(model: ZooModel, images: list[Image.Image], layer: str, pool: str | None = "avg") -> np.ndarray:
    """The model's own forward at ``layer`` on the same preprocessed tensors."""
    x = torch.stack([model.transforms(im) for im in images])
    with torch.no_grad():
        out = model.forward_layers(x, [layer])[layer]
    if out.ndim == 4 and pool == "avg":
        out = out.mean(dim=(2, 3))
    if out.ndim == 3 and pool == "avg":
        out = out.mean(dim=1)
    return out.numpy()


def saved_timm(directory, seed: int):
    """timm's ``test_resnet`` (random weights from ``seed``, 32 px) saved so that ``zoo.load(directory)``
    rebuilds it: a run folder as ``zoo finetune`` leaves one. Returns the folder."""
    import timm

    from zoo.factory import save_model
    from zoo.model import BuildSpec, split_classifier

    torch.manual_seed(seed)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=5)
    body, head = split_classifier(net, "fc")
    model = ZooModel(body, head, num_features=head.in_features, name="tiny-resnet", base="tiny-resnet",
                     preprocessing=Preprocessing(input_size=(3, 32, 32), resize=36),
                     build=BuildSpec(library="timm", builder="test_resnet", in_chans=3, num_classes=5))
    return save_model(model, directory)
