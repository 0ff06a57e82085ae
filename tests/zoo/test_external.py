"""Entries made from timm's and torchvision's own objects: the libraries' preprocessing (class defaults
included), bare architecture names resolved as the libraries resolve them, feature backbones, suggestions
from the full catalogues, and names timm lists but the zoo cannot load refused with the reason and not
listed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import zoo
from zoo.cli.main import cli
from zoo.errors import RegistryError, UnknownModelError
from zoo.external import external_entry, resolve_entry, timm_refusal
from zoo.registry.catalog import list_external


def test_every_torchvision_weight_gets_its_transforms_numbers():
    """mean, std, resize, crop and interpolation come from weights.transforms(), not from the partial's
    keywords (which leave out the class defaults)."""
    import torchvision.models as tvm

    checked = 0
    for builder in tvm.list_models(module=tvm):
        for member in tvm.get_model_weights(builder):
            entry = external_entry(f"{builder}.tv_{member.name.lower()}")
            t, p = member.transforms(), entry.preprocessing
            assert (p.mean, p.std) == (tuple(t.mean), tuple(t.std)), entry.name
            assert (p.resize, p.crop, p.interpolation) == (t.resize_size[0], (t.crop_size[0],) * 2,
                                                           t.interpolation.value), entry.name
            assert p.crop_mode == "center" and p.antialias == t.antialias
            checked += 1
    assert checked == len(list_external(source="torchvision")) > 100


def test_bare_names_resolve_as_the_libraries_resolve_them():
    tv = resolve_entry("densenet121")  # torchvision's DEFAULT weights
    assert tv.name == "densenet121.tv_imagenet1k_v1" and tv.preprocessing.resize == 256
    assert tv.preprocessing.mean == pytest.approx((0.485, 0.456, 0.406))
    timm_only = resolve_entry("eva02_tiny_patch14_224")  # timm's default tag
    assert timm_only.name == "eva02_tiny_patch14_224.mim_in22k" and timm_only.source == "timm"
    assert resolve_entry("resnet50").name == zoo.get_entry("resnet50").name  # the curated default first


def test_unknown_names_suggest_full_library_names():
    with pytest.raises(UnknownModelError) as info:
        resolve_entry("densnet121.tv_imagenet1k_v1")
    assert "densenet121.tv_imagenet1k_v1" in info.value.suggestions


def test_feature_backbones_are_entries_with_no_classifier():
    entry = external_entry("vit_small_patch14_dinov2.lvd142m")
    assert entry.head.num_classes == 0 and entry.head.labels is None and entry.head.classifier is None
    assert entry.architecture.builder == "vit_small_patch14_dinov2.lvd142m"  # built with this tag's config
    assert entry.preprocessing.crop == (518, 518) and entry.preprocessing.interpolation == "bicubic"
    out = CliRunner().invoke(cli, ["info", "vit_small_patch14_dinov2.lvd142m"])
    assert out.exit_code == 0 and "head         : none: a feature backbone" in out.output


def test_timm_crop_modes_and_larger_label_sets_come_from_timm():
    squash = external_entry("convnext_base.fb_in22k_ft_in1k_384")
    assert squash.preprocessing.crop_mode == "squash" and squash.preprocessing.resize == 384
    in12k = external_entry("convnext_nano.in12k")
    assert len(in12k.head.labels) == 11821 and in12k.head.num_classes == 11821


@pytest.mark.parametrize(("name", "reason"), [
    ("gcvit_base.in1k", "no published checksum"),
    ("davit_base_fl.msft_florence2", "microsoft/Florence-2-base"),
    ("volo_d1_224.sail_in1k", "combined by a rule of their own"),
    ("volo_d4_448.sail_in1k", "crop_pct > 1"),
    ("qwen3_vit_88m_enc.qwen3_5_0_8b", "outputs tokens"),
])
def test_names_the_zoo_cannot_load_are_refused_with_the_reason_and_not_listed(name, reason):
    with pytest.raises(RegistryError, match=reason):
        zoo.load(name, pretrained=False)
    assert name not in {n.name for n in list_external(name, source="timm")}


def test_listing_and_refusal_agree_on_every_timm_name():
    """list_external restates timm_refusal's rules (the registry imports nothing above it)."""
    import timm

    listed = {n.name for n in list_external(source="timm")}
    refused = {n for n in timm.list_pretrained() if timm_refusal(n, timm.models.get_pretrained_cfg(n).to_dict())}
    assert listed.isdisjoint(refused) and listed | refused == set(timm.list_pretrained())
