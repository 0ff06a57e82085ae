"""zoo.pixels, the torch-free preprocessing: it imports no torch, gives exactly what torchvision's and
timm's eval transforms give on PIL images for every crop mode, and zoo.preprocess gives exactly what it
gives (Caffe's BGR 0-255 with a mean image and grey weights included)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zoo import pixels
from zoo.preprocess import build_transform
from zoo.registry.schema import Preprocessing

PHOTOS = Path(__file__).resolve().parents[2] / ".." / "shared" / "real" / "photos"


def _made(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 7 + y) % 256, (y * 5 + 3) % 256, ((x * y) // 7) % 256], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    """Landscape, portrait, tiny and odd-sized images; the real photos when ../shared/real is there."""
    made = [_made(457, 301), _made(211, 333), _made(20, 31), _made(224, 224)]
    real = [Image.open(p).convert("RGB") for p in sorted(PHOTOS.glob("*.jpg"))[:3]] if PHOTOS.is_dir() else []
    return made + real


def test_imports_no_torch():
    code = ("import sys, zoo.pixels; heavy = {'torch', 'torchvision', 'timm'} & set(sys.modules); "
            "print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(("crop", "resize", "interpolation"),
                         [(224, 256, "bilinear"), (299, 342, "bilinear"), (384, 384, "bicubic"),
                          (224, 232, "bilinear")])
def test_equals_torchvision_weights_transform(images, crop, resize, interpolation):
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    theirs = ImageClassification(crop_size=crop, resize_size=resize,
                                 interpolation=InterpolationMode(interpolation))
    pre = Preprocessing(input_size=(3, crop, crop), resize=resize, interpolation=interpolation)
    for image in images:
        np.testing.assert_array_equal(pixels.to_array(image, pre), theirs(image).numpy())


@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
@pytest.mark.parametrize(("size", "crop_pct", "interpolation"),
                         [((224, 224), 0.875, "bicubic"), ((384, 384), 1.0, "bilinear"), ((240, 240), 0.9, "nearest"),
                          ((256, 192), 1.0, "bicubic")])
def test_equals_timm_eval_transform(images, crop_mode, size, crop_pct, interpolation):
    from timm.data import create_transform

    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    theirs = create_transform(input_size=(3, *size), crop_pct=crop_pct, crop_mode=crop_mode,
                              interpolation=interpolation, mean=mean, std=std)
    pre = Preprocessing(input_size=(3, *size), resize=math.floor(max(size) / crop_pct), interpolation=interpolation,
                        mean=mean, std=std, crop_mode=crop_mode)
    for image in images:
        np.testing.assert_array_equal(pixels.to_array(image, pre), theirs(image).numpy())


def test_border_pads_with_the_mean_colour():
    pre = Preprocessing(input_size=(3, 64, 64), resize=64, crop_mode="border", mean=(0.2, 0.4, 0.6))
    out = pixels.geometry(Image.new("RGB", (128, 32), (250, 0, 0)), pre)
    assert out.shape == (64, 64, 3)
    assert out[0, 0].tolist() == [51, 102, 153] and out[-1, -1].tolist() == [51, 102, 153]  # round(255 * mean)
    assert out[32, 32].tolist() == [250, 0, 0]


def test_squash_at_the_input_size_feeds_the_whole_image():
    """Caffe feeds its small nets the whole image at the input size: nothing is cropped away."""
    pre = Preprocessing(input_size=(1, 28, 28), resize=28, crop_mode="squash", mean=(0.0,), std=(1.0,))
    image = np.zeros((40, 30), dtype=np.uint8)
    image[0, :] = image[-1, :] = image[:, 0] = image[:, -1] = 255  # a frame on the very edge
    out = pixels.geometry(Image.fromarray(image), pre)[:, :, 0]
    assert out.shape == (28, 28)
    assert out[0].min() > 100 and out[-1].min() > 100 and out[:, 0].min() > 100 and out[:, -1].min() > 100
    same = Image.fromarray(image[:28, :28])
    np.testing.assert_array_equal(pixels.geometry(same, pre)[:, :, 0], image[:28, :28])  # 28x28 passes as it is


def test_preprocess_gives_exactly_the_torch_free_array(images):
    mean_image = np.random.default_rng(0).uniform(0, 255, (3, 40, 40)).astype(np.float32)
    cases = [
        (Preprocessing(input_size=(3, 32, 32), resize=36), None),
        (Preprocessing(input_size=(3, 32, 32), resize=36, channel_order="BGR", scale=255.0,
                       mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0)), None),
        (Preprocessing(input_size=(3, 32, 32), resize=40, channel_order="BGR", scale=255.0,
                       mean=(104.0, 117.0, 123.0), std=(1.0, 1.0, 1.0)), mean_image),
        (Preprocessing(input_size=(1, 28, 28), resize=28, crop_mode="squash", mean=(0.5,), std=(0.25,)), None),
        (Preprocessing(input_size=(3, 48, 40), resize=60, crop_mode="border", interpolation="bicubic"), None),
    ]
    for pre, mi in cases:
        transform = build_transform(pre, mean_image=mi)
        for image in images:
            want = pixels.to_array(image, pre, mean_image=mi)
            assert want.shape == pre.input_size
            np.testing.assert_array_equal(transform(image).numpy(), want)


@pytest.mark.parametrize("crop_mode", ["center", "squash", "border"])
def test_tensor_input_has_the_same_geometry(images, crop_mode):
    """Tensors are resized by torch (values differ slightly from Pillow's), with the same sizes and offsets."""
    pre = Preprocessing(input_size=(3, 64, 48), resize=72, crop_mode=crop_mode)
    transform = build_transform(pre)
    for image in images[:3]:
        from_pil = transform(image)
        from_tensor = transform(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
        assert from_tensor.shape == from_pil.shape == (3, 64, 48)
        assert (from_tensor - from_pil).abs().mean() < 0.05  # the same picture, not a shifted one


def test_sizes_follow_the_libraries_rounding():
    pre = Preprocessing(input_size=(3, 224, 224), resize=256)
    assert pixels.resized_size(480, 640, pre) == (256, 341)  # torchvision truncates the longer side
    assert pixels.resized_size(333, 211, Preprocessing(input_size=(3, 224, 224), resize=256,
                                                       crop_mode="border")) == (256, 162)  # timm rounds
    assert pixels.crop_or_pad(256, 341, (224, 224)) == ((0, 0, 0, 0), 16, 58)  # round half to even
    assert pixels.crop_or_pad(10, 20, (12, 12)) == ((0, 1, 0, 1), 0, 4)
