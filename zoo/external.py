"""Entries for the rest of timm's and torchvision's catalogues, made on request from their own metadata.

Owns: ``resolve_entry(name)`` (the curated catalogue first, then the libraries) and
``external_entry(name)``. The curated registry holds a few dozen entries with checksums, cards and
reported figures; timm and torchvision know many more. A name from ``zoo list --source timm`` (timm's
``arch.tag``) or ``zoo list --source torchvision`` (``builder.tv_<weights member>``) loads too, and so
does a bare architecture either library knows (torchvision's ``DEFAULT`` weights first, then timm's
default tag). The entry is built from the library's own objects: preprocessing from torchvision's
``weights.transforms()`` and from timm's ``resolve_data_config`` (crop percentage and crop mode
included), so the zoo feeds the network exactly as the library does. It is marked ``external`` and its
weights go through the same fetch, verify and cache path (a timm file is checked against the Hub's LFS
sha256; a torchvision file against the hash prefix in its file name, then pinned).

Some names timm lists cannot be loaded that way; each is refused with the reason (``timm_refusal``),
and ``zoo list`` does not show them. Imports timm or torchvision only inside functions, after the
curated catalogue missed; never torch at import time.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from zoo.registry import catalog
from zoo.registry.catalog import list_external
from zoo.registry.errors import RegistryError, UnknownModelError, close_matches
from zoo.registry.schema import Entry, parse_entry

__all__ = ["external_entry", "resolve_entry", "timm_refusal", "default_name"]

_LICENSES = {"apache-2.0": "Apache-2.0", "mit": "MIT", "bsd-3-clause": "BSD-3-Clause", "cc-by-4.0": "CC-BY-4.0",
             "cc-by-nc-4.0": "CC-BY-NC-4.0"}
_INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
# Several classifiers combined by something other than a mean (VOLO adds the maximum of a per-token
# head; EfficientViM weighs its heads by learned weights): the zoo's head contract cannot hold them.
_COMBINED_HEADS = ("volo_", "efficientvim_")


def resolve_entry(name: str) -> Entry:
    """The curated entry for ``name``, else one made from timm's or torchvision's full catalogue.

    Raises:
        UnknownModelError: nobody knows the name (with close matches from the curated catalogue and the
            libraries' full names).
        RegistryError: a library knows the name but the zoo cannot load it (the reason is given).
    """
    known = catalog()
    try:
        return known.get(name)
    except UnknownModelError as err:
        entry = external_entry(name)
        if entry is not None:
            return entry
        pool = [*known.names(), *(n.name for n in list_external())]
        raise UnknownModelError(name, close_matches(name.strip().lower(), pool)) from err


def external_entry(name: str) -> Entry | None:
    """An entry for ``name`` from timm's or torchvision's full catalogue, or None if neither has it.

    ``name`` is a full name (``densenet121.tv_imagenet1k_v1``, ``vit_small_patch14_dinov2.lvd142m``) or a
    bare architecture (``densenet121``: torchvision's DEFAULT weights; ``eva02_tiny_patch14_224``: timm's
    default tag).

    Raises:
        RegistryError: timm lists the name but its weights or preprocessing cannot be had the zoo's way.

    Example:
        >>> external_entry("vit_base_patch16_224.augreg2_in21k_ft_in1k").source   # doctest: +SKIP
        'timm'
    """
    name = name.strip().lower()
    if "." not in name:
        full = default_name(name)
        return external_entry(full) if full else None
    if name in _timm_names():  # timm has a few tv_ tags of its own (densenet121.tv_in1k)
        return _timm(name)
    return _torchvision(name) if ".tv_" in name else None


def default_name(arch: str) -> str | None:
    """The full name a bare architecture stands for: torchvision's ``DEFAULT`` weights, else timm's
    default pretrained tag, else None."""
    import torchvision.models as tvm

    if arch in tvm.list_models(module=tvm):
        try:
            return f"{arch}.tv_{tvm.get_model_weights(arch).DEFAULT.name.lower()}"
        except (ValueError, KeyError, AttributeError):
            pass
    import timm

    cfg = timm.models.get_pretrained_cfg(arch) if arch in _timm_archs() else None
    return f"{arch}.{cfg.tag}" if cfg is not None and cfg.tag else None


@lru_cache(maxsize=1)
def _timm_archs() -> frozenset[str]:
    import timm

    return frozenset(n.split(".", 1)[0] for n in timm.list_pretrained())


@lru_cache(maxsize=1)
def _timm_names() -> frozenset[str]:
    import timm

    return frozenset(timm.list_pretrained())


def _entry(data: dict[str, Any], library: str) -> Entry:
    data.setdefault("tags", []).append("external")
    return parse_entry(data, path=f"<{library} catalogue>", index=0)


def timm_refusal(name: str, cfg: dict[str, Any]) -> str | None:
    """Why the zoo cannot load timm's ``name`` (its pretrained config ``cfg``) the zoo's way, or None.

    ``zoo.registry.catalog.list_external`` applies the same rules (the registry cannot import this
    module), and a test checks that both agree on every name.
    """
    hub = cfg.get("hf_hub_id") or ""
    if not hub:
        return "its weights are only at a URL with no published checksum, and the zoo loads only verified files"
    if not hub.startswith("timm/") or cfg.get("hf_hub_filename"):
        return (f"its weights are in the Hub repository {hub}, outside timm's own (timm/...), whose files are "
                "published as model.safetensors in timm's layout; for others the file and its layout are not known "
                "without the network (timm may convert them while loading)")
    if (cfg.get("crop_pct") or 0.875) > 1.0:
        return "timm pads its input to the crop (crop_pct > 1), which an entry's preprocessing cannot describe"
    if cfg["architecture"].endswith("_enc"):
        return "it is a language model's image encoder that outputs tokens, with no pooled feature vector"
    if isinstance(cfg.get("classifier"), (tuple, list)) and name.startswith(_COMBINED_HEADS):
        return "its classifiers are combined by a rule of their own, which the zoo's one-head contract cannot hold"
    _, height, width = cfg["input_size"]
    if height != width and _timm_scale(cfg) != _zoo_scale(cfg):
        return "its non-square resize cannot be described by one resize size"
    if cfg.get("interpolation") not in _INTERPOLATIONS:
        return f"its interpolation {cfg.get('interpolation')!r} is not one the zoo's preprocessing names"
    return None


def _timm_scale(cfg: dict[str, Any]) -> tuple[int, int]:
    """timm's eval resize target: each side of the input divided by crop_pct, floored."""
    crop_pct = cfg.get("crop_pct") or 0.875
    return math.floor(cfg["input_size"][1] / crop_pct), math.floor(cfg["input_size"][2] / crop_pct)


def _zoo_scale(cfg: dict[str, Any]) -> tuple[int, int]:
    """The target ``zoo.pixels`` computes from one ``resize`` (the longer side's) for this input size."""
    _, height, width = cfg["input_size"]
    longer = max(height, width)
    resize = max(_timm_scale(cfg))
    return math.floor(height * resize / longer), math.floor(width * resize / longer)


def _timm_labels(cfg: dict[str, Any]) -> str | list[str] | None:
    """The label set timm knows for these classes: ImageNet-1k by the registry's name, the larger
    ImageNet subsets (12k, 21k, 22k) from timm's own ``ImageNetInfo``, else none."""
    from timm.data import infer_imagenet_subset

    subset = infer_imagenet_subset(cfg) if cfg["num_classes"] > 0 else None
    if subset is None:
        return None
    if subset == "imagenet-1k":
        return "imagenet-1k"
    labels = _imagenet_labels(subset)
    return list(labels) if len(labels) == cfg["num_classes"] else None


@lru_cache(maxsize=8)
def _imagenet_labels(subset: str) -> tuple[str, ...]:
    from timm.data import ImageNetInfo

    return tuple(d.split(",")[0].strip() for d in ImageNetInfo(subset).label_descriptions())


def _timm(name: str) -> Entry | None:
    import timm
    from timm.data import resolve_data_config

    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    reason = timm_refusal(name, cfg)
    if reason is not None:
        raise RegistryError(f"timm lists it, but the zoo does not offer it: {reason}. Pick another name from "
                            "`zoo list --source timm`.", entry=name)
    data = resolve_data_config(pretrained_cfg=cfg)  # what timm's own create_transform is given
    channels, height, width = data["input_size"]
    num_classes = cfg["num_classes"]
    labels = _timm_labels(cfg)
    classifier = cfg.get("classifier") if isinstance(cfg.get("classifier"), str) and num_classes else None
    kind = "a feature backbone with no classifier" if num_classes == 0 else f"{num_classes} outputs"
    entry = {
        "name": name,
        # The full name, so timm builds with this tag's config (input size, ...), as create_model does.
        "architecture": {"library": "timm", "builder": name},
        "files": [{"role": "weights", "filename": "model.safetensors", "format": "safetensors",
                   "sources": [{"hf": {"repo": cfg["hf_hub_id"], "filename": "model.safetensors"}}]}],
        "license": _LICENSES.get(str(cfg.get("license", "")).lower(), "unknown"),
        "license_note": f"from timm's pretrained config: {cfg.get('license') or 'none given'}",
        "origin": f"https://huggingface.co/{cfg['hf_hub_id']}",
        "description": f"timm {name} ({kind}), not curated: made from timm's pretrained config (no card, no "
                       "reported figures here; the Hub's LFS sha256 verifies the file).",
        "preprocessing": {"input_size": [channels, height, width], "resize": max(_timm_scale(data)),
                          "interpolation": data["interpolation"], "crop_mode": data["crop_mode"],
                          "mean": list(data["mean"])[:channels], "std": list(data["std"])[:channels]},
        "head": {"num_classes": num_classes, **({"labels": labels} if labels else {}),
                 **({"classifier": classifier} if classifier else {}),
                 **({"first_conv": cfg["first_conv"]} if isinstance(cfg.get("first_conv"), str) else {})},
    }
    return _entry(entry, "timm")


def _torchvision(name: str) -> Entry | None:
    import torchvision.models as tvm

    builder, _, tag = name.partition(".tv_")
    if builder not in tvm.list_models(module=tvm):  # classification models only
        return None
    try:
        enum = tvm.get_model_weights(builder)
    except (ValueError, KeyError):
        return None
    member = next((w for w in enum if w.name.lower() == tag), None)
    if member is None:
        return None
    prefix = re.search(r"-([0-9a-f]{8,})\.pth$", member.url)
    if not prefix:
        return None
    # The transform object itself: its class defaults (mean, std, resize) are not in the partial's
    # keywords that weights.transforms holds.
    t = member.transforms()
    crop, resize = int(t.crop_size[0]), int(t.resize_size[0])
    categories = member.meta.get("categories") or []
    data = {
        "name": name,
        "architecture": {"library": "torchvision", "builder": builder, "kwargs": _tv_kwargs(builder, member)},
        "files": [{"role": "weights", "filename": member.url.rsplit("/", 1)[1], "format": "pth",
                   "sources": [member.url],
                   "checksum": {"sha256-prefix": prefix.group(1),
                                "note": "torchvision publishes only a hash prefix in the file name"}}],
        "license": "BSD-3-Clause",
        "license_note": "torchvision's code licence; check the training data's terms for the weights",
        "origin": "torchvision",
        "description": f"torchvision {builder} {member.name}, not curated: made from torchvision's weights "
                       "enum and its transforms().",
        "preprocessing": {"input_size": [3, crop, crop], "resize": resize, "interpolation": t.interpolation.value,
                          "mean": list(t.mean), "std": list(t.std), "antialias": bool(t.antialias)},
        "head": {"num_classes": len(categories) or 1000,
                 **({"labels": "imagenet-1k"} if len(categories) == 1000 else
                    {"labels": list(categories)} if categories else {})},
    }
    if member.meta.get("num_params") is not None:
        data["params"] = member.meta["num_params"]
    return _entry(data, "torchvision")


def _tv_kwargs(builder: str, member: Any) -> dict[str, Any]:
    """The builder options torchvision sets itself when it is handed these weights (the zoo hands it
    none): GoogLeNet's and Inception's input transform, a ViT's or MaxViT's input size."""
    if builder in ("googlenet", "inception_v3"):
        return {"transform_input": True}
    if builder.startswith("vit_"):
        return {"image_size": int(member.meta["min_size"][0])}
    if builder.startswith("maxvit"):
        return {"input_size": [int(v) for v in member.meta["min_size"]]}
    return {}
