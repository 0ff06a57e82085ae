"""``zoo.runtime``: an exported model in an application, without torch.

The runtime's predictions equal ``zoo predict``'s on the same images, its features equal
``zoo.Extractor``'s to 1e-4, it takes the Extractor's inputs, and importing it loads no torch,
torchvision or timm (checked in a fresh interpreter that also runs a prediction).
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from clirun import zoo_cli  # noqa: E402
from zoo.errors import ExportError, ImageError
from zoo.runtime import Classifier, Features

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from ftdata import make_folder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exportdata import photos, shrink  # noqa: E402

for _module in ("onnx", "onnxscript", "onnxruntime"):
    pytest.importorskip(_module, reason="the export extra is not installed: pip install 'zoo[export]'")


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)




@pytest.fixture(scope="module")
def resnet_exports(tmp_path_factory):
    """A small random-weight ResNet-18 and its exports: the pooled features and layer3."""
    torch.manual_seed(0)
    model = shrink(zoo.load("resnet18", pretrained=False), 96)
    root = tmp_path_factory.mktemp("resnet")
    for layer in ("pool", "layer3"):
        zoo.export(model, root / layer, layer=layer)
    zoo.export(model, root / "logits")
    return model, root


def test_run_predictions_equal_zoo_predict(tmp_path, capsys):
    data = make_folder(tmp_path / "data", {"sandal": 8, "sneaker": 8, "boot": 8}, size=28)
    run, out = tmp_path / "run", tmp_path / "export"
    code, _, err = zoo_cli(capsys, "finetune", "lenet.fmnist5", data, "--out", run, "--cut", "features.pool1",
                           "--head", "mlp", "--hidden", "32", "--epochs", "2", "--device", "cpu", "-q")
    assert code == 0, err
    code, text, err = zoo_cli(capsys, "export", run, "--out", out)
    assert code == 0, err
    assert "parity (onnxruntime" in text and ": ok" in text
    images = photos(tmp_path / "photos", 4) + sorted((data / "boot").glob("*.png"))[:2]
    broken = tmp_path / "photos" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 cut short")
    code, text, _ = zoo_cli(capsys, "predict", run, *images, broken, "--top-k", "3", "--json")
    assert code == 0  # the broken file is listed with its error, never fatal while other images classify
    expected = [json.loads(line) for line in text.splitlines()]
    got = Classifier(out).predict([*images, broken], top_k=3)
    assert [r["image"] for r in got] == [r["image"] for r in expected] == [str(p) for p in [*images, broken]]
    for mine, theirs in zip(got[:-1], expected[:-1], strict=True):
        assert [t["label"] for t in mine["top"]] == [t["label"] for t in theirs["top"]]
        assert np.allclose([t["probability"] for t in mine["top"]], [t["probability"] for t in theirs["top"]],
                           atol=1e-5)
    assert "broken.jpg" in got[-1]["error"] and "error" in expected[-1]


def test_features_equal_the_extractor(tmp_path, resnet_exports):
    model, root = resnet_exports
    images = photos(tmp_path, 5)
    for layer in ("pool", "layer3"):
        mine = Features(root / layer)(images)
        theirs = zoo.Extractor(model, layer=layer, backend="torch", num_workers=0)(images)
        assert mine.shape == theirs.shape
        assert np.abs(mine - theirs).max() <= 1e-4 * np.abs(theirs).max()


def test_inputs_like_the_extractor(tmp_path, resnet_exports):
    _model, root = resnet_exports
    paths = photos(tmp_path / "photos", 3)
    features = Features(root / "pool", batch_size=2)
    reference = features(paths)
    pil = [Image.open(p) for p in paths]
    arrays = [np.asarray(im.convert("RGB")) for im in pil]
    assert np.allclose(features(tmp_path / "photos"), reference)  # a folder, naturally sorted
    assert np.allclose(features(pil), reference)
    assert np.allclose(features(arrays), reference)
    assert np.allclose(features([p.read_bytes() for p in paths]), reference)
    assert np.allclose(features([str(paths[0]), pil[1], io.BytesIO(paths[2].read_bytes())]), reference)
    same = np.stack([arrays[0], arrays[0]])  # N x H x W x C
    assert np.allclose(features(same), reference[[0, 0]])


def test_unreadable_images_raise_or_are_skipped(tmp_path, resnet_exports):
    _model, root = resnet_exports
    paths = photos(tmp_path, 2)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n nothing more")
    with pytest.raises(ImageError, match="bad.png"):
        Features(root / "pool")([paths[0], bad, paths[1]])
    skipping = Features(root / "pool", on_error="skip")
    rows = skipping([paths[0], bad, paths[1]])
    assert rows.shape[0] == 2 and skipping.kept == [0, 2]
    assert skipping.failures[0][0] == str(bad) and "bad.png" in skipping.failures[0][1]
    assert np.allclose(rows, Features(root / "pool")(paths))


def test_wrong_folders_are_one_line_errors(tmp_path, resnet_exports):
    _model, root = resnet_exports
    with pytest.raises(ExportError, match="no export folder at"):
        Classifier(tmp_path / "nothing")
    with pytest.raises(ExportError, match="is a feature export"):
        Classifier(root / "pool")
    zoo.export("lenet.fmnist5", tmp_path / "ts", format="torchscript")
    with pytest.raises(ExportError, match="TorchScript export"):
        Features(tmp_path / "ts")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.onnx").write_bytes(b"")
    with pytest.raises(ExportError, match="no preprocessing.json") as err:
        Classifier(tmp_path / "half")
    assert "\n" not in str(err.value)


def test_runtime_imports_no_torch(tmp_path, resnet_exports):
    _model, root = resnet_exports
    image = photos(tmp_path, 1)[0]
    code = (
        "import sys\n"
        "from zoo.runtime import Classifier, Features\n"
        f"top = Classifier({str(root / 'logits')!r}).predict([{str(image)!r}], top_k=2)[0]['top']\n"
        "assert len(top) == 2, top\n"
        f"assert Features({str(root / 'layer3')!r})([{str(image)!r}]).shape == (1, 256)\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'timm'))\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def _awkward_images(folder: Path) -> list[Path]:
    """Files a phone, a scanner or an old editor writes: EXIF-rotated JPEG, palette PNG with
    transparency, CMYK JPEG, 16-bit greyscale PNG."""
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (60, 90, 3), dtype=np.uint8)
    paths = [folder / "rotated.jpg", folder / "palette.png", folder / "cmyk.jpg", folder / "grey16.png"]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.fromarray(rgb).save(paths[0], "JPEG", exif=exif, quality=95)
    palette = Image.fromarray(rgb).quantize(16)
    palette.info["transparency"] = 0
    palette.save(paths[1], transparency=0)
    Image.fromarray(rgb).convert("CMYK").save(paths[2], "JPEG", quality=95)
    Image.fromarray(rng.integers(0, 65536, (50, 70), dtype=np.uint16)).save(paths[3])
    return paths


def test_awkward_files_and_bombs_go_through_the_one_loader(tmp_path, resnet_exports):
    model, root = resnet_exports
    paths = _awkward_images(tmp_path)
    mine = Features(root / "pool")(paths)
    theirs = zoo.Extractor(model, layer="pool", backend="torch", num_workers=0)(paths)
    assert np.abs(mine - theirs).max() <= 1e-4 * np.abs(theirs).max()
    rotated = Features(root / "pool").preprocess([paths[0]])[0]
    upright = np.asarray(Image.open(paths[0]).rotate(-90, expand=True))  # an array carries no EXIF
    upright = Features(root / "pool").preprocess([upright])[0]
    assert np.allclose(rotated, upright)  # the EXIF orientation was applied
    # A 64-megapixel header in a 70-byte file: refused from the header, like the Extractor does.
    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", 8000, 8000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="bomb.png.*over the limit"):
        Features(root / "pool")([bomb])
    assert "over the limit" in Classifier(root / "logits").predict([bomb])[0]["error"]
