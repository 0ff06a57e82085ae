"""The real Caffe Model Zoo files: fetched, sha1-verified, converted, and checked on real images.

Tests never touch the network, so this runs only against a mirror filled on a connected machine::

    zoo mirror /data/caffe-mirror bvlc_alexnet bvlc_googlenet vgg16 resnet50 squeezenet1_1 ...
    mkdir /data/caffe-mirror/images   # photos named <ImageNet class index>_<anything>.jpg, e.g. 281_cat.jpg
    ZOO_CAFFE_MIRROR=/data/caffe-mirror pytest tests/caffe/test_real_zoo.py

Each entry must load, give ``num_classes`` logits, and rank each photo's class in its top 5 (the
zoo files report 80-91 % top-5 accuracy on ImageNet; the photos should be clear examples).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zoo.registry import list_models

MIRROR = os.environ.get("ZOO_CAFFE_MIRROR", "")
ENTRIES = [e.name for e in list_models(source="caffe")]
SKIP = ("the real Caffe Model Zoo files need the network, which tests never use: fill a mirror with "
        "`zoo mirror DIR NAMES` on a connected machine and set ZOO_CAFFE_MIRROR=DIR")


@pytest.mark.slow
@pytest.mark.parametrize("name", ENTRIES or ["(no caffe entries)"])
def test_real_caffe_entry_converts_and_classifies(name, monkeypatch):
    if not MIRROR:
        pytest.skip(SKIP)
    if not ENTRIES:
        pytest.skip("the registry has no Caffe entries")
    import torch

    import zoo
    from zoo.images import open_image

    monkeypatch.setenv("ZOO_MIRROR", MIRROR)
    model = zoo.load(name)
    entry = model.entry
    c, h, w = entry.preprocessing.input_size
    with torch.no_grad():
        logits = model(torch.zeros(1, c, h, w))
    assert logits.shape == (1, entry.head.num_classes)
    images = sorted(p for p in (Path(MIRROR) / "images").glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if entry.head.num_classes != 1000 or not images:
        return
    misses = []
    for path in images:
        want = int(path.name.split("_", 1)[0])
        x = model.transforms(open_image(path)).unsqueeze(0)
        with torch.no_grad():
            top5 = model(x).topk(5).indices[0].tolist()
        if want not in top5:
            misses.append((path.name, top5))
    assert not misses, f"{name}: classes not in the top 5: {misses}"
