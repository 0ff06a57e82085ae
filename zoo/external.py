"""Entries for the rest of timm's and torchvision's catalogues, made on request from their own metadata.

Owns: ``external_entry(name)``. The curated registry holds a few dozen entries with checksums, cards
and reported figures; timm and torchvision know many more. A name from ``zoo list --source timm`` (timm's
``arch.tag``) or ``zoo list --source torchvision`` (``builder.tv_<weights member>``) loads too: the
entry is built from the library's pretrained config, marked ``external``, and its weights go through
the same fetch, verify and cache path (a timm file is checked against the Hub's LFS sha256; a
torchvision file against the hash prefix in its file name, then pinned). Imports timm or torchvision,
so only ``zoo.load`` calls it, after the curated catalogue missed.
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any

from zoo.registry.schema import Entry, parse_entry

__all__ = ["external_entry", "resolve_entry"]

_LICENSES = {"apache-2.0": "Apache-2.0", "mit": "MIT", "bsd-3-clause": "BSD-3-Clause", "cc-by-4.0": "CC-BY-4.0",
             "cc-by-nc-4.0": "CC-BY-NC-4.0"}


def resolve_entry(name: str) -> Entry:
    """The curated entry for ``name``, else one made from timm's or torchvision's full catalogue.

    Raises:
        UnknownModelError: neither knows the name (with close matches from the curated catalogue).
    """
    from zoo.registry import catalog
    from zoo.registry.errors import UnknownModelError

    try:
        return catalog().get(name)
    except UnknownModelError:
        entry = external_entry(name) if "." in name else None
        if entry is None:
            raise
        return entry


def external_entry(name: str) -> Entry | None:
    """An entry for ``name`` from timm's or torchvision's full catalogue, or None if neither has it.

    Example:
        >>> external_entry("vit_base_patch16_224.augreg2_in21k_ft_in1k").source   # doctest: +SKIP
        'timm'
    """
    name = name.strip()
    if ".tv_" in name:
        return _torchvision(name)
    if "." in name:
        return _timm(name)
    return None


def _entry(data: dict[str, Any], library: str) -> Entry:
    data.setdefault("tags", []).append("external")
    return parse_entry(data, path=f"<{library} catalogue>", index=0)


def _timm(name: str) -> Entry | None:
    import timm

    if name not in timm.list_pretrained(name):
        return None
    cfg = timm.models.get_pretrained_cfg(name).to_dict()
    if not cfg.get("hf_hub_id") or cfg.get("num_classes", 0) <= 0:
        return None  # URL-only or feature-only weights: not through the Hub, leave to timm
    channels, height, width = cfg["input_size"]
    crop_pct = cfg.get("crop_pct") or 0.875
    arch = cfg["architecture"]
    hub_name = cfg["hf_hub_id"].split("/", 1)[1] if "/" in cfg["hf_hub_id"] else cfg["hf_hub_id"]
    if hub_name != name:
        return None
    data = {
        "name": name.lower(),
        "architecture": {"library": "timm", "builder": arch},
        "files": [{"role": "weights", "filename": "model.safetensors", "format": "safetensors",
                   "sources": [{"hf": {"repo": cfg["hf_hub_id"], "filename": "model.safetensors"}}]}],
        "license": _LICENSES.get(str(cfg.get("license", "")).lower(), "unknown"),
        "license_note": f"from timm's pretrained config: {cfg.get('license') or 'none given'}",
        "origin": f"https://huggingface.co/{cfg['hf_hub_id']}",
        "description": f"timm {name}, not curated: made from timm's pretrained config (no card, no "
                       "reported figures here; the Hub's LFS sha256 verifies the file).",
        "preprocessing": {"input_size": [channels, height, width],
                          "resize": max(height, math.floor(height / crop_pct)),
                          "interpolation": cfg.get("interpolation") if cfg.get("interpolation") in
                          ("nearest", "bilinear", "bicubic") else "bilinear",
                          "mean": list(cfg.get("mean", (0.485, 0.456, 0.406)))[:channels],
                          "std": list(cfg.get("std", (0.229, 0.224, 0.225)))[:channels]},
        "head": {"num_classes": cfg["num_classes"],
                 **({"labels": "imagenet-1k"} if cfg["num_classes"] == 1000 else {}),
                 **({"classifier": cfg["classifier"]} if isinstance(cfg.get("classifier"), str) else {})},
    }
    return _entry(data, "timm")


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
    # The weights' transform is a partial of a class (ImageClassification) whose own defaults hold what the
    # partial does not set (resize 256, ImageNet's mean and std): both count.
    keywords = {**_defaults_of(getattr(member.transforms, "func", member.transforms)),
                **getattr(member.transforms, "keywords", {})}
    crop = int(keywords.get("crop_size", 224))
    resize = int(keywords.get("resize_size", crop))
    interp = str(keywords.get("interpolation", "bilinear")).split(".")[-1].lower()
    prefix = re.search(r"-([0-9a-f]{8,})\.pth$", member.url)
    categories = member.meta.get("categories") or []
    if not prefix:
        return None
    data = {
        "name": name.lower(),
        "architecture": {"library": "torchvision", "builder": builder,
                         "kwargs": {"transform_input": True} if builder in ("googlenet", "inception_v3") else {}},
        "files": [{"role": "weights", "filename": member.url.rsplit("/", 1)[1], "format": "pth",
                   "sources": [member.url],
                   "checksum": {"sha256-prefix": prefix.group(1),
                                "note": "torchvision publishes only a hash prefix in the file name"}}],
        "license": "BSD-3-Clause",
        "license_note": "torchvision's code licence; check the training data's terms for the weights",
        "origin": "torchvision",
        "description": f"torchvision {builder} {member.name}, not curated: made from torchvision's weights "
                       "enum.",
        "params": member.meta.get("num_params"),
        "preprocessing": {"input_size": [3, crop, crop], "resize": max(resize, crop),
                          **{k: [float(v) for v in keywords[k]] for k in ("mean", "std") if k in keywords},
                          "interpolation": interp if interp in ("nearest", "bilinear", "bicubic") else "bilinear"},
        "head": {"num_classes": len(categories) or 1000,
                 **({"labels": "imagenet-1k"} if len(categories) == 1000 else
                    {"labels": list(categories)} if categories else {})},
    }
    if data["params"] is None:
        del data["params"]
    return _entry(data, "torchvision")


def _defaults_of(factory: Any) -> dict[str, Any]:
    """The keyword defaults of a callable's signature (empty when it has none to read)."""
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
