"""Every name ``zoo list --source torchvision`` and ``zoo list --source timm`` show loads right: the entry
resolves, its network builds (on the meta device: no memory, no weights) with a head that fits the
entry, and its preprocessing gives exactly what the library's own transform gives on a real photo
(torchvision's ``weights.transforms()``, timm's ``resolve_data_config`` + ``create_transform``).

Fast on purpose: names that share an architecture build once; names that share a preprocessing and a
library transform are compared once; one forward pass on the meta device per network class checks
that the head fits the body's output.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zoo.cli.main import cli
from zoo.external import resolve_entry
from zoo.factory import build_model
from zoo.preprocess import build_transform

pytestmark = pytest.mark.slow

PHOTO = Path(__file__).resolve().parents[2] / ".." / "shared" / "real" / "photos" / "chelsea.png"


def _listed(source: str) -> list[str]:
    """Exactly what ``zoo list --source SOURCE --json`` prints, name by name."""
    result = CliRunner().invoke(cli, ["list", "--source", source, "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line)["name"] for line in result.output.splitlines() if line.startswith("{")]


NAMES = [("torchvision", n) for n in _listed("torchvision")] + [("timm", n) for n in _listed("timm")]


@pytest.fixture(scope="module")
def photo() -> Image.Image:
    """A real photograph when ../shared/real is there, else a made one with detail at every scale."""
    if PHOTO.is_file():
        return Image.open(PHOTO).convert("RGB")
    y, x = np.mgrid[0:301, 0:457]
    pattern = np.stack([(x * 7 + y) % 256, (y * 5) % 256, ((x * y) // 7) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(pattern)


class _Seen:
    """What earlier names already established, so names that share it do not repeat the work."""

    builds: dict[tuple, dict] = {}
    forwarded: set[tuple] = set()
    transforms: dict[tuple, float] = {}


def _build_key(entry) -> tuple:
    """What decides the network the zoo builds for ``entry``. A timm tag changes the build only through
    its config's class count, input channels and, for fixed-size networks, input size (timm's
    ``_update_default_model_kwargs``), all given here; a torchvision build ignores the input size."""
    a = entry.architecture
    arch, size = a.builder, None
    if a.library == "timm":
        import timm

        cfg = timm.models.get_pretrained_cfg(a.builder)
        arch, size = cfg.architecture, tuple(cfg.input_size) if cfg.fixed_input_size else None
    return (a.library, arch, json.dumps(dict(a.kwargs), sort_keys=True), size, entry.preprocessing.input_size[0],
            entry.head.num_classes, entry.head.classifier)


def _build(entry) -> dict:
    """Build ``entry`` once per build key and describe the result (the model is let go)."""
    key = _build_key(entry)
    if key in _Seen.builds:
        return _Seen.builds[key]
    size = entry.preprocessing.input_size
    try:
        model = build_model(entry, pretrained=False, device="meta")
    except NotImplementedError:
        # torchvision's RegNets compute their widths with tensors in __init__, which the meta device
        # cannot read back: those few build on the CPU (and run at a small size: they pool globally).
        model = build_model(entry, pretrained=False)
        size = (size[0], 64, 64)
    outputs = [m.out_features for m in model.head.modules() if isinstance(m, torch.nn.Linear)][-1:]
    info = {"num_features": model.num_features, "outputs": outputs[0] if outputs else model.num_features,
            "has_classifier": model.has_classifier, "kind": (type(model.trunk).__name__, type(model.head).__name__)}
    if info["kind"] not in _Seen.forwarded:  # one pass per network class: the head fits the body
        _Seen.forwarded.add(info["kind"])
        device = next(model.parameters()).device
        with torch.no_grad():
            features = model.body(torch.zeros(2, *size, device=device))
            logits = model.head(features)
        info["shapes"] = (tuple(features.shape), tuple(logits.shape))
    _Seen.builds[key] = info
    return info


@functools.cache
def _torchvision_weights() -> dict[str, object]:
    import torchvision.models as tvm

    return {w.url: w for b in tvm.list_models(module=tvm) for w in tvm.get_model_weights(b)}


@functools.cache
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_pretrained())


def _library_transform(source: str, entry):
    """The library's own eval transform for ``entry``'s weights, and a key for what decides it."""
    if source == "torchvision":
        url = entry.files[0].sources[0].url
        return _torchvision_weights()[url].transforms(), ("torchvision", url)
    import timm
    from timm.data import create_transform, resolve_data_config

    name = entry.name if entry.name in _timm_names() else entry.files[0].sources[0].hf_repo.split("/")[-1]
    config = resolve_data_config(pretrained_cfg=timm.models.get_pretrained_cfg(name).to_dict())
    key = ("timm", json.dumps(config, sort_keys=True, default=str))
    return (lambda: create_transform(**config)), key


@pytest.mark.parametrize(("source", "name"), NAMES, ids=[n for _, n in NAMES])
def test_listed_name_loads_with_the_library_preprocessing(source, name, photo):
    entry = resolve_entry(name)
    assert entry.name == name and entry.architecture.library == source

    info = _build(entry)
    classes = entry.head.num_classes
    assert info["num_features"] > 0
    assert info["has_classifier"] == (classes > 0)
    assert info["outputs"] == (classes or info["num_features"])
    if "shapes" in info:
        assert info["shapes"] == ((2, info["num_features"]), (2, classes or info["num_features"]))

    transform, library_key = _library_transform(source, entry)
    key = (entry.preprocessing, library_key)
    if key not in _Seen.transforms:
        transform = transform() if source == "timm" else transform
        ours, theirs = build_transform(entry.preprocessing)(photo), transform(photo)
        assert ours.shape == theirs.shape
        _Seen.transforms[key] = float((ours - theirs).abs().max())
    assert _Seen.transforms[key] == 0.0, f"{name}: the zoo's preprocessing differs from {source}'s"
