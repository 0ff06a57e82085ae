"""The one model contract every zoo network follows, whatever built it.

Owns: ``ZooModel`` (``forward = head(body(x))``, where ``body`` returns the pooled pre-logits vector),
named feature layers through forward hooks, cutting a network at a layer, resetting the head
(linear or a small MLP), keeping frozen parts in eval mode, and ``BuildSpec`` / ``describe`` (what the
self-describing ``model.json`` records so a saved model loads in one line). Fine-tuning and extraction
go through this contract and never reach into architecture-specific attributes. A feature backbone
(no classifier: DINOv2, CLIP vision towers) is a ``ZooModel`` whose head is ``nn.Identity`` until
``reset_classifier`` gives it one. Imports ``zoo.registry`` and torch; never ``zoo.finetune`` or
``zoo.cli``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.registry.schema import Entry, Preprocessing

from .errors import RunError, UnknownLayerError, WeightsError
from .heads import (HEAD_KINDS, ClassifierInputs, HeadSpec, build_head, split_classifier, split_heads,
                    submodule)
from .preprocess import build_transform

__all__ = ["ZooModel", "HeadSpec", "BuildSpec", "split_classifier", "split_heads", "build_head", "HEAD_KINDS", "POOL",
           "LOGITS"]

POOL = "pool"  # the pooled pre-logits vector: body's output
LOGITS = "logits"  # the head's output


@dataclass(frozen=True, slots=True)
class BuildSpec:
    """How the network was assembled: what ``model.json`` needs to build it again before its weights
    are loaded.

    ``library`` / ``builder`` / ``kwargs`` / ``in_chans`` / ``num_classes`` name the library builder that
    made the network (``library`` is None for networks that come from their own files, such as Caffe
    graphs, and for models built from a registry entry that says it all); ``cut`` is the layer the body
    was cut at and ``head`` the head put on it since.
    """

    library: str | None = None
    builder: str = ""
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    in_chans: int = 3
    num_classes: int = 0
    cut: str | None = None
    head: HeadSpec | None = None

    def network(self) -> dict[str, Any] | None:
        """The library part as ``model.json``'s ``build`` object (None when there is none)."""
        if self.library is None:
            return None
        return {"library": self.library, "builder": self.builder, "kwargs": dict(self.kwargs),
                "in_chans": self.in_chans, "num_classes": self.num_classes}


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
        handles.append(submodule(body, name).register_forward_hook(make_hook(name)))
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
    logits (no softmax), or is ``nn.Identity`` for a feature backbone. The model carries its registry
    entry (``entry``), its ``labels`` and a ``transforms`` callable built from the weights' own
    preprocessing, like torchvision's weights API. Everything it carries is given here; the methods
    below (``cut``, ``reset_classifier``, ``keep_eval``) are the only ways it changes.

    Layers are named by their module path inside the network (``layer4``, ``features.denseblock4``),
    plus ``pool`` (the body's output) and ``logits``; ``aliases`` maps other names (Caffe blob names
    such as ``pool5/7x7_s1``) to module paths.

    Args:
        body: the network up to the pooled features.
        head: the classifier on them (``nn.Identity`` when there is none).
        num_features: the width of ``body``'s output.
        name: what the model is called (a registry name, a run folder's name).
        entry: the registry entry it was built from, if any.
        labels: class names, one per output.
        preprocessing: the input the weights expect.
        aliases: other layer names -> module paths.
        base: the registry name it started from (default ``name``).
        mean_image: a per-pixel mean image (C,H,W) that replaces the mean pixel (Caffe).
        build: how the network was assembled (see ``BuildSpec``).
        source_dir: the folder a saved model was loaded from.

    Example:
        >>> m = zoo.load("resnet18")                      # doctest: +SKIP
        >>> feats = m.forward_layers(x, ["layer3", "pool"])  # doctest: +SKIP
    """

    def __init__(self, body: nn.Module, head: nn.Module, *, num_features: int, name: str = "",
                 entry: Entry | None = None, labels: Sequence[str] | None = None,
                 preprocessing: Preprocessing | None = None, aliases: Mapping[str, str] | None = None,
                 base: str | None = None, mean_image: Any = None, build: BuildSpec | None = None,
                 source_dir: Path | None = None):
        super().__init__()
        self.body = body
        self.head = head
        self.num_features = int(num_features)
        self.name = name
        self.entry = entry
        self.labels = tuple(labels) if labels is not None else None
        self.preprocessing = preprocessing
        self.aliases = dict(aliases or {})
        self.base = base or name
        self.mean_image = mean_image
        self.build = build or BuildSpec()
        self.source_dir = Path(source_dir) if source_dir is not None else None
        # Module paths (relative to this model) that stay in eval mode under ``train()``: the
        # BatchNorm and Dropout layers of frozen parts, so fine-tuning never moves their statistics.
        self._keep_eval: frozenset[str] = frozenset()

    # -- what it is ----------------------------------------------------------------------------
    @property
    def trunk(self) -> nn.Module:
        """The whole network whose module paths name the layers: ``body``, or what a cut body (or a
        body of several classifiers' inputs) wraps."""
        return self.get_submodule(self.trunk_path)

    @property
    def trunk_path(self) -> str:
        """The trunk's module path inside this model: ``body``, ``body.body`` after a cut,
        ``body.network`` for a network with several classifiers."""
        if isinstance(self.body, _Cut):
            return "body.body"
        return "body.network" if isinstance(self.body, ClassifierInputs) else "body"

    @property
    def head_spec(self) -> HeadSpec | None:
        """The head put on the body by ``reset_classifier`` (None: the weights' own classifier)."""
        return self.build.head

    @property
    def cut_layer(self) -> str | None:
        """The layer the body was cut at, or None."""
        return self.build.cut

    @property
    def build_spec(self) -> dict[str, Any] | None:
        """The library builder that made the network, as ``model.json`` stores it (or None)."""
        return self.build.network()

    @property
    def has_classifier(self) -> bool:
        """False for a feature backbone (and after ``cut`` until ``reset_classifier``). A network whose
        classifier stays in the body (SqueezeNet, the Caffe nets without a fully connected head) has an
        identity head and its labels: it has one."""
        return not isinstance(self.head, nn.Identity) or self.labels is not None

    @property
    def frozen_modules(self) -> frozenset[str]:
        """Module paths kept in eval mode under ``train()`` (see ``keep_eval``)."""
        return self._keep_eval

    def keep_eval(self, paths: Iterable[str]) -> ZooModel:
        """Keep these modules (paths in this model) in eval mode under ``train()``, replacing the set
        given before: the BatchNorm and Dropout layers of frozen parts.

        Raises:
            UnknownLayerError: for a path the model does not have.
        """
        paths = frozenset(paths)
        for path in paths:
            submodule(self, path)
        self._keep_eval = paths
        return self.train(self.training)

    def train(self, mode: bool = True) -> ZooModel:
        """Like ``nn.Module.train``, but the modules given to ``keep_eval`` stay in eval mode."""
        super().train(mode)
        for name in self._keep_eval:
            self.get_submodule(name).eval()
        return self

    def loaded_from(self, directory: Path, *, name: str, base: str | None,
                    labels: Sequence[str] | None) -> ZooModel:
        """Record that this model is the one saved in ``directory`` as ``name`` (started from ``base``,
        with ``labels``): for a network that its own files rebuilt (a Caffe graph) before
        ``zoo.factory.load_saved`` loaded the saved weights into it."""
        self.source_dir, self.name, self.base = Path(directory), name, base or name
        self.labels = tuple(labels) if labels is not None else None
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
        """Every name ``forward_layers`` accepts: module paths in the body, aliases, ``pool`` and (when
        there is a classifier) ``logits``."""
        names = [n for n, _ in self.trunk.named_modules() if n]
        return [*names, *sorted(self.aliases), POOL, *([LOGITS] if self.has_classifier else [])]

    def resolve_layer(self, layer: str) -> str:
        """The module path ``layer`` names (aliases resolved), or ``pool`` / ``logits``.

        Raises:
            UnknownLayerError: listing the valid names and the nearest ones (``logits`` is not one for a
                model without a classifier).
        """
        if layer == POOL or (layer == LOGITS and self.has_classifier):
            return layer
        path = self.aliases.get(layer, layer)
        if path == POOL or (path == LOGITS and self.has_classifier):  # an alias of the body's or head's output
            return path  # (Caffe's ``fc8``)
        try:
            self.trunk.get_submodule(path)
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
        out: dict[str, torch.Tensor] = {}
        found = _run_to(self.trunk, x, inner) if inner else {}
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
                         dropout: float = 0.0, labels: Sequence[str] | None = None) -> ZooModel:
        """Put a new, randomly initialised head with ``num_classes`` outputs on the body (in place).

        Args:
            num_classes: outputs of the new head.
            kind: ``linear`` or ``mlp`` (Linear, ReLU, Dropout, Linear).
            hidden: the MLP's hidden width.
            dropout: dropout before the (last) Linear.
            labels: names of the new classes, if known.

        Raises:
            RunError: an unknown head kind or a size that is not positive.
        """
        spec = HeadSpec(kind=kind, num_classes=num_classes, hidden=hidden, dropout=dropout)
        device = next((p.device for p in self.body.parameters()), None)
        head = build_head(spec, self.num_features)
        self.head = head.to(device) if device is not None and device.type != "meta" else head
        self.build = replace(self.build, head=spec)
        self.aliases = {k: v for k, v in self.aliases.items() if v != LOGITS}  # names of the old head
        if labels is not None and len(labels) != num_classes:
            raise RunError(f"{len(labels)} labels for a head of {num_classes} classes; give one label per class.")
        self.labels = tuple(labels) if labels is not None else None
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
        trunk = self.trunk
        self.body = _Cut(trunk, path)
        device = next((p.device for p in trunk.parameters()), torch.device("cpu"))
        with torch.no_grad():
            was_training = trunk.training
            trunk.eval()
            probe = torch.zeros(1, *self.input_size, device=device)
            self.num_features = int(self.body(probe).shape[1])
            trunk.train(was_training)
        self.head = nn.Identity()
        self.labels = None  # the classes went with the head
        self.build = replace(self.build, cut=path, head=None)
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
            "build": self.build_spec,
        }

    def extra_repr(self) -> str:
        return f"name={self.name!r}, num_features={self.num_features}"
