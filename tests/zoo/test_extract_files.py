"""What real folders hold, through the Extractor and the features file: corrupt files, FIFOs, odd
file names, and indexes that do not match their queries. Every file is made here by the test."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from extracthelp import photo, reference, tiny_model
from zoo.errors import DataError, ImageError
from zoo.extract import Extractor, escape_path, extract_folder, load_features, similar, unescape_path
from zoo.images import find_images, open_image

torch.set_num_threads(2)


@contextlib.contextmanager
def no_hang(seconds: int = 60):
    """Turn a blocked call (opening a FIFO waits for a writer forever) into a test failure."""
    def fail(*_):
        raise TimeoutError(f"still blocked after {seconds} s: something opened a FIFO")

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def messy(tmp_path):
    """Six readable photos (PNG and JPEG, one in a sub-folder) among a truncated JPEG, random bytes
    named .png, a text file named .jpg and a FIFO named .jpg."""
    d = tmp_path / "messy"
    (d / "sub").mkdir(parents=True)
    good = [d / "a1.png", d / "a2.jpg", d / "a10.png", d / "B3.png", d / "c4.jpg", d / "sub" / "d5.png"]
    for i, path in enumerate(good):
        photo(i, (40 + 3 * i, 36)).save(path, quality=95)
    cut = d / "cut.jpg"
    photo(9, (64, 64)).save(cut, quality=95)
    cut.write_bytes(cut.read_bytes()[:400])
    (d / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(300))
    (d / "letter.jpg").write_text("Dear reader, this is not a picture.")
    os.mkfifo(d / "pipe.jpg")
    return d, good


def test_extract_on_a_folder_with_corrupt_files_gives_rows_with_their_paths(messy):
    folder, good = messy
    model = tiny_model()
    ex = Extractor(model, device="cpu", batch_size=4, num_workers=0)
    with no_hang():
        found = ex.extract(folder)
    assert found.paths == [str(p) for p in good]  # readable ones only, natural order (case ignored)
    assert len(found) == 6 and found.features.shape == (6, 16)
    want = reference(model, [Image.open(p).convert("RGB") for p in good], "pool")
    np.testing.assert_allclose(found.features, want, rtol=1e-4, atol=1e-5)
    reasons = {os.path.basename(p): r for p, r in found.failed}
    assert set(reasons) == {"cut.jpg", "noise.png", "letter.jpg", "pipe.jpg"}
    assert "truncated" in reasons["cut.jpg"] and "FIFO" in reasons["pipe.jpg"]
    assert "not an image" in reasons["letter.jpg"]
    # The plain call keeps its contract (one row per image given): it stops, and says what to use.
    with no_hang(), pytest.raises(ImageError, match=r"cut\.jpg.*Extractor\.extract"):
        ex(folder)


def test_extract_on_a_list_names_in_memory_rows_and_missing_files(tmp_path):
    model = tiny_model()
    path = tmp_path / "one.png"
    photo(1).save(path)
    im = photo(2)
    found = Extractor(model, device="cpu", num_workers=0, output="torch").extract(
        [path, tmp_path / "gone.jpg", im, b"not an image"])
    assert found.paths == [str(path), "<Image 2>"]
    assert isinstance(found.features, torch.Tensor)
    np.testing.assert_allclose(found.features.numpy(), reference(model, [Image.open(path), im], "pool"),
                               rtol=1e-4, atol=1e-5)
    assert [(p, "no such file" in r or "not an image" in r) for p, r in found.failed] == [
        (str(tmp_path / "gone.jpg"), True), ("<bytes 3>", True)]
    with pytest.raises(ImageError) as info:  # a list the caller made: the plain one-line message
        Extractor(model, device="cpu")([path, tmp_path / "gone.jpg"])
    assert str(info.value) == f"{tmp_path / 'gone.jpg'}: no such file."
    with pytest.raises(DataError, match="nodir: no such file or folder"):
        Extractor(model, device="cpu").extract(tmp_path / "nodir")
    multi = Extractor(model, layer=["stage.0", "pool"], device="cpu").extract([path, tmp_path / "gone.jpg"])
    assert multi.features["stage.0"].shape == (1, 16) and multi.paths == [str(path)]


def test_fifos_and_devices_are_refused_before_opening(tmp_path):
    fifo = tmp_path / "stream.png"
    os.mkfifo(fifo)
    good = tmp_path / "ok.png"
    photo(0).save(good)
    with no_hang():
        with pytest.raises(ImageError, match="stream.png: a FIFO"):
            open_image(fifo)
        with pytest.raises(ImageError, match="a character device"):
            open_image("/dev/zero")
        rejected: list = []
        assert find_images(tmp_path, rejected=rejected) == [good]
        assert [(p.name, "FIFO" in r) for p, r in rejected] == [("stream.png", True)]
        with pytest.raises(DataError, match="not a regular file"):
            extract_folder(tiny_model(), [fifo], tmp_path / "f.npz", device="cpu", progress=False)
        found = Extractor(tiny_model(), device="cpu").extract([fifo, good])
    assert found.paths == [str(good)] and found.failed[0][0] == str(fifo)


@pytest.mark.parametrize("name", ["new\nline", "tab\there", "back\\slash", "bell\x07", "sep\u2028arator",
                                  "caf\u00e9 \u65e5\u672c \U0001f600", "quote\"comma,", "bad\udcffbyte"])
def test_escape_path_keeps_one_line_and_round_trips(name):
    escaped = escape_path(name)
    assert escaped.isprintable()  # no newline, tab, control or separator left
    assert escaped.encode("utf-8")  # writable as UTF-8: no lone surrogates left
    assert unescape_path(escaped) == name
    if name.startswith("caf"):
        assert escaped == name  # ordinary letters of any script stay readable


def test_odd_file_names_stay_one_record_per_line(tmp_path):
    folder = tmp_path / "odd"
    folder.mkdir()
    names = ["new\nline.png", "tab\there.png", os.fsdecode(b"latin\xe9.png"), "plain.png"]
    for i, name in enumerate(names):
        photo(i).save(os.path.join(folder, name), format="PNG")
    (folder / "broken\nfile.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = tmp_path / "odd.npz"
    s = extract_folder(tiny_model(), [folder], out, device="cpu", progress=False, num_workers=0)
    assert (s.extracted, s.failed) == (4, 1)
    exact = load_features(out)["paths"]
    lines = (tmp_path / "odd.csv").read_text("utf-8").splitlines()
    assert len(lines) == 1 + 4  # header + one line per row, whatever the names hold
    rows = list(csv.DictReader(lines))
    assert [unescape_path(r["path"]) for r in rows] == exact
    assert {os.path.basename(p) for p in exact} == set(names)
    failed_lines = (tmp_path / "odd.failed.csv").read_text("utf-8").splitlines()
    assert len(failed_lines) == 2 and unescape_path(next(csv.DictReader(failed_lines))["path"]).endswith(
        "broken\nfile.png")


@pytest.fixture
def index(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(6):
        photo(i).save(folder / f"img{i}.png")
    out = tmp_path / "index.npz"
    extract_folder(tiny_model(), [folder], out, device="cpu", progress=False, num_workers=0)
    return out, folder


def test_similar_refuses_an_index_of_another_network_layer_or_width(index):
    out, folder = index
    query = folder / "img2.png"
    assert similar(out, query, extractor=Extractor(tiny_model(), device="cpu"))[0][0][0].endswith("img2.png")
    with pytest.raises(DataError, match="other weights"):  # same architecture and width, other weights
        similar(out, query, extractor=Extractor(tiny_model(seed=1), device="cpu"))
    with pytest.raises(DataError, match="holds layer pool"):  # stage.0 is 16 wide too
        similar(out, query, extractor=Extractor(tiny_model(), layer="stage.0", device="cpu"))
    data = load_features(out)
    data.update(weights="", preprocessing="", features=data["features"][:, :8])
    with pytest.raises(DataError, match="16 values but the index has 8"):
        similar(data, query, extractor=Extractor(tiny_model(), device="cpu"))


def test_damaged_or_tampered_index_is_a_one_line_error(index, tmp_path):
    out, _ = index
    raw = out.read_bytes()
    cases = {"truncated.npz": raw[: len(raw) // 2], "garbage.npz": b"PK\x03\x04" + bytes(200),
             "text.npz": b"hello"}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError, match=name) as info:
            load_features(tmp_path / name)
        assert "\n" not in str(info.value)
    with np.load(out) as data:
        arrays = dict(data)
    for key, value in {"pool": np.array("median"), "features": np.zeros((3, 4), np.float32),
                       "paths": np.array([1, 2])}.items():
        bad = tmp_path / f"bad-{key}.npz"
        np.savez(bad, **{**arrays, key: value})
        with pytest.raises(DataError, match="damaged|not a zoo features file"):
            load_features(bad)
    with zipfile.ZipFile(tmp_path / "empty.npz", "w"):
        pass
    with pytest.raises(DataError, match="not a zoo features file"):
        load_features(tmp_path / "empty.npz")
