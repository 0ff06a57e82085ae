"""Training recipes: per-architecture, paper-style defaults as named sets of overrides.

Owns: ``Recipe`` (``TrainConfig`` overrides plus the data augmentation and where the numbers come
from), ``RECIPES`` (one per reference architecture) and ``recipe_for(arch)``. A recipe is data: the
loop never special-cases an architecture. Standard library only (the config is built by the caller).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Recipe", "RECIPES", "recipe_for"]


@dataclass(frozen=True)
class Recipe:
    """A named set of ``TrainConfig`` overrides (``config``), the batch augmentation (``augment``, see
    ``zoo.finetune.datasets.AUGMENTATIONS``) and the provenance of the choice (``note``)."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    augment: str = "none"
    note: str = ""
    # A folder of larger images trains at no more than this side (None: up to datasets.MAX_INPUT_SIDE).
    # LeNet at the 132 px of a folder of photos scored 58% against 76% at 64 px (BENCHMARKS.md, #13).
    max_side: int | None = None


_RESNET = Recipe(
    "resnet",
    config=dict(optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="onecycle",
                epochs=30, batch_size=256, label_smoothing=0.1),
    augment="crop_flip_erase",
    note="He et al. 2016 CIFAR recipe (SGD momentum 0.9, wd 5e-4 here, lr 0.1 per 128 images, pad-crop + "
         "flip), with random erasing (Zhong et al. 2020: the Fashion-MNIST table's top rows use it), a "
         "one-cycle schedule and label smoothing as in the fast CIFAR-10 schedules (Myrtle ResNet-9, airbench)",
)

SMALL_SIDE = 64  # the networks built for 28-32 px digits and clothes train at no more than this on a folder

RECIPES: dict[str, Recipe] = {
    "softmax": Recipe("softmax", dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0, schedule="cosine",
                                      epochs=10, batch_size=128),
                      note="softmax regression by SGD, as the lecture's 1-layer network", max_side=SMALL_SIDE),
    "mlp_sigmoid": Recipe("mlp_sigmoid", dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=0.0,
                                              schedule="cosine", epochs=15, batch_size=128),
                          note="one sigmoid hidden layer of 625 units trained by SGD (the lecture's 98.2% MNIST "
                               "net)", max_side=SMALL_SIDE),
    "mlp_relu": Recipe("mlp_relu", dict(optimizer="adamw", lr=1e-3, weight_decay=1e-4, schedule="cosine",
                                        epochs=15, batch_size=128),
                       note="two ReLU layers of 625 with dropout 0.2 (input) / 0.5 (hidden), Adam: the "
                            "lecture's 'modern' MLP (99.0% on MNIST)", max_side=SMALL_SIDE),
    "lenet": Recipe("lenet", dict(optimizer="adamw", lr=3e-3, weight_decay=1e-4, schedule="onecycle",
                                  epochs=6, batch_size=128, label_smoothing=0.0),
                    augment="flip",
                    note="LeNet-style conv-pool-conv-pool-fc-fc with BatchNorm, AdamW with one-cycle: reaches "
                         "the Fashion-MNIST table's '2 Conv' rows in a few CPU minutes", max_side=SMALL_SIDE),
    "googlenet": Recipe("googlenet", dict(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                                          schedule="onecycle", epochs=20, batch_size=128, label_smoothing=0.1),
                        augment="crop_flip",
                        note="Szegedy et al. 2015 used SGD momentum 0.9; here with a one-cycle schedule for 28-32 px"),
    **{f"resnet{d}": Recipe(f"resnet{d}", _RESNET.config, _RESNET.augment, _RESNET.note)
       for d in (18, 34, 50, 101, 152)},
}


def recipe_for(arch: str) -> Recipe:
    """The recipe for ``arch`` (``lenet``, ``lenet.scratch`` or a builder name).

    Raises:
        KeyError: naming the architectures that have one.
    """
    key = arch.split(".", 1)[0]
    if key not in RECIPES:
        raise KeyError(f"no training recipe for {arch!r}; recipes exist for {', '.join(RECIPES)}")
    return RECIPES[key]
