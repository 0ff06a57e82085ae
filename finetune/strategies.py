"""Strategies that reuse part of a pretrained network: which layers train, at which learning rate.

Owns: ``prepare`` (cut the network at a named layer, put a new linear or MLP head on it, then freeze
per strategy), ``Plan`` (the optimizer's parameter groups and a record of what was frozen), and the
layer-group split behind discriminative learning rates.

Strategies:
  * ``linear``: the whole body is frozen; only the new head trains (``fit`` caches the body's features).
  * ``partial``: the body is frozen up to a named layer (module order of ``named_modules``); that layer
    and everything after it train, at the head's learning rate.
  * ``full``: everything trains; the body is split into contiguous groups of about equal size whose
    learning rates grow geometrically from 1/10 of the head's (earliest layers) towards the head's.

BatchNorm and Dropout layers inside a frozen part are listed in ``ZooModel.frozen_modules`` so they
stay in eval mode during training: their running statistics never move.

Works only through the ZooModel contract (``body``, ``head``, ``resolve_layer``, ``cut``,
``reset_classifier``); never reaches into architecture-specific attributes. May import ``zoo``;
never ``zoo.cli``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError
from zoo.model import ZooModel

__all__ = ["STRATEGIES", "HEADS", "Plan", "prepare", "layer_groups", "FULL_BODY_LR_SCALE", "FULL_GROUPS",
           "PARTIAL_LR_SCALE"]

STRATEGIES = ("linear", "partial", "full")
HEADS = ("linear", "mlp")
FULL_GROUPS = 4  # body groups + the head for ``full``: lr scales 0.1, 0.22, 0.46, 1
# The earliest body group's scale for ``full``. fastai's fine_tune uses 1/100; with it the body hardly
# moved, and on folders unlike the pretraining data a network from random weights won. Test accuracy,
# 5 seeds, lenet.fmnist5 (BENCHMARKS.md, "Defaults"): photos20 74.2 -> 78.4 (from scratch 77.1), real
# MNIST digits 89.1 -> 91.4 (from scratch 93.1), the demo folder 88.8 -> 90.2; the real ImageNet
# MobileNetV2 on photos20 (3 epochs) gained too. A scale of 1 (no discriminative rates) lifts the ImageNet
# MobileNetV2 on photos100 from 85.1 to 87.2 (5 seeds; its grid's best cell 85.2) but costs the demo
# folder 5.2 points (BENCHMARKS.md, "The body's rate"): 0.1 stays, and --body-lr-scale 1 is there for
# folders unlike the pretraining data.
FULL_BODY_LR_SCALE = 0.1
# The unfrozen body layers of ``partial`` relative to the head. Was 0.1; at 1 (no discriminative rates for
# the few layers that train) test accuracy moved, 5 seeds of lenet.fmnist5 (BENCHMARKS.md, "The body's
# rate"): real digits 89.4 -> 91.9, photos20 71.8 -> 74.4, demo folder 86.8 -> 87.2, photos100 84.1 -> 83.9;
# the real ImageNet MobileNetV2 on photos100 (3 seeds) 82.2 -> 83.7, its grid's best cell 83.6.
PARTIAL_LR_SCALE = 1.0
_KEEP_EVAL = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.Dropout, nn.Dropout2d, nn.AlphaDropout)


@dataclass
class Plan:
    """What ``prepare`` decided.

    Attributes:
        strategy: ``linear``, ``partial`` or ``full``.
        param_groups: optimizer groups for ``zoo.finetune.loop.train`` (``params``, ``lr_scale``,
            ``weight_decay`` 0 for biases and norm scales).
        groups: one row per group for the record: ``name``, ``first``/``last`` module, ``lr_scale``,
            ``params`` (count).
        trainable, frozen: parameter counts.
        frozen_modules: module paths kept in eval mode (BatchNorm/Dropout of frozen parts).
        unfreeze_from: the module path training starts at (``partial``), else None.
    """

    strategy: str
    param_groups: list[dict[str, Any]]
    groups: list[dict[str, Any]] = field(default_factory=list)
    trainable: int = 0
    frozen: int = 0
    frozen_modules: list[str] = field(default_factory=list)
    unfreeze_from: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary (no tensors)."""
        return {"strategy": self.strategy, "trainable_params": self.trainable, "frozen_params": self.frozen,
                "unfreeze_from": self.unfreeze_from, "groups": self.groups,
                "frozen_modules": len(self.frozen_modules)}


def _trunk(model: ZooModel) -> tuple[nn.Module, str]:
    """The module whose paths ``resolve_layer`` returns, and its prefix inside the ZooModel: after
    ``cut`` the body wraps the original network (``body.body``)."""
    return model.trunk, model.trunk_path + "."


def _ordered_params(module: nn.Module) -> list[tuple[str, int, nn.Parameter]]:
    """(module path, module position, parameter) in ``named_modules`` order, each parameter once."""
    out = []
    seen: set[int] = set()
    for position, (name, mod) in enumerate(module.named_modules()):
        for p in mod.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                out.append((name, position, p))
    return out


def _split_decay(params: list[nn.Parameter], lr_scale: float, name: str) -> list[dict[str, Any]]:
    """Two optimizer groups: weights decay, biases and norm scales (1-D) do not (the usual recipe)."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = []
    if decay:
        groups.append({"params": decay, "lr_scale": lr_scale, "name": name})
    if no_decay:
        groups.append({"params": no_decay, "lr_scale": lr_scale, "weight_decay": 0.0, "name": name})
    return groups


def layer_groups(model: ZooModel, n: int) -> list[list[tuple[str, nn.Parameter]]]:
    """Split the body's parameters, in module order, into ``n`` contiguous groups of about equal
    parameter count (fewer when a few large modules hold most parameters: empty groups are dropped).

    Module boundaries are kept: a module's parameters never straddle two groups.
    """
    trunk, _ = _trunk(model)
    items = _ordered_params(trunk)
    by_module: list[tuple[str, list[nn.Parameter]]] = []
    for name, _, p in items:
        if by_module and by_module[-1][0] == name:
            by_module[-1][1].append(p)
        else:
            by_module.append((name, [p]))
    n = max(1, min(n, len(by_module)))
    total = sum(p.numel() for _, ps in by_module for p in ps) or 1
    groups: list[list[tuple[str, nn.Parameter]]] = [[] for _ in range(n)]
    running = 0
    for name, ps in by_module:
        size = sum(p.numel() for p in ps)
        # Place a module by the midpoint of its parameters, so a huge final layer does not push
        # everything before it into the first group.
        index = min(n - 1, int((running + size / 2) / total * n))
        groups[index].extend((name, p) for p in ps)
        running += size
    return [g for g in groups if g]


def _check(strategy: str, head: str, unfreeze_from: str | None) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}.", option="strategy",
                          valid=STRATEGIES)
    if head not in HEADS:
        raise ConfigError(f"head must be one of {', '.join(HEADS)}, got {head!r}.", option="head", valid=HEADS)
    if unfreeze_from is not None and strategy != "partial":
        raise ConfigError(f"unfreeze_from={unfreeze_from!r} applies to strategy 'partial' only "
                          f"(got {strategy!r}); pass strategy='partial'.", option="unfreeze_from")


def _eval_modules(modules: list[tuple[str, nn.Module]], frozen_positions: set[int], prefix: str) -> set[str]:
    """Paths of the BatchNorm/Dropout layers in frozen parts: they stay in eval mode under
    ``model.train()``, so their running statistics never move."""
    keep = set()
    for position, (name, mod) in enumerate(modules):
        if position in frozen_positions and isinstance(mod, _KEEP_EVAL):
            if all(not p.requires_grad for p in mod.parameters()):
                keep.add(prefix + name if name else prefix.rstrip("."))
    return keep


def _partial_start(model: ZooModel, modules: list[tuple[str, nn.Module]],
                   start_path: str | None) -> tuple[str | None, int]:
    """``partial``: the first layer that trains (default: the last third of the body by parameters,
    like unfreezing the last group) and its position among ``modules``."""
    if start_path is None or start_path in ("pool", "logits"):
        body_groups = layer_groups(model, 3)
        start_path = body_groups[-1][0][0] if body_groups else None
    return start_path, next((i for i, (name, _) in enumerate(modules) if name == start_path), len(modules))


def _full_groups(model: ZooModel, groups: int, discriminative: bool,
                 body_lr_scale: float | None) -> list[tuple[list[tuple[str, nn.Parameter]], float]]:
    """``full``: the body's parameter groups, earliest first, with LR scales growing geometrically from
    ``body_lr_scale`` (default ``FULL_BODY_LR_SCALE``) towards the head's 1 (all 1 without ``discriminative``)."""
    body_groups = layer_groups(model, max(1, groups - 1) if discriminative else 1)
    low = math.log10(body_lr_scale if body_lr_scale is not None else FULL_BODY_LR_SCALE)
    scales = torch.logspace(low, 0, steps=len(body_groups) + 1).tolist()[:-1] if discriminative else [1.0]
    return list(zip(body_groups, scales, strict=True))


def prepare(model: ZooModel, strategy: str = "linear", *, num_classes: int, cut: str | None = None,
            unfreeze_from: str | None = None, head: str = "linear", hidden: int = 256, dropout: float = 0.0,
            groups: int = FULL_GROUPS, discriminative: bool = True, body_lr_scale: float | None = None) -> Plan:
    """Make ``model`` ready to fine-tune (in place): cut, new head, freeze, parameter groups.

    Args:
        model: a ZooModel (pretrained, usually).
        strategy: ``linear``, ``partial`` or ``full``.
        num_classes: outputs of the new head.
        cut: keep the body only up to this layer (its output is average-pooled) before the new head.
        unfreeze_from: ``partial``: the first layer that trains; default the last third of the body.
        head: ``linear`` or ``mlp`` (Linear, ReLU, Dropout, Linear).
        hidden: the MLP head's hidden width.
        dropout: dropout before the head's last Linear.
        groups: ``full``: number of learning-rate groups including the head.
        discriminative: ``full``/``partial``: smaller learning rates for body layers. Turn it off for a
            network trained from random weights, where there are no pretrained features to protect.
        body_lr_scale: with ``discriminative``, the body's learning rate relative to the head's:
            ``partial``, its unfrozen layers' (default ``PARTIAL_LR_SCALE``); ``full``, the earliest
            group's, the later groups' growing geometrically towards the head's (default
            ``FULL_BODY_LR_SCALE``, 0.1).

    Returns:
        The plan: pass ``plan.param_groups`` to ``zoo.finetune.loop.train``.

    Raises:
        UnknownLayerError: ``cut`` or ``unfreeze_from`` names no layer (the message lists the valid ones).
        ConfigError: an unknown strategy or head (the valid ones named), or ``unfreeze_from`` without
            ``strategy="partial"``.

    Example:
        >>> plan = prepare(model, "partial", num_classes=5, unfreeze_from="layer4")   # doctest: +SKIP
        >>> train(model, train_ds, val_ds, cfg, param_groups=plan.param_groups)     # doctest: +SKIP
    """
    _check(strategy, head, unfreeze_from)
    if cut is not None:
        model.cut(cut)
    start_path = model.resolve_layer(unfreeze_from) if unfreeze_from is not None else None
    model.reset_classifier(num_classes, kind=head, hidden=hidden, dropout=dropout)

    trunk, prefix = _trunk(model)
    items = _ordered_params(trunk)
    for p in model.parameters():
        p.requires_grad_(True)
    plan_groups: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    frozen_positions: set[int] = set()

    def record(name: str, members: list[tuple[str, nn.Parameter]], scale: float) -> None:
        params = [p for _, p in members]
        plan_groups.extend(_split_decay(params, scale, name))
        records.append({"name": name, "first": members[0][0] if members else "", "last": members[-1][0]
                        if members else "", "lr_scale": scale, "params": sum(p.numel() for p in params)})

    modules = list(trunk.named_modules())
    if strategy == "linear":
        for _, _, p in items:
            p.requires_grad_(False)
        frozen_positions = set(range(len(modules)))
    elif strategy == "partial":
        start_path, start = _partial_start(model, modules, start_path)
        for name, position, p in items:
            p.requires_grad_(position >= start)
        frozen_positions = set(range(start))
        unfrozen = [(name, p) for name, position, p in items if position >= start]
        if unfrozen:
            scale = (PARTIAL_LR_SCALE if body_lr_scale is None else body_lr_scale) if discriminative else 1.0
            record("body", unfrozen, scale)
    else:  # full
        for i, (members, scale) in enumerate(_full_groups(model, groups, discriminative, body_lr_scale)):
            record(f"body.{i}", members, round(scale, 6))
    record("head", [(f"head.{n}" if n else "head", p) for n, p in model.head.named_parameters()], 1.0)

    keep = _eval_modules(modules, frozen_positions, prefix)
    model.keep_eval(keep)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return Plan(strategy=strategy, param_groups=plan_groups, groups=records, trainable=trainable, frozen=frozen,
                frozen_modules=sorted(keep), unfreeze_from=start_path if strategy == "partial" else None)
