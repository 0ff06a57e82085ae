"""Heads: what a classifier is and how it is taken out of a network.

Owns: ``HeadSpec`` and ``build_head`` (a new linear or MLP head), ``split_classifier`` (the final
classifier out of a network, an identity in its place) and ``split_heads`` (several classifiers whose
logits the network averages, as distilled DeiT, LeViT or CrossViT do: one head over their inputs side
by side), and ``submodule`` (a module by path, or an error listing the valid ones). ``zoo.model``
builds the ``ZooModel`` contract on these. Imports torch; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .errors import RunError, UnknownLayerError, WeightsError

__all__ = ["HEAD_KINDS", "HeadSpec", "build_head", "split_classifier", "split_heads", "ClassifierInputs",
           "MeanOfHeads", "submodule"]

HEAD_KINDS = ("linear", "mlp")


@dataclass(frozen=True, slots=True)
class HeadSpec:
    """What a head is, so a saved model can rebuild it: ``linear`` or ``mlp`` (Linear, ReLU, Dropout,
    Linear)."""

    kind: str = "linear"
    num_classes: int = 1000
    hidden: int = 256
    dropout: float = 0.0


def build_head(spec: HeadSpec, num_features: int) -> nn.Module:
    """A fresh head for ``num_features`` inputs.

    Raises:
        RunError: for an unknown kind or sizes that are not positive.
    """
    if spec.kind not in HEAD_KINDS:
        raise RunError(f"head kind {spec.kind!r} is not one of {', '.join(HEAD_KINDS)}; pick one of those.")
    if spec.num_classes < 1 or num_features < 1 or (spec.kind == "mlp" and spec.hidden < 1):
        raise RunError(f"a {spec.kind} head needs positive sizes, got {spec.num_classes} classes, "
                       f"{num_features} features, {spec.hidden} hidden units.")
    if not 0.0 <= spec.dropout < 1.0:
        raise RunError(f"head dropout must be in [0, 1), got {spec.dropout}.")
    if spec.kind == "linear":
        if spec.dropout:
            return nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(num_features, spec.num_classes))
        return nn.Linear(num_features, spec.num_classes)
    return nn.Sequential(nn.Linear(num_features, spec.hidden), nn.ReLU(inplace=True),
                         nn.Dropout(spec.dropout), nn.Linear(spec.hidden, spec.num_classes))


def submodule(model: nn.Module, path: str) -> nn.Module:
    """The module at ``path`` in ``model``.

    Raises:
        UnknownLayerError: listing the valid paths.
    """
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        valid = [n for n, _ in model.named_modules() if n]
        raise UnknownLayerError(path, valid) from err


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    setattr(parent, leaf, module)


def split_classifier(model: nn.Module, classifier: str) -> tuple[nn.Module, nn.Module]:
    """Take the final classifier out of ``model``: returns ``(body, head)`` where ``body`` is the model
    with that module replaced by ``nn.Identity`` and ``head`` is the module that was there.

    ``classifier`` is a module path (``fc``, ``heads.head``, ``classifier.3``).
    """
    head = submodule(model, classifier)
    _set_submodule(model, classifier, nn.Identity())
    return model, head


class _Tap(nn.Module):
    """Stands where one of several classifiers was: keeps its input, gives zeros of its output shape."""

    def __init__(self, out_features: int):
        super().__init__()
        self.out_features = out_features
        self.seen: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen = x
        return x.new_zeros(*x.shape[:-1], self.out_features)


class ClassifierInputs(nn.Module):
    """A network whose classifiers are taps: its output is their inputs, flattened and concatenated."""

    def __init__(self, network: nn.Module, paths: Sequence[str]):
        super().__init__()
        self.network = network
        self.paths = tuple(paths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.network(x)
        taps = [self.network.get_submodule(p) for p in self.paths]
        out = torch.cat([t.seen.flatten(1) for t in taps], dim=1)
        for t in taps:
            t.seen = None
        return out


class MeanOfHeads(nn.Module):
    """Several classifiers, each on its part of the feature vector; the logits are their mean, as
    distilled networks (DeiT, LeViT, ...) combine a class and a distillation head at inference."""

    def __init__(self, heads: Sequence[nn.Module], widths: Sequence[int]):
        super().__init__()
        self.heads = nn.ModuleList(heads)
        self.widths = tuple(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = x.split(self.widths, dim=1)
        return torch.stack([head(part) for head, part in zip(self.heads, parts, strict=True)]).mean(0)


def split_heads(model: nn.Module, classifiers: Sequence[str]) -> tuple[nn.Module, nn.Module, int]:
    """Take several classifiers out of ``model`` whose logits the network averages (a class and a
    distillation head): returns ``(body, head, num_features)``, where ``body`` gives the classifiers'
    inputs side by side and ``head`` applies each to its part and averages.

    Raises:
        WeightsError: a classifier that holds no Linear layer.
    """
    heads = [submodule(model, path) for path in classifiers]
    widths = []
    for path, head in zip(classifiers, heads, strict=True):
        linears = [m for m in head.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise WeightsError(f"classifier {path!r} of {type(model).__name__} holds no Linear layer")
        widths.append(linears[0].in_features)
        _set_submodule(model, path, _Tap(linears[-1].out_features))
    return ClassifierInputs(model, classifiers), MeanOfHeads(heads, widths), sum(widths)
