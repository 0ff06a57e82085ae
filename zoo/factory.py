"""Build the network an entry names, load its weights, and save and reload models in one line.

Owns: ``load`` (a registry name, or a directory written by ``save_model``: a fine-tuned run, a
from-scratch run, an imported Caffe model), ``build_model`` (an entry -> a ``ZooModel``), ``BUILDERS``
(the one table from a library name to the function that builds its bare network: torchvision, timm,
the zoo's reference architectures) and ``save_model`` / ``load_saved``. Caffe graphs and run folders are
entries whose network comes from their own files. Every model comes back as a ``ZooModel`` carrying its
entry, labels and preprocessing. Options that would make a library read a file or the network
(``checkpoint_path``, ``pretrained_cfg_overlay``, ``hf-hub:`` builders...) are refused before the
library is called: every byte of weights goes through ``zoo.fetch``'s checksums. Imports
``zoo.registry`` and the core; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn

from zoo.registry import Entry, catalog, labels_for

from . import archs
from ._io import write_json
from .errors import RegistryError, RunError, UnknownModelError, WeightsError, ZooError
from .external import resolve_entry
from .hub import offline_mode
from .model import BuildSpec, ZooModel, split_classifier, split_heads
from .saved import MODEL_FILE, WEIGHTS_FILE, SavedModel, read_saved
from .weights import load_entry_weights, read_state_dict, save_state_dict

__all__ = ["load", "build_model", "build_network", "save_model", "load_saved", "BUILDERS", "MODEL_FILE",
           "WEIGHTS_FILE"]

# torchvision's GoogLeNet and Inception-v3 weights were trained with auxiliary heads and expect the
# input re-normalised inside the network (``transform_input``): the builder sets both only when it
# is handed a weights enum, which the zoo never does, so we set them here.
_TV_AUX = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}

# Builder options that make a library read a file or the network on its own, around the zoo's
# checksums (timm's ``checkpoint_path`` and ``pretrained_cfg*``, torchvision's ``weights``).
_READS_FILES = frozenset({"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir",
                          "weights", "weights_backbone", "model_args"})


def load(name_or_path: str | Path, *, pretrained: bool = True, num_classes: int | None = None,
         device: str | torch.device | None = None) -> ZooModel:
    """A ready model: built, weights loaded (fetched and verified on first use), in eval mode.

    Args:
        name_or_path: a registry name (``resnet50``, ``resnet50.tv2_in1k``, an alias, a full timm or
            torchvision name such as ``densenet121.tv_imagenet1k_v1``, or a bare architecture those
            libraries know) or a directory written by ``save_model`` (a fine-tuned or from-scratch
            run, an imported Caffe model).
        pretrained: load the entry's weights; False gives the architecture with random weights.
        num_classes: put a fresh, randomly initialised linear head with this many outputs on it.
        device: where to put the model (default: CPU).

    Returns:
        A ``ZooModel`` in eval mode; ``model.transforms`` preprocesses images for it and
        ``model.labels`` names its classes.

    Raises:
        UnknownModelError: no entry or directory of that name (with close matches).
        DownloadError, ChecksumMismatchError, OfflineError: the weights could not be had.
        WeightsError: the weights do not fit the network.

    Example:
        >>> model = zoo.load("resnet18")                        # doctest: +SKIP
        >>> logits = model(model.transforms(img).unsqueeze(0))  # doctest: +SKIP
    """
    path = Path(name_or_path).expanduser()
    if _is_model_dir(path):
        model = load_saved(path)
    elif path.is_dir():
        raise RunError(f"{path} is a folder but holds no {MODEL_FILE} or graph.json: is the run finished? "
                       "An interrupted run resumes with `--resume`.")
    elif isinstance(name_or_path, Path) or "/" in str(name_or_path) or "\\" in str(name_or_path):
        raise RunError(f"no model folder at {path}: pass a registry name (`zoo list`), or a folder written "
                       "by `zoo finetune`, `zoo train` or `zoo import-caffe`.")
    else:
        model = build_model(resolve_entry(str(name_or_path)), pretrained=pretrained)
    if num_classes is not None:
        model.reset_classifier(num_classes)
    if device is not None:
        model.to(device)
    return model.eval()


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and ((path / MODEL_FILE).is_file() or (path / "graph.json").is_file())


def build_model(entry: Entry, *, pretrained: bool = True, device: str | torch.device | None = None) -> ZooModel:
    """Build ``entry``'s network as a ``ZooModel`` and, if ``pretrained``, load its verified weights.

    Args:
        entry: a registry entry.
        pretrained: fetch, verify and load the entry's weights.
        device: where the parameters are created; ``"meta"`` builds the structure alone (no memory, no
            weights), which is how a test checks that every listed name builds.

    Raises:
        RegistryError: the entry names a library, builder or option the zoo does not build.
        WeightsError: the weights do not fit the network.
    """
    library = entry.architecture.library
    if library in _FROM_FILES:
        return _FROM_FILES[library](entry, pretrained)
    spec = BuildSpec(library=library, builder=entry.architecture.builder, kwargs=dict(entry.architecture.kwargs),
                     in_chans=entry.preprocessing.input_size[0], num_classes=entry.head.num_classes)
    with contextlib.nullcontext() if device is None else torch.device(device):  # meta: shapes, no memory
        network, classifier = build_network(spec, entry)
    if pretrained and entry.files:
        if device is not None and torch.device(device).type == "meta":
            raise WeightsError(f"{entry.name}: weights cannot be loaded on the meta device; pass pretrained=False.")
        _load_state(network, load_entry_weights(entry), entry.name, _TV_AUX.get(entry.architecture.builder, ()))
    return _wrap(network, classifier, name=entry.name, entry=entry, labels=labels_for(entry),
                 preprocessing=entry.preprocessing, base=entry.name, build=spec)


def build_network(spec: BuildSpec, entry: Entry | None = None) -> tuple[nn.Module, str | tuple[str, ...] | None]:
    """The bare network ``spec`` names, with random weights, and the module path(s) of its classifier
    (None for a network without one).

    Raises:
        RegistryError: an unknown library, or a builder or option that would read files on its own.
    """
    builder = BUILDERS.get(spec.library or "")
    where = entry.name if entry is not None else spec.builder
    if builder is None:
        raise RegistryError(f"cannot build library {spec.library!r} (builders: {', '.join(BUILDERS)})",
                            entry=where, field="architecture.library")
    _check_options(spec, where)
    return builder(spec, entry)


def _check_options(spec: BuildSpec, where: str) -> None:
    """Refuse a builder or options that would make the library fetch or read files itself."""
    if ":" in spec.builder or "/" in spec.builder:
        raise RegistryError(f"builder {spec.builder!r} names a location ({spec.builder.split(':')[0]}:), which the "
                            "library would fetch unverified; name a plain architecture", entry=where,
                            field="architecture.builder")
    for key, value in spec.kwargs.items():
        text = json.dumps(value, default=str)
        if key in _READS_FILES or "://" in text or "hf-hub:" in text or "local-dir:" in text:
            raise RegistryError(f"option {key}={value!r} would make {spec.library} read files or the network "
                                "around the zoo's checksums; give the weights as the entry's files",
                                entry=where, field=f"architecture.kwargs.{key}")


def _torchvision(spec: BuildSpec, entry: Entry | None) -> tuple[nn.Module, str | None]:
    kwargs = dict(spec.kwargs)
    if spec.builder in _TV_AUX and entry is not None and entry.files:
        kwargs.setdefault("transform_input", True)
    try:
        network = tvm.get_model(spec.builder, weights=None, num_classes=spec.num_classes, **kwargs)
    except ValueError as err:
        raise UnknownModelError(spec.builder) from err
    return network, (entry.head.classifier if entry is not None else None) or _last_linear(network)


def _timm(spec: BuildSpec, entry: Entry | None) -> tuple[nn.Module, str | tuple[str, ...] | None]:
    import timm  # seconds to import (every model family registers itself): only when a timm model is built

    try:
        with offline_mode():  # timm reads nothing from the Hub for a plain name; never when offline either
            network = timm.create_model(spec.builder, pretrained=False, num_classes=spec.num_classes,
                                        in_chans=spec.in_chans, **spec.kwargs)
    except RuntimeError as err:  # timm's "Unknown model"
        raise UnknownModelError(spec.builder) from err
    if spec.num_classes == 0:
        return network, None
    named = (entry.head.classifier if entry is not None else None) or network.pretrained_cfg.get("classifier")
    names = (named,) if isinstance(named, str) else tuple(named or ())
    modules = dict(network.named_modules())
    if names and all(n in modules for n in names):
        return network, named if isinstance(named, str) else names
    # timm's own answer: the module(s) get_classifier() returns, located by identity.
    wanted = network.get_classifier()
    wanted = wanted if isinstance(wanted, tuple) else (wanted,)
    paths = tuple(name for module in wanted for name, m in network.named_modules() if m is module)
    return network, (paths[0] if len(paths) == 1 else paths) if paths else _last_linear(network)


def _zoo(spec: BuildSpec, entry: Entry | None) -> tuple[nn.Module, str]:
    return archs.build(spec.builder, in_chans=spec.in_chans, num_classes=spec.num_classes, **spec.kwargs)


# The one builder table: a library's name -> the function that builds its bare network.
BUILDERS: Mapping[str, Callable[[BuildSpec, Entry | None], tuple[nn.Module, Any]]] = {
    "torchvision": _torchvision,
    "timm": _timm,
    "zoo": _zoo,
}


def _last_linear(network: nn.Module) -> str:
    """The last Linear in module order: the classifier of every torchvision classification net."""
    last = None
    for name, module in network.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise WeightsError(f"{type(network).__name__} has no Linear layer to use as the classifier; "
                           "name it in the entry's head.classifier")
    return last


def _load_state(network: nn.Module, state: dict[str, torch.Tensor], name: str,
                ignorable: tuple[str, ...] = ()) -> None:
    """Load ``state`` strictly, except keys under ``ignorable`` prefixes (auxiliary heads)."""
    state = {k: v for k, v in state.items() if not k.startswith(ignorable)} if ignorable else state
    try:
        result = network.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        raise WeightsError(f"the weights of {name!r} do not fit its network: {err}. Run "
                           f"`zoo cache verify` and `zoo download {name} --force`.") from err
    if result.missing_keys or result.unexpected_keys:
        raise WeightsError(
            f"the weights of {name!r} do not fit its network: missing {result.missing_keys[:5]}"
            f"{' ...' if len(result.missing_keys) > 5 else ''}, unexpected {result.unexpected_keys[:5]}"
            f"{' ...' if len(result.unexpected_keys) > 5 else ''}.")


def _width(network: nn.Module, input_size: tuple[int, int, int]) -> int:
    """The width of a classifier-less network's output: timm's ``head_hidden_size`` or
    ``num_features`` when it has them, else measured on one blank image."""
    for attr in ("head_hidden_size", "num_features"):
        value = getattr(network, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    device = next((p.device for p in network.parameters()), torch.device("cpu"))
    with torch.no_grad():
        was = network.training
        network.eval()
        out = network(torch.zeros(1, *input_size, device=device))
        network.train(was)
    return int(out.flatten(1).shape[1])


def _wrap(network: nn.Module, classifier: str | tuple[str, ...] | None, **info: Any) -> ZooModel:
    """``network`` as a ``ZooModel``: its classifier taken out as the head (none: an identity head)."""
    pre = info["preprocessing"]
    if classifier is None:
        return ZooModel(network, nn.Identity(), num_features=_width(network, pre.input_size), **info)
    if isinstance(classifier, tuple):
        body, head, width = split_heads(network, classifier)
        return ZooModel(body, head, num_features=width, **info)
    parent_path, _, _ = classifier.rpartition(".")
    module, parent = network.get_submodule(classifier), network.get_submodule(parent_path)
    if isinstance(module, nn.Conv2d):
        if module.kernel_size != (1, 1) or module.groups != 1 or not hasattr(parent, "global_pool"):
            # The convolution classifies every position and ReLU and pooling follow (SqueezeNet): no
            # pooled vector precedes it, so it stays in the body, whose output is then the class scores.
            return ZooModel(network, nn.Identity(), num_features=module.out_channels, **info)
        module = _as_linear(module)  # timm's conv heads (DLA, DPN, ResNetV2): a 1x1 conv on pooled features
    body, _ = split_classifier(network, classifier)
    width = module.in_features if isinstance(module, nn.Linear) else _width(body, pre.input_size)
    return ZooModel(body, module, num_features=width, **info)


def _as_linear(conv: nn.Conv2d) -> nn.Linear:
    """The Linear that computes what a 1x1 convolution computes on a 1x1 map (same weights)."""
    linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None,
                       device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))
        if conv.bias is not None:
            linear.bias.copy_(conv.bias)
    return linear


def _caffe():
    """``zoo.caffe``, imported on first use: it imports this module (an import is saved as a model)."""
    from . import caffe  # noqa: PLC0415

    return caffe


def _from_caffe(entry: Entry, pretrained: bool) -> ZooModel:
    return _caffe().build_entry(entry, pretrained=pretrained)


def _from_run(entry: Entry, pretrained: bool) -> ZooModel:
    return load_saved(Path(entry.architecture.builder))


# Entries whose network comes from their own files rather than a library builder.
_FROM_FILES: Mapping[str, Callable[[Entry, bool], ZooModel]] = {"caffe": _from_caffe, "run": _from_run}


# ----------------------------------------------------------------------------------------------
# Saved models: a folder with model.json (what to build) and model.safetensors (every weight).


def save_model(model: ZooModel, directory: str | Path, *, name: str | None = None,
               labels: Any = None, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` so that ``zoo.load(directory)`` gives it back: ``model.safetensors`` (all
    weights) and ``model.json`` (the base entry, build spec, cut, head, labels, preprocessing).

    Args:
        model: the model to save.
        directory: the folder (created if needed); existing files are replaced atomically.
        name: the name to record (default: the model's).
        labels: the class names to record (default: the model's), e.g. a fine-tuned head's classes.
        extra: more keys for model.json (a run's summary, say).

    Returns:
        The folder.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_state_dict(model.state_dict(), directory / WEIGHTS_FILE, metadata={"format": "zoo-model"})
    info = model.describe()
    if name is not None:
        info["name"] = name
    if labels is not None:
        info["labels"] = [str(label) for label in labels]
    info["preprocessing"] = asdict(model.preprocessing) if model.preprocessing is not None else None
    if extra:
        info.update(extra)
    write_json(directory / MODEL_FILE, info)
    return directory


def load_saved(directory: str | Path) -> ZooModel:
    """Rebuild a model that ``save_model`` (or ``zoo import-caffe``) wrote; no download needed.

    Raises:
        RunError: the folder is missing, incomplete or inconsistent, or its model.json holds a value
            of the wrong type or size.
    """
    directory = Path(directory)
    if (directory / "graph.json").is_file() and not (directory / MODEL_FILE).is_file():
        return _caffe().load_dir(directory)
    saved = read_saved(directory)
    known = catalog()
    entry = known.get(saved.base) if saved.base and saved.base in known else None
    if (saved.build is not None and saved.build.library == "caffe") or (
            entry is not None and entry.architecture.library == "caffe"):
        model = _rebuild_caffe(saved, entry, directory)
    else:
        model = _rebuild(saved, entry, directory)
    _load_state(model, read_state_dict(directory / WEIGHTS_FILE, format="safetensors"), str(directory))
    return model.eval()


def _rebuild(saved: SavedModel, entry: Entry | None, directory: Path) -> ZooModel:
    """The network ``saved`` describes, with its cut and head, before its weights are loaded."""
    spec = saved.build
    if spec is None:
        if entry is None:
            raise RunError(f"{directory / MODEL_FILE} names base model {saved.base!r}, which is not in the registry "
                           "and has no build spec; register the base (ZOO_REGISTRY) and try again.")
        spec = BuildSpec(library=entry.architecture.library, builder=entry.architecture.builder,
                         kwargs=dict(entry.architecture.kwargs), in_chans=entry.preprocessing.input_size[0],
                         num_classes=entry.head.num_classes)
    pre = saved.preprocessing or (entry.preprocessing if entry is not None else None)
    if pre is None:
        raise RunError(f"{directory / MODEL_FILE} has no preprocessing and its base {saved.base!r} is not in the "
                       "registry; the folder is damaged.")
    try:
        network, classifier = build_network(spec, entry)
    except ZooError as err:
        raise RunError(f"{directory / MODEL_FILE}: its build spec cannot be built: {err}") from err
    model = _wrap(network, classifier, name=saved.name or directory.name, entry=entry,
                  labels=None if saved.head else saved.labels or (labels_for(entry) if entry else None),
                  preprocessing=pre, base=saved.base or (entry.name if entry else None),
                  build=spec, source_dir=directory)
    return _operate(model, saved)


def _rebuild_caffe(saved: SavedModel, entry: Entry | None, directory: Path) -> ZooModel:
    """A saved model built on a Caffe graph: the graph from the folder or the base entry, then its cut
    and head; ``loaded_from`` records the saved identity (the Caffe model carries more than the
    constructor's arguments: its plan)."""
    model = _operate(_caffe().build_saved(directory, entry, saved.preprocessing), saved)
    return model.loaded_from(directory, name=saved.name or directory.name, base=saved.base or model.base,
                             labels=model.labels if saved.head else saved.labels or model.labels)


def _operate(model: ZooModel, saved: SavedModel) -> ZooModel:
    """The surgery ``saved`` records: the cut, then the head (with its labels)."""
    if saved.cut:
        model.cut(saved.cut)
    if saved.head:
        model.reset_classifier(saved.head.num_classes, kind=saved.head.kind, hidden=saved.head.hidden,
                               dropout=saved.head.dropout, labels=saved.labels)
    return model

