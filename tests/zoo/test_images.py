"""The shared image loader on the files real folders hold, each made here by the test."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.errors import ImageError
from zoo.images import (Batch, ImageDataset, Skipped, collate_skip, find_images, natural_key,
                        open_image)


def _png_with_size(path: Path, width: int, height: int) -> Path:
    """A real 1x1 PNG whose IHDR is patched to claim ``width`` x ``height`` (with a valid CRC): a
    decompression bomb's header in 70 bytes."""
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    # signature (8) + length (4) + b"IHDR" (4) -> width, height
    data[16:24] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF
    data[29:33] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def test_exif_orientation_is_applied(tmp_path):
    im = Image.new("RGB", (40, 20), (200, 10, 10))
    im.paste((10, 10, 200), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    im.save(path, "JPEG", exif=exif, quality=95)
    out = open_image(path)
    assert out.size == (20, 40)
    # The blue left half ends up on top after a clockwise turn.
    top, bottom = out.getpixel((10, 5)), out.getpixel((10, 35))
    assert top[2] > 150 and bottom[0] > 150


def test_palette_with_transparency_composites_on_white(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.putpixel((0, 0), 1)
    path = tmp_path / "icon.gif"
    im.save(path, transparency=0)
    out = open_image(path)
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 0, 0)
    assert out.getpixel((3, 3)) == (255, 255, 255)  # transparent black -> white, not black


def test_png_palette_with_transparency(tmp_path):
    im = Image.new("P", (4, 4), 0)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    im.putpixel((1, 1), 1)
    path = tmp_path / "p.png"
    im.save(path, transparency=bytes([0, 255]))
    out = open_image(path)
    assert out.getpixel((1, 1)) == (0, 255, 0)
    assert out.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("mode, pixel, expected", [
    ("RGBA", (255, 0, 0, 128), (255, 127, 127)),
    ("RGBA", (0, 0, 0, 0), (255, 255, 255)),
    ("LA", (0, 0), (255, 255, 255)),
    ("LA", (0, 255), (0, 0, 0)),
])
def test_alpha_is_composited_on_white(tmp_path, mode, pixel, expected):
    path = tmp_path / f"{mode}.png"
    Image.new(mode, (3, 3), pixel).save(path)
    got = open_image(path).getpixel((1, 1))
    assert all(abs(g - e) <= 1 for g, e in zip(got, expected))


def test_la_to_grey_mode(tmp_path):
    path = tmp_path / "la.png"
    Image.new("LA", (3, 3), (0, 0)).save(path)
    out = open_image(path, mode="L")
    assert out.mode == "L" and out.getpixel((0, 0)) == 255


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (255, 0, 0, 0)).save(path, "JPEG", quality=95)  # pure cyan
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"
    r, g, b = open_image(path).getpixel((8, 8))
    assert r < 30 and g > 220 and b > 220


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 32896, 65535, 1000]], dtype=np.uint16)
    path = tmp_path / "scan.png"
    Image.fromarray(arr).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    out = open_image(path, mode="L")
    assert list(np.asarray(out)[0]) == [0, 128, 255, 4]
    rgb = np.asarray(open_image(path))
    assert rgb.shape == (1, 4, 3) and rgb[0, 2].tolist() == [255, 255, 255]


def test_32bit_and_float_tiff(tmp_path):
    arr = np.array([[0, 65535]], dtype=np.int32)
    Image.fromarray(arr, mode="I").save(tmp_path / "i.tif")
    assert list(np.asarray(open_image(tmp_path / "i.tif", mode="L"))[0]) == [0, 255]
    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    assert list(np.asarray(open_image(tmp_path / "f.tif", mode="L"))[0]) == [0, 128, 255]


def test_grayscale_and_1bit(tmp_path):
    Image.new("L", (5, 5), 77).save(tmp_path / "g.png")
    rgb = open_image(tmp_path / "g.png")
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (77, 77, 77)
    assert open_image(tmp_path / "g.png", mode="L").getpixel((0, 0)) == 77
    Image.new("1", (5, 5), 1).save(tmp_path / "b.png")
    assert open_image(tmp_path / "b.png").getpixel((0, 0)) == (255, 255, 255)


def test_truncated_jpeg_is_reported_with_its_name(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "cut.jpg"
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="cut.jpg.*truncated") as info:
        open_image(path)
    assert info.value.path == str(path)


def test_random_bytes_named_jpg(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_bytes(np.random.default_rng(1).bytes(500))
    with pytest.raises(ImageError, match="fake.jpg.*not an image"):
        open_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "nope.png")


def test_unsupported_format_is_not_opened(tmp_path):
    path = tmp_path / "x.ico"
    Image.new("RGB", (16, 16)).save(path, "ICO")
    with pytest.raises(ImageError, match="not an image the zoo opens"):
        open_image(path)


@pytest.mark.parametrize("width, height", [(8000, 8000), (100_000, 100_000)])
def test_decompression_bomb_refused_without_decoding(tmp_path, width, height):
    # 64 MP passes Pillow's limit but not ours; 10 gigapixels trips Pillow's own error at open.
    path = _png_with_size(tmp_path / "bomb.png", width, height)
    tracemalloc.start()
    try:
        with pytest.raises(ImageError, match="bomb.png.*(over the limit|decompression bomb)"):
            open_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # nothing near width*height bytes was allocated


def test_pixel_limit_can_be_lowered(tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGB", (100, 100)).save(path)
    with pytest.raises(ImageError, match="over the limit"):
        open_image(path, max_pixels=5000)
    assert open_image(path, max_pixels=None).size == (100, 100)


def test_sources_bytes_filelike_pil_numpy(tmp_path):
    im = Image.new("RGB", (6, 4), (10, 20, 30))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    assert open_image(buf.getvalue()).getpixel((0, 0)) == (10, 20, 30)
    buf.seek(0)
    assert open_image(buf).size == (6, 4)
    assert open_image(im.convert("RGBA")).mode == "RGB"
    arr = np.zeros((4, 6, 3), dtype=np.uint8)
    arr[..., 0] = 255
    assert open_image(arr).getpixel((0, 0)) == (255, 0, 0)
    assert open_image(arr.astype(np.float32) / 255).getpixel((0, 0)) == (255, 0, 0)
    assert open_image(np.full((4, 6), 0.5)).getpixel((0, 0)) == (128, 128, 128)
    with pytest.raises(ImageError, match="HxWxC"):
        open_image(np.zeros((3, 4, 6), dtype=np.uint8))
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        open_image(np.full((4, 6, 3), 200.0))


def test_jpeg_draft_keeps_size_at_least_requested(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (1200, 900), (50, 100, 150)).save(path)
    out = open_image(path, draft=256)
    assert min(out.size) >= 256 and out.size[0] < 1200


def test_find_images_natural_order_and_ignores_non_images(tmp_path):
    for name in ["img10.jpg", "img2.jpg", "IMG1.PNG", "sub/a3.jpg", "sub/a20.webp"]:
        path = tmp_path / name
        path.parent.mkdir(exist_ok=True)
        Image.new("RGB", (4, 4)).save(path)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "fake.jpg").write_bytes(b"hello world, not a jpeg")
    rejected: list = []
    found = find_images(tmp_path, rejected=rejected)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "IMG1.PNG", "img2.jpg", "img10.jpg", "sub/a3.jpg", "sub/a20.webp"]
    assert [p.name for p, _ in rejected] == ["fake.jpg"]
    assert "not an image" in rejected[0][1]
    assert [p.name for p in find_images(tmp_path, recursive=False)] == ["IMG1.PNG", "img2.jpg", "img10.jpg"]
    with pytest.raises(ImageError, match="not a folder"):
        find_images(tmp_path / "img2.jpg")


def test_natural_key():
    assert sorted(["a10", "a9", "A1", "b"], key=natural_key) == ["A1", "a9", "a10", "b"]


def test_one_natural_order_for_file_and_model_names():
    from zoo.registry.catalog import natural_key as catalogue_key

    assert natural_key is catalogue_key  # one rule: the catalogue's, which zoo.images re-exports
    files = ["img10.jpg", "IMG1.PNG", "img2.jpg", "Img2.jpg", "b.jpg", "A.jpg", "img7.jpg", "img007.jpg", "x\u00b2.jpg",
             "1.jpg", "scan\u0663.jpg"]
    assert sorted(files, key=natural_key) == [
        "1.jpg", "A.jpg", "b.jpg", "IMG1.PNG", "Img2.jpg", "img2.jpg", "img007.jpg", "img7.jpg", "img10.jpg",
        "scan\u0663.jpg", "x\u00b2.jpg"]  # case ignored, ties by exact text; a superscript is not a number
    models = ["resnet101", "resnet18", "ResNet50", "resnet2", "vit_b_16", "vit_b_8", "resnet18.tv_in1k"]
    assert sorted(models, key=natural_key) == [
        "resnet2", "resnet18", "resnet18.tv_in1k", "ResNet50", "resnet101", "vit_b_8", "vit_b_16"]


def test_dataset_reports_failures_through_worker_batches(tmp_path):
    import torch
    from torch.utils.data import DataLoader

    paths = []
    for i in range(10):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (8, 8), (i * 20, 0, 0)).save(path)
        paths.append(path)
    paths[3].write_bytes(b"garbage")
    paths[7] = tmp_path / "missing.png"

    def transform(im):
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)

    ds = ImageDataset(paths, transform)
    assert isinstance(ds[3], Skipped) and ds.failures[0][0].endswith("3.png")
    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_skip)
    seen, failures = [], []
    for batch in loader:
        assert isinstance(batch, Batch)
        x, idx = batch
        seen += idx.tolist()
        failures += batch.failures
        assert x.shape[1:] == (3, 8, 8)
    assert seen == [0, 1, 2, 4, 5, 6, 8, 9]  # input order kept
    assert [(f.index, Path(f.path).name) for f in failures] == [(3, "3.png"), (7, "missing.png")]
    assert "no such file" in failures[1].reason

    labelled = ImageDataset(paths[:2], transform, labels=["cat", "dog"])
    assert labelled[1][1] == "dog"
    assert collate_skip([ds[3]]) == (None, None)
