"""Defaults chosen from the data and the model: what a fine-tuning run uses for each option left
None, and why.

Owns ``Choice`` (a value and the sentence that explains it, printed by ``zoo finetune`` and kept in
the run's record), ``choose_schedule`` (batch size, epochs, warm-up, early stopping and the head-alone
phase, from the number of training images and the strategy) and ``choose_lr`` (the LR finder, fastai's
``valley`` rule, on the parameters the run trains: on cached features for a head, which costs next to
nothing; on the images otherwise).

The numbers below were chosen on the folders of ``benchmarks/finetune_defaults.py`` (see
BENCHMARKS.md, "Defaults from the data"). May import ``zoo``; never ``zoo.cli``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .config import FinetuneConfig

__all__ = ["Choice", "choose_schedule", "choose_batch_size", "choose_lr", "head_patience", "planned_steps",
           "skip_image_sweep", "BODY_LR_FACTOR", "FEATURE_STEPS", "IMAGE_STEPS", "IMAGE_SWEEP_STEPS"]

BATCH_RANGE = (8, 64)  # the chosen batch size stays within these
STEPS_PER_EPOCH = 16  # the batch size is the largest power of two that still gives this many steps an epoch
IMAGE_STEPS, IMAGE_EPOCHS = 400, (5, 20)  # optimizer steps aimed at when images train, and the epoch bounds
# 16 and 400 (were 8 and 250, up to 30 epochs): on 400-500 images the batch halves to 16 and about as many
# epochs (17 -> 14 on photos100) take 1.6x the steps, nearer the small grid's best cells (BENCHMARKS.md,
# "Smaller batches"); the 20-epoch bound keeps the fewest images (photos20: 12 steps an epoch) where they were.
FEATURE_STEPS, FEATURE_EPOCHS = 500, (20, 200)  # the same for a head on cached features (a step costs ~nothing)
# After the head has trained alone, the body trains with the head at this multiple of the head's found
# learning rate: `full`'s body groups at their smaller scales (0.1-0.46x), `partial`'s unfrozen layers at
# the head's rate (strategies.PARTIAL_LR_SCALE). These figures are `full`'s. fastai's fine_tune halves
# it; here halving cost 3.7 points on the demo folder (test accuracy, 3 seeds: 87.3% at 0.5, 91.0% at 1,
# 84.5% at 2, BENCHMARKS.md "Defaults"; the body then at 0.01-0.22x), since the body groups' fractions
# already keep the body's steps small. With the body at 0.1-0.46x, 2 instead of 1 gave photos20 +1.5,
# mnist +0.6 and the demo folder -2.0 points (5 seeds): 1 kept.
BODY_LR_FACTOR = 1.0
FALLBACK_LR = 1e-3  # when the sweep shows no fall of the loss at all (said so in the log)
# The LR sweep on images (fastai's lr_find length). A run planning fewer optimizer steps than this skips
# it for AdamW's usual FALLBACK_LR: a sweep dearer than the training it serves is not worth its time.
# timm's ResNet-18 from random weights, photos20, 3 epochs (36 steps): the sweep picked 0.0006-0.0009 and
# took 45 s of seed 0's 79 s run; 1e-3 tested 34.7% against the sweep's 33.8% (3 seeds; BENCHMARKS.md,
# "zoo finetune vs fastai fine_tune").
IMAGE_SWEEP_STEPS = 100


@dataclass(frozen=True)
class Choice:
    """A value the run chose and why (one sentence)."""

    value: Any
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "why": self.why}

    def line(self, name: str) -> str:
        """What ``zoo finetune`` and ``zoo train`` print: ``chose NAME VALUE: WHY``."""
        value = f"{self.value:g}" if isinstance(self.value, float) else self.value
        return f"chose {name} {value}: {self.why}"


def choose_batch_size(n_train: int) -> Choice:
    """The largest power of two giving at least ``STEPS_PER_EPOCH`` steps an epoch, within ``BATCH_RANGE``.

    Example:
        >>> choose_batch_size(96).value, choose_batch_size(480).value, choose_batch_size(50_000).value
        (8, 16, 64)
    """
    low, high = BATCH_RANGE
    size = 2 ** int(math.log2(max(1, n_train // STEPS_PER_EPOCH))) if n_train >= STEPS_PER_EPOCH else 1
    size = max(low, min(high, size))
    return Choice(size, f"{n_train} training images: batches of {size} give {math.ceil(n_train / size)} steps an "
                        f"epoch (batch size a power of two in {low}-{high}, at least {STEPS_PER_EPOCH} steps when "
                        "the images allow)")


def _epochs(steps_per_epoch: int, target: int, bounds: tuple[int, int], what: str) -> Choice:
    low, high = bounds
    epochs = max(low, min(high, math.ceil(target / steps_per_epoch)))
    return Choice(epochs, f"{epochs} epochs of {steps_per_epoch} steps ({what}: about {target} steps aimed at, "
                          f"{low}-{high} epochs)")


def head_patience(epochs: int) -> int:
    """Early stopping of a head on cached features: a third of its epochs, at least 10."""
    return max(10, epochs // 3)


def _patience(epochs: int, floor: int) -> Choice:
    patience = max(floor, epochs // 3)
    return Choice(patience, f"stop after {patience} epochs without a better validation figure (a third of "
                            f"{epochs}, at least {floor})")


def choose_schedule(config: FinetuneConfig, n_train: int) -> tuple[FinetuneConfig, dict[str, Choice]]:
    """Fill the schedule fields left None (all but ``lr``, which needs the model: ``choose_lr``).

    A head on cached features (``linear``, and the head-alone phase of ``full``/``partial`` from
    pretrained weights) gets many cheap epochs; images get about ``IMAGE_STEPS`` optimizer steps.

    Returns:
        The config with those fields set, and a ``Choice`` per field it set.
    """
    choices: dict[str, Choice] = {}
    if config.batch_size is None:
        choices["batch_size"] = choose_batch_size(n_train)
    batch = config.batch_size or choices["batch_size"].value
    steps = max(1, math.ceil(n_train / batch))
    on_features = config.strategy == "linear" and config.cache_features
    if config.epochs is None:
        choices["epochs"] = (_epochs(steps, FEATURE_STEPS, FEATURE_EPOCHS, "a head on cached features") if on_features
                             else _epochs(steps, IMAGE_STEPS, IMAGE_EPOCHS, "training on images"))
    epochs = config.epochs or choices["epochs"].value
    if config.early_stopping is None:
        choices["early_stopping"] = _patience(epochs, 10 if on_features else 5)
    if config.warmup_epochs is None:
        warm = 0.0 if config.strategy == "linear" else 1.0
        choices["warmup_epochs"] = Choice(warm, "no warm-up for a new head alone" if not warm else
                                          "one epoch of warm-up before the body's weights move" if config.pretrained
                                          else "one epoch of warm-up from random weights")
    if config.head_epochs is None:
        if config.strategy == "linear" or not config.pretrained:
            choices["head_epochs"] = Choice(0, "no head-alone phase (" + ("the head is all that trains"
                                            if config.strategy == "linear" else "no pretrained features") + ")")
        else:
            head = _epochs(steps, FEATURE_STEPS, FEATURE_EPOCHS, "the new head alone on cached features first")
            choices["head_epochs"] = head
    return config.with_defaults({k: c.value for k, c in choices.items()}), choices


def planned_steps(config: FinetuneConfig, n_train: int) -> int:
    """The optimizer steps a run with this (chosen) schedule plans on ``n_train`` images."""
    steps = math.ceil(n_train / (config.batch_size or 1)) * (config.epochs or 0)
    return min(steps, config.train.max_steps) if config.train.max_steps else steps


def skip_image_sweep(config: FinetuneConfig, n_train: int) -> Choice | None:
    """AdamW's usual learning rate instead of an LR sweep on the images when the run plans fewer steps
    than the sweep would take (``IMAGE_SWEEP_STEPS``); None when the sweep is worth running (SGD always
    sweeps: no one rate suits it across batch sizes)."""
    steps = planned_steps(config, n_train)
    if config.train.optimizer != "adamw" or steps >= IMAGE_SWEEP_STEPS:
        return None
    return Choice(FALLBACK_LR, f"AdamW's usual rate: the run plans {steps} steps, fewer than the "
                               f"{IMAGE_SWEEP_STEPS} an LR sweep on the images takes (give --lr to set one; a run of "
                               f"{IMAGE_SWEEP_STEPS} steps or more sweeps)")


def choose_lr(sweep_result: Any, *, what: str, factor: float = 1.0) -> Choice:
    """The learning rate from an LR sweep (``zoo.finetune.lr_find.LRFindResult``): its valley
    suggestion times ``factor``, with the reason. A sweep without a fall gives ``FALLBACK_LR``, said so."""
    if sweep_result.suggestion is None:
        return Choice(FALLBACK_LR * factor, f"the LR sweep on {what} showed no fall of the loss; {FALLBACK_LR:g} "
                                            "taken" + (f" x {factor:g}" if factor != 1 else ""))
    lr = float(f"{sweep_result.suggestion * factor:.3g}")
    scaled = f" x {factor:g} for the head once the body trains (fastai's fine_tune rule)" if factor != 1 else ""
    return Choice(lr, f"LR finder on {what}: the valley of the loss at {sweep_result.suggestion:.3g}{scaled}")
