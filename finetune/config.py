"""``FinetuneConfig``: every option of a fine-tuning or from-scratch run, as one frozen object.

Owns: ``FinetuneConfig`` (the fields, each commented; the loop's ``TrainConfig`` nested as ``train``),
``SCHEDULE_FIELDS`` (the fields a run chooses for itself when they are None: see
``zoo.finetune.defaults``) and the three ways to make one:
the constructor, ``from_options`` (flat keywords such as ``lr=`` or ``batch_size=``, as ``fit`` and the
CLI take them) and ``from_dict`` (a run's ``config.json``; unknown keys are refused). Change an option
with ``dataclasses.replace(config, lr=1e-3)`` (or ``config.with_options(batch_size=32)`` for a loop
field): a search over hyper-parameters varies this one object. May import ``zoo``; never ``zoo.cli``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ConfigError

from .datasets import AUGMENTATIONS
from .loop import TrainConfig
from .strategies import HEADS, STRATEGIES

__all__ = ["FinetuneConfig", "SCHEDULE_FIELDS", "MONITOR"]

# The loop fields a run chooses for itself (from the data and the model when fine-tuning, from the
# recipe from scratch): they live at the top level of FinetuneConfig, never in its nested ``train``.
SCHEDULE_FIELDS = ("epochs", "lr", "warmup_epochs", "batch_size", "early_stopping")


# What a run's best epoch (its saved weights) and early stopping go by: the validation accuracy, the
# figure a user reads. The loop's own default, the validation loss, can prefer a confident but less
# accurate epoch (on the demo folder it kept weights 5 points worse on the test images).
MONITOR = "val_acc"


def _train_defaults() -> TrainConfig:
    return TrainConfig(monitor=MONITOR)


@dataclass(frozen=True, repr=False)
class FinetuneConfig:
    """Every option of a run. ``fit``, ``setup``, ``lr_find`` and ``train_scratch`` take one.

    The schedule fields (``epochs``, ``lr``, ``warmup_epochs``, ``batch_size``, ``early_stopping``)
    and ``head_epochs`` may be None: the run then chooses them (fine-tuning: from the number of images
    and with the LR finder, ``zoo.finetune.defaults``; from scratch: the architecture's recipe on a
    built-in data set, the same choices as fine-tuning on a folder) and records the values it used and
    why. Everything else the loop knows (optimizer, seed, device...) is
    in ``train``; ``train.seed`` also draws the validation split.

    Example:
        >>> cfg = FinetuneConfig(strategy="full", lr=1e-3)
        >>> cfg = dataclasses.replace(cfg, epochs=5)
        >>> cfg.with_options(batch_size=32, seed=1).train.seed
        1
    """

    # -- what trains (zoo.finetune.strategies)
    strategy: str = "linear"  # linear: frozen body, new head; partial: train from `unfreeze_from` on; full: all
    pretrained: bool = True  # start from the model's weights; False: the same network from random weights
    cut: str | None = None  # keep the network up to this layer (average-pooled) and put the new head after it
    unfreeze_from: str | None = None  # partial: the first layer that trains (None: the last third of the body)
    head: str = "linear"  # the new head: "linear", or "mlp" (Linear, ReLU, Dropout, Linear)
    hidden: int = 256  # the MLP head's hidden width
    dropout: float = 0.0  # dropout before the head's last Linear
    body_lr_scale: float | None = None  # the body's LR relative to the head's: partial, its unfrozen layers (None:
    #   1); full, its earliest group, the later ones growing geometrically to the head's (None: 0.1)
    arch_options: dict[str, Any] | None = None  # from scratch: options of the architecture's builder over its
    #   entry's, e.g. {"hidden": [256, 256], "dropout": 0.3} for mlp_relu (zoo.archs.build names the valid ones)
    # -- the data
    valid_pct: float = 0.2  # share of each class held out for validation when the folder has no val/
    hold_out: bool = False  # built-in data sets: hold valid_pct of each training class out for validation (the
    #   test split is then never used while training; `zoo tune` searches this way)
    augment: bool | str = True  # True: the run's default (fine-tuning: sized to the images and the input,
    #   zoo.finetune.augment; from scratch: the recipe's); False: none; or a kind for in-memory data
    #   (datasets.AUGMENTATIONS)
    cache_features: bool = True  # linear: train the head on the body's features, computed once and cached
    classes: tuple[int, ...] | None = None  # built-in data sets: keep these class indices (relabelled 0..k-1)
    input_size: int | None = None  # from scratch on a folder: the square input side (None: from the images)
    grey: bool | None = None  # from scratch on a folder: one channel or three (None: from the images)
    # -- the record
    plots: bool = True  # draw curves.png and confusion.png at the end (a search draws them for its best trial only)
    # -- the schedule (None: chosen by the run, see above)
    epochs: int | None = None  # passes over the training data
    lr: float | None = None  # peak learning rate of the head (earlier layers get fractions of it)
    warmup_epochs: float | None = None  # linear warm-up, in epochs
    batch_size: int | None = None  # samples per step (DDP: per process)
    early_stopping: int | None = None  # stop after this many epochs without a better monitored value; 0: never
    head_epochs: int | None = None  # full/partial from pretrained weights: epochs of the new head alone on the
    #   frozen body's cached features before the body trains (fastai's fine_tune shape); 0: no such phase
    # -- everything else the loop knows; its epochs, lr and warmup_epochs are the fields above
    train: TrainConfig = field(default_factory=_train_defaults)

    def __post_init__(self) -> None:
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("head", self.head, HEADS)
        if self.unfreeze_from is not None and self.strategy != "partial":
            raise ConfigError(f"unfreeze_from={self.unfreeze_from!r} applies to strategy 'partial' only (got "
                              f"{self.strategy!r}); pass strategy='partial' or drop unfreeze_from.",
                              option="unfreeze_from")
        if self.head_epochs and self.strategy == "linear":
            raise ConfigError(f"head_epochs={self.head_epochs} trains the new head alone before the body: it applies "
                              "to strategies 'full' and 'partial'; 'linear' trains only the head anyway (use epochs).",
                              option="head_epochs")
        if not 0.0 < self.valid_pct < 1.0:
            raise ConfigError(f"valid_pct must be between 0 and 1 (exclusive), got {self.valid_pct}; 0.2 holds "
                              "out a fifth of each class.", option="valid_pct")
        if isinstance(self.augment, str):
            _choice("augment", self.augment, AUGMENTATIONS)
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        for name, low in (("epochs", 1), ("lr", 0.0), ("input_size", 8), ("hidden", 1), ("batch_size", 1),
                          ("early_stopping", 0), ("head_epochs", 0)):
            value = getattr(self, name)
            if value is not None and (value <= low if name == "lr" else value < low):
                raise ConfigError(f"{name} must be {'> 0' if name == 'lr' else f'>= {low}'}, got {value}.",
                                  option=name)
        _check_search_options(self)
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train must be a TrainConfig, got {type(self.train).__name__}; build one with "
                              "FinetuneConfig.from_options(...).", option="train")
        defaults = TrainConfig()
        moved = [n for n in SCHEDULE_FIELDS if getattr(self.train, n) != getattr(defaults, n)]
        if moved:
            raise ConfigError(f"set {', '.join(moved)} on FinetuneConfig itself, not on its train config "
                              "(the run chooses them when they are None).", option=moved[0])

    def __repr__(self) -> str:
        # Only what differs from the defaults (the nested train config's schedule fields are unused
        # and would read as if they applied); the text evaluates back to an equal config.
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)
                 if f.name != "train" and getattr(self, f.name) != f.default]
        base = TrainConfig()
        inner = [f"{f.name}={getattr(self.train, f.name)!r}" for f in dataclasses.fields(TrainConfig)
                 if f.name not in SCHEDULE_FIELDS and getattr(self.train, f.name) != getattr(base, f.name)]
        if inner:
            shown.append(f"train=TrainConfig({', '.join(inner)})")
        return f"FinetuneConfig({', '.join(shown)})"

    # -- views ------------------------------------------------------------------------------------

    @property
    def seed(self) -> int:
        """The seed of the split, the new weights and the loop."""
        return self.train.seed

    @property
    def resolved(self) -> bool:
        """True when every schedule field has a value."""
        return all(getattr(self, n) is not None for n in SCHEDULE_FIELDS)

    def with_defaults(self, defaults: dict[str, Any]) -> FinetuneConfig:
        """This config with every field that is None filled in from ``defaults`` (a dict of field
        names: the schedule fields, ``head_epochs``)."""
        return dataclasses.replace(self, **{n: v for n, v in defaults.items() if getattr(self, n) is None})

    def loop_config(self) -> TrainConfig:
        """The ``TrainConfig`` the loop runs with (``train`` plus the schedule fields).

        Raises:
            ConfigError: a schedule field is still None (call ``with_defaults`` first).
        """
        missing = [n for n in SCHEDULE_FIELDS if getattr(self, n) is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)} not chosen yet; call with_defaults() first.", option=missing[0])
        values = {n: getattr(self, n) for n in SCHEDULE_FIELDS}
        values["early_stopping"] = values["early_stopping"] or None  # 0 here is the loop's None: never
        return dataclasses.replace(self.train, **values)

    # -- building ---------------------------------------------------------------------------------

    def with_options(self, **options: Any) -> FinetuneConfig:
        """A copy with flat options changed: names of this class's fields, or of ``TrainConfig``'s
        (``batch_size``, ``seed``, ``device``...), which go into ``train``.

        Raises:
            ConfigError: an unknown name (the message lists the valid ones) or a bad value.
        """
        own = {f.name for f in dataclasses.fields(self)} - {"train"}
        loop = {f.name for f in dataclasses.fields(TrainConfig)} - set(SCHEDULE_FIELDS)
        unknown = sorted(set(options) - own - loop)
        if unknown:
            valid = sorted(own | loop)
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; valid options: {', '.join(valid)}.",
                              option=unknown[0], valid=valid)
        top = {k: v for k, v in options.items() if k in own}
        inner = {k: v for k, v in options.items() if k in loop}
        train = dataclasses.replace(self.train, **inner) if inner else self.train
        return dataclasses.replace(self, **top, train=train)

    @classmethod
    def from_options(cls, **options: Any) -> FinetuneConfig:
        """``FinetuneConfig().with_options(**options)``: what ``fit(..., lr=1e-3, batch_size=32)`` builds."""
        return cls().with_options(**options)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; ``from_dict`` reads it back to an equal config."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "train"}
        out["classes"] = list(self.classes) if self.classes is not None else None
        out["arch_options"] = dict(self.arch_options) if self.arch_options is not None else None
        out["train"] = {k: v for k, v in self.train.to_dict().items() if k not in SCHEDULE_FIELDS}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        """The inverse of ``to_dict``.

        Raises:
            ConfigError: an unknown key, at the top or in ``train`` (a typo must not be ignored).
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a run config must be a JSON object, got {type(data).__name__}.")
        data = _moved_to_top(data)
        names = {f.name for f in dataclasses.fields(cls)}
        loop = {f.name for f in dataclasses.fields(TrainConfig)} - set(SCHEDULE_FIELDS)
        unknown = sorted(set(data) - names) + [f"train.{k}" for k in sorted(set(data.get("train") or {}) - loop)]
        if unknown:
            raise ConfigError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))} "
                              f"and train.{{{', '.join(sorted(loop))}}}.", option=unknown[0],
                              valid=sorted(names))
        values = dict(data)
        train = TrainConfig(**(values.pop("train", None) or {}))
        if values.get("classes") is not None:
            values["classes"] = tuple(values["classes"])
        return cls(**values, train=train)



def _check_search_options(config: FinetuneConfig) -> None:
    """The options a hyper-parameter search varies beyond a plain run's: ``body_lr_scale`` (pretrained
    body layers that train) and ``arch_options`` (from random weights only)."""
    scale = config.body_lr_scale
    if scale is not None and (config.strategy == "linear" or not config.pretrained):
        raise ConfigError(f"body_lr_scale applies when pretrained body layers train (strategy partial or full, "
                          f"pretrained=True); got strategy={config.strategy!r}, pretrained={config.pretrained}. "
                          "Drop body_lr_scale.", option="body_lr_scale")
    if scale is not None and scale <= 0:
        raise ConfigError(f"body_lr_scale must be > 0, got {scale}.", option="body_lr_scale")
    if config.arch_options is None:
        return
    if not isinstance(config.arch_options, dict):
        raise ConfigError(f"arch_options must be a dict of builder options, got "
                          f"{type(config.arch_options).__name__}.", option="arch_options")
    if config.pretrained:
        raise ConfigError("arch_options change the architecture, so they apply to training from random "
                          "weights (pretrained=False, zoo train); fine-tuning keeps the model's.",
                          option="arch_options")


def _moved_to_top(data: dict[str, Any]) -> dict[str, Any]:
    """A config written before ``batch_size`` and ``early_stopping`` became fields the run chooses:
    they were in ``train`` (where None meant no early stopping), so they move up, with their values."""
    train = data.get("train")
    if not isinstance(train, dict) or not {"batch_size", "early_stopping"} & set(train):
        return data
    train = dict(train)
    moved = {"batch_size": train.pop("batch_size", None), "early_stopping": train.pop("early_stopping", None) or 0}
    return {**{k: v for k, v in moved.items() if k not in data}, **data, "train": train}


def _choice(option: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{option} must be one of {', '.join(valid)}, got {value!r}.", option=option,
                          valid=valid)
