"""The one model contract every zoo network follows, whatever built it.

Owns: ``ZooModel`` (``forward = head(body(x))``, where ``body`` returns the pooled pre-logits vector),
named feature layers through forward hooks, cutting a network at a layer, resetting the head
(linear or a small MLP), and the self-describing ``model.json`` that lets a saved model load in one
line. Fine-tuning and extraction go through this contract and never reach into architecture-specific
attributes. Imports ``zoo.registry`` and torch; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .errors import UnknownLayerError, WeightsError

__all__ = ["ZooModel", "HeadSpec", "split_classifier", "build_head", "POOL", "LOGITS"]

POOL = "pool"  # the pooled pre-logits vector: body's output
LOGITS = "logits"  # the head's output


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
        ValueError: for an unknown kind.
    """
    if spec.kind == "linear":
        if spec.dropout:
            return nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(num_features, spec.num_classes))
        return nn.Linear(num_features, spec.num_classes)
    if spec.kind == "mlp":
        return nn.Sequential(nn.Linear(num_features, spec.hidden), nn.ReLU(inplace=True),
                             nn.Dropout(spec.dropout), nn.Linear(spec.hidden, spec.num_classes))
    raise ValueError(f"head kind must be 'linear' or 'mlp', got {spec.kind!r}")


def _get_submodule(model: nn.Module, path: str) -> nn.Module:
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
    head = _get_submodule(model, classifier)
    _set_submodule(model, classifier, nn.Identity())
    return model, head


class _Stop(Exception):
    """Raised inside a hook to stop a forward pass once every wanted layer has been seen."""


class _Cut(nn.Module):
    """``body`` run only up to ``layer``, then global-average-pooled and flattened."""

    def __init__(self, body: nn.Module, layer: str):
        super().__init__()
        self.body = body
        self.layer = layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _run_to(self.body, x, [self.layer])[self.layer]
        return _pool(out)


def _pool(t: torch.Tensor) -> torch.Tensor:
    if t.ndim == 4:  # N, C, H, W -> N, C
        return t.mean(dim=(2, 3))
    if t.ndim == 3:  # N, tokens, C (ViT) -> N, C: the class token is the usual pooled vector
        return t[:, 0]
    return t.flatten(1)


def _run_to(body: nn.Module, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of ``layers`` (module paths in ``body``), stopping the forward pass after the last one."""
    wanted = set(layers)
    found: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module, _inputs, output):
            if isinstance(output, (tuple, list)):
                output = output[0]
            # Clone: later in-place ops (ReLU(inplace), `out += identity`) would change the tensor.
            found[name] = output.clone()
            # torch.export cannot trace an exception raised in a hook: when exporting, the pass runs
            # to the end and the exporter drops the part of the graph that no output needs.
            if wanted.issubset(found) and not torch.compiler.is_exporting():
                raise _Stop
        return hook

    for name in wanted:
        handles.append(_get_submodule(body, name).register_forward_hook(make_hook(name)))
    try:
        body(x)
    except _Stop:
        pass
    finally:
        for h in handles:
            h.remove()
    missing = wanted - set(found)
    if missing:
        raise WeightsError(f"layers {sorted(missing)} were not reached in the forward pass "
                           "(they exist but are not used by this model's forward)")
    return found


class ZooModel(nn.Module):
    """A network as the zoo hands it out: ``forward(x) = head(body(x))``.

    ``body(x)`` is the pooled, flattened pre-logits vector (``num_features`` wide); ``head`` maps it to
    logits (no softmax). The model carries its registry entry (``entry``), its ``labels`` and a
    ``transforms`` callable built from the weights' own preprocessing, like torchvision's weights API.

    Layers are named by their module path inside ``body`` (``layer4``, ``features.denseblock4``), plus
    ``pool`` (the body's output) and ``logits``; ``aliases`` maps other names (Caffe blob names such
    as ``pool5/7x7_s1``) to module paths.

    Example:
        >>> m = zoo.load("resnet18")                      # doctest: +SKIP
        >>> feats = m.forward_layers(x, ["layer3", "pool"])  # doctest: +SKIP
    """

    def __init__(self, body: nn.Module, head: nn.Module, *, num_features: int, name: str = "",
                 entry: Any = None, labels: Sequence[str] | None = None, preprocessing: Any = None,
                 aliases: dict[str, str] | None = None, head_spec: HeadSpec | None = None,
                 cut: str | None = None, base: str | None = None, mean_image: Any = None):
        super().__init__()
        self.body = body
        self.head = head
        self.num_features = num_features
        self.name = name
        self.entry = entry
        self.labels = tuple(labels) if labels is not None else None
        self.preprocessing = preprocessing
        self.aliases = dict(aliases or {})
        self.head_spec = head_spec
        self.cut_layer = cut
        self.base = base or name
        self.mean_image = mean_image
        self.build_spec: dict[str, Any] | None = None  # how zoo.factory built the network (for reloading)
        self.source_dir = None  # the folder a saved model was loaded from
        # Module paths (relative to this model) that stay in eval mode under ``train()``: the
        # BatchNorm and Dropout layers of frozen parts, so fine-tuning never moves their statistics.
        self.frozen_modules: set[str] = set()

    def train(self, mode: bool = True) -> ZooModel:
        """Like ``nn.Module.train``, but modules named in ``frozen_modules`` stay in eval mode."""
        super().train(mode)
        for name in self.frozen_modules:
            self.get_submodule(name).eval()
        return self

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled pre-logits vector, (N, num_features)."""
        return self.body(x)

    def forward_head(self, features: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        return features if pre_logits else self.head(features)

    # -- layers --------------------------------------------------------------------------------
    def layer_names(self) -> list[str]:
        """Every name ``forward_layers`` accepts: module paths in the body, aliases, ``pool``, ``logits``."""
        body = self.body.body if isinstance(self.body, _Cut) else self.body
        names = [n for n, _ in body.named_modules() if n]
        return [*names, *sorted(self.aliases), POOL, LOGITS]

    def resolve_layer(self, layer: str) -> str:
        """The module path ``layer`` names (aliases resolved), or ``pool`` / ``logits``.

        Raises:
            UnknownLayerError: listing the valid names and the nearest ones.
        """
        if layer in (POOL, LOGITS):
            return layer
        path = self.aliases.get(layer, layer)
        if path in (POOL, LOGITS):  # an alias of the body's output or the head's (Caffe's ``fc8``)
            return path
        body = self.body.body if isinstance(self.body, _Cut) else self.body
        try:
            body.get_submodule(path)
        except AttributeError:
            raise UnknownLayerError(layer, self.layer_names(), model=self.name or "this model") from None
        if not path:
            raise UnknownLayerError(layer, self.layer_names(), model=self.name or "this model")
        return path

    def forward_layers(self, x: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        """Outputs at several named layers at once, keyed by the names given.

        Intermediate layers come back as the module produced them (e.g. N, C, H, W); ``pool`` is the
        pre-logits vector and ``logits`` the head's output. The pass stops after the last layer needed.
        """
        layers = list(layers)
        paths = {name: self.resolve_layer(name) for name in layers}
        inner = [p for p in paths.values() if p not in (POOL, LOGITS)]
        need_full = any(p in (POOL, LOGITS) for p in paths.values())
        body = self.body.body if isinstance(self.body, _Cut) else self.body
        out: dict[str, torch.Tensor] = {}
        found = _run_to(body, x, inner) if inner else {}
        if need_full:
            feats = self.body(x)
            if any(p == LOGITS for p in paths.values()):
                logits = self.head(feats)
        for name, path in paths.items():
            out[name] = feats if path == POOL else logits if path == LOGITS else found[path]
        return out

    # -- surgery -------------------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, *, kind: str = "linear", hidden: int = 256,
                         dropout: float = 0.0) -> ZooModel:
        """Put a new, randomly initialised head with ``num_classes`` outputs on the body (in place)."""
        self.head_spec = HeadSpec(kind=kind, num_classes=num_classes, hidden=hidden, dropout=dropout)
        self.head = build_head(self.head_spec, self.num_features)
        self.aliases = {k: v for k, v in self.aliases.items() if v != LOGITS}  # names of the old head
        self.labels = None
        return self

    def cut(self, layer: str) -> ZooModel:
        """Keep the body only up to ``layer`` (its output is global-average-pooled), in place. The old
        head no longer fits: call ``reset_classifier`` after.

        Raises:
            UnknownLayerError: for a name the body does not have.
        """
        path = self.resolve_layer(layer)
        if path in (POOL, LOGITS):
            return self
        body = self.body.body if isinstance(self.body, _Cut) else self.body
        self.body = _Cut(body, path)
        self.cut_layer = path
        device = next((p.device for p in body.parameters()), torch.device("cpu"))
        with torch.no_grad():
            was_training = body.training
            body.eval()
            probe = torch.zeros(1, *self.input_size, device=device)
            self.num_features = int(self.body(probe).shape[1])
            body.train(was_training)
        self.head = nn.Identity()
        self.aliases = {k: v for k, v in self.aliases.items() if v != LOGITS}  # names of the old head
        return self

    @property
    def input_size(self) -> tuple[int, int, int]:
        if self.preprocessing is not None:
            return tuple(self.preprocessing.input_size)
        return (3, 224, 224)

    @property
    def image_mode(self) -> str:
        """The PIL mode to decode images in: ``L`` for single-channel weights (decoding straight to grey
        is cheaper), else ``RGB``."""
        return "L" if self.input_size[0] == 1 else "RGB"

    # -- description ---------------------------------------------------------------------------
    @property
    def transforms(self):
        """The inference transform for these weights (PIL image or tensor -> normalised tensor)."""
        from .preprocess import build_transform

        return build_transform(self.preprocessing, mean_image=self.mean_image)

    def describe(self) -> dict[str, Any]:
        """What ``model.json`` stores: enough to rebuild this model from its base entry."""
        return {
            "format": "zoo-model",
            "version": 1,
            "name": self.name,
            "base": self.base,
            "cut": self.cut_layer,
            "num_features": self.num_features,
            "head": asdict(self.head_spec) if self.head_spec else None,
            "labels": list(self.labels) if self.labels else None,
        }

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={self.num_features}"
