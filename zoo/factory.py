"""Build the network an entry names, load its weights, and save and reload models in one line.

Owns: ``load`` (a registry name, or a directory written by ``save_model``: a fine-tuned run, a
from-scratch run, an imported Caffe model), ``build_model`` (dispatch on the entry's library:
torchvision, timm, the zoo's reference architectures, Caffe graphs, run directories) and
``save_model``. Every model comes back as a ``ZooModel`` carrying its entry, labels and preprocessing.
Imports ``zoo.registry`` and the core; never ``zoo.finetune`` or ``zoo.cli``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.registry import Entry, catalog, labels_for
from zoo.registry.schema import Preprocessing

from .errors import RunError, UnknownModelError, WeightsError
from .model import HeadSpec, ZooModel, split_classifier

__all__ = ["load", "build_model", "save_model", "load_saved", "MODEL_FILE", "WEIGHTS_FILE"]

MODEL_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"

# torchvision's GoogLeNet and Inception-v3 weights were trained with auxiliary heads and expect the
# input re-normalised inside the network (``transform_input``): the builder sets both only when it
# is handed a weights enum, which the zoo never does, so we set them here.
_TV_AUX = {"googlenet": ("aux1.", "aux2."), "inception_v3": ("AuxLogits.",)}


def load(name_or_path: str | Path, *, pretrained: bool = True, num_classes: int | None = None,
         device: str | torch.device | None = None) -> ZooModel:
    """A ready model: built, weights loaded (fetched and verified on first use), in eval mode.

    Args:
        name_or_path: a registry name (``resnet50``, ``resnet50.tv2_in1k``, an alias) or a directory
            written by ``save_model`` (a fine-tuned or from-scratch run, an imported Caffe model).
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
        from .external import resolve_entry

        model = build_model(resolve_entry(str(name_or_path)), pretrained=pretrained)
    if num_classes is not None:
        model.reset_classifier(num_classes)
    if device is not None:
        model.to(device)
    return model.eval()


def _is_model_dir(path: Path) -> bool:
    return path.is_dir() and ((path / MODEL_FILE).is_file() or (path / "graph.json").is_file())


def build_model(entry: Entry, *, pretrained: bool = True) -> ZooModel:
    """Build ``entry``'s network as a ``ZooModel`` and, if ``pretrained``, load its verified weights."""
    library = entry.architecture.library
    if library == "caffe":
        return _build_caffe(entry, pretrained=pretrained)
    if library == "run":
        return load_saved(Path(entry.architecture.builder))
    network, classifier = _build_network(entry.architecture.library, entry.architecture.builder,
                                         dict(entry.architecture.kwargs), entry)
    if pretrained and entry.files:
        from .weights import load_entry_weights  # noqa: PLC0415 (keeps torch-free import paths light)

        _load_state(network, load_entry_weights(entry), entry.name, _TV_AUX.get(entry.architecture.builder, ()))
    model = _wrap(network, classifier, entry)
    model.build_spec = {"library": library, "builder": entry.architecture.builder,
                        "kwargs": dict(entry.architecture.kwargs),
                        "in_chans": entry.preprocessing.input_size[0], "num_classes": entry.head.num_classes}
    return model


def _build_network(library: str, builder: str, kwargs: dict[str, Any], entry: Entry | None,
                   in_chans: int | None = None, num_classes: int | None = None) -> tuple[nn.Module, str]:
    """The bare network and the module path of its classifier."""
    in_chans = in_chans if in_chans is not None else entry.preprocessing.input_size[0]
    num_classes = num_classes if num_classes is not None else entry.head.num_classes
    classifier = entry.head.classifier if entry is not None else None
    if library == "torchvision":
        import torchvision.models as tvm

        if builder in _TV_AUX and entry is not None and entry.files:
            kwargs.setdefault("transform_input", True)
        kwargs.setdefault("num_classes", num_classes)
        try:
            network = tvm.get_model(builder, weights=None, **kwargs)
        except ValueError as err:
            raise UnknownModelError(builder) from err
        return network, classifier or _guess_classifier(network)
    if library == "timm":
        import timm

        from .hub import offline_mode

        with offline_mode():  # an "hf-hub:" name reads its config from the Hub: never when offline
            network = timm.create_model(builder, pretrained=False, num_classes=num_classes, in_chans=in_chans,
                                        **kwargs)
        return network, classifier or network.pretrained_cfg.get("classifier") or _guess_classifier(network)
    if library == "zoo":
        from . import archs

        network, path = archs.build(builder, in_chans=in_chans, num_classes=num_classes, **kwargs)
        return network, path
    raise WeightsError(f"cannot build library {library!r} here (entry {entry.name if entry else builder!r})")


def _guess_classifier(network: nn.Module) -> str:
    """The last Linear in module order: the classifier of every torchvision/timm classification net."""
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


def _num_features(head: nn.Module, body: nn.Module, input_size: tuple[int, int, int]) -> int:
    if isinstance(head, nn.Linear):
        return head.in_features
    if isinstance(head, nn.Conv2d):
        return head.in_channels
    with torch.no_grad():
        was = body.training
        body.eval()
        out = body(torch.zeros(1, *input_size))
        body.train(was)
    return int(out.flatten(1).shape[1])


def _wrap(network: nn.Module, classifier: str, entry: Entry, *, labels: Any = None,
          preprocessing: Preprocessing | None = None) -> ZooModel:
    body, head = split_classifier(network, classifier)
    pre = preprocessing or entry.preprocessing
    return ZooModel(body, head, num_features=_num_features(head, body, pre.input_size), name=entry.name,
                    entry=entry, labels=labels if labels is not None else labels_for(entry), preprocessing=pre,
                    head_spec=None, base=entry.name)


def _build_caffe(entry: Entry, *, pretrained: bool) -> ZooModel:
    from . import caffe

    return caffe.build_entry(entry, pretrained=pretrained)


# ----------------------------------------------------------------------------------------------
# Saved models: a folder with model.json (what to build) and model.safetensors (every weight).


def save_model(model: ZooModel, directory: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` so that ``zoo.load(directory)`` gives it back: ``model.safetensors`` (all
    weights) and ``model.json`` (the base entry, build spec, cut, head, labels, preprocessing).

    Args:
        model: the model to save.
        directory: the folder (created if needed); existing files are replaced atomically.
        extra: more keys for model.json (a run's summary, say).

    Returns:
        The folder.
    """
    from ._io import write_json
    from .weights import save_state_dict

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_state_dict(model.state_dict(), directory / WEIGHTS_FILE, metadata={"format": "zoo-model"})
    info = model.describe()
    info["build"] = getattr(model, "build_spec", None)
    info["preprocessing"] = asdict(model.preprocessing) if model.preprocessing is not None else None
    if extra:
        info.update(extra)
    write_json(directory / MODEL_FILE, info)
    return directory


def _preprocessing_from(data: dict[str, Any] | None) -> Preprocessing | None:
    if not data:
        return None
    data = dict(data)
    for key in ("input_size", "mean", "std"):
        data[key] = tuple(data[key])
    return Preprocessing(**data)


def load_saved(directory: str | Path) -> ZooModel:
    """Rebuild a model that ``save_model`` (or ``zoo import-caffe``) wrote; no download needed.

    Raises:
        RunError: the folder is missing, incomplete or inconsistent.
    """
    directory = Path(directory)
    if (directory / "graph.json").is_file() and not (directory / MODEL_FILE).is_file():
        from . import caffe

        return caffe.load_dir(directory)
    try:
        info = json.loads((directory / MODEL_FILE).read_text("utf-8"))
    except FileNotFoundError as err:
        raise RunError(f"{directory} has no {MODEL_FILE}: it is not a saved model or run. A run that was "
                       "interrupted resumes with `zoo finetune ... --resume`.") from err
    except json.JSONDecodeError as err:
        raise RunError(f"{directory / MODEL_FILE} is not valid JSON ({err.msg}); the run folder is damaged.") from err
    weights = directory / WEIGHTS_FILE
    if not weights.is_file():
        raise RunError(f"{directory} has {MODEL_FILE} but no {WEIGHTS_FILE}: the run did not finish. "
                       "Resume it with `--resume`, or load its checkpoint.")
    base_name = info.get("base")
    build = info.get("build")
    known = catalog()
    entry = known.get(base_name) if base_name and base_name in known else None
    if entry is None and not build:
        raise RunError(f"{directory / MODEL_FILE} names base model {base_name!r}, which is not in the registry "
                       "and has no build spec; register the base (ZOO_REGISTRY) and try again.")
    if (build or {}).get("library") == "caffe" or (entry is not None and entry.architecture.library == "caffe"):
        from . import caffe

        model = caffe.build_saved(directory, entry, _preprocessing_from(info.get("preprocessing")))
    else:
        if build:
            network, classifier = _build_network(build["library"], build["builder"], dict(build.get("kwargs", {})),
                                                 entry, in_chans=build.get("in_chans"),
                                                 num_classes=build.get("num_classes"))
        else:
            network, classifier = _build_network(entry.architecture.library, entry.architecture.builder,
                                                 dict(entry.architecture.kwargs), entry)
        pre = _preprocessing_from(info.get("preprocessing")) or (entry.preprocessing if entry else None)
        if entry is None:
            from zoo.registry.schema import Architecture, Head

            entry = Entry(name=base_name or "local.model", architecture=Architecture(build["library"], build["builder"]),
                          files=(), license="unknown", preprocessing=pre,
                          head=Head(num_classes=build.get("num_classes") or 1))
        model = _wrap(network, classifier, entry, preprocessing=pre)
        model.build_spec = build
    if info.get("cut"):
        model.cut(info["cut"])
    if info.get("head"):
        spec = HeadSpec(**info["head"])
        model.reset_classifier(spec.num_classes, kind=spec.kind, hidden=spec.hidden, dropout=spec.dropout)
    from .weights import read_state_dict

    _load_state(model, read_state_dict(weights, format="safetensors"), str(directory))
    model.name = info.get("name") or directory.name
    model.base = base_name or model.base
    if info.get("labels"):
        model.labels = tuple(info["labels"])
    model.source_dir = directory
    return model.eval()
