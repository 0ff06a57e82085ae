"""Resumed and re-run extractions reuse only what the same network made from the same files: a run
folder replaced behind its name, a random-weight model, a changed image, ranks with other weights."""

from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from extracthelp import photo, reference, saved_timm, tiny_model
from zoo.errors import DataError
from zoo.extract import Extractor, extract_folder, load_features

torch.set_num_threads(2)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i in range(12):
        photo(i).save(d / f"img{i}.png")
    return d


@contextlib.contextmanager
def interrupted_after(forwards: int):
    """Run the body as a job that stops (as Ctrl-C would) at its ``forwards + 1``-th batch."""
    real, calls = Extractor.forward, {"n": 0}

    def forward(self, x):
        calls["n"] += 1
        if calls["n"] > forwards:
            raise KeyboardInterrupt
        return real(self, x)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(KeyboardInterrupt):
        patch.setattr(Extractor, "forward", forward)
        yield


def want(model_dir, paths) -> np.ndarray:
    model = zoo.load(model_dir)
    return reference(model, [Image.open(p).convert("RGB") for p in paths], "pool")


def test_a_run_folder_replaced_behind_its_name_is_extracted_again(folder, tmp_path):
    run = saved_timm(tmp_path / "runs" / "pets", seed=0)
    out = tmp_path / "feats.npz"
    kw = dict(device="cpu", progress=False, num_workers=0, chunk_size=4)
    extract_folder(run, [folder], out, **kw)
    old = load_features(out)["features"]
    shutil.rmtree(run)
    saved_timm(run, seed=1)  # a new fine-tuning run written to the same folder
    s = extract_folder(run, [folder], out, **kw)
    assert s.resumed == 0 and any("other weights" in note for note in s.notes)
    got = load_features(out)
    np.testing.assert_allclose(got["features"], want(run, got["paths"]), rtol=1e-4, atol=1e-5)
    assert np.abs(got["features"] - old).max() > 1e-3  # the two networks really differ
    assert extract_folder(run, [folder], out, **kw).resumed == 12  # and now it is reused


def test_interrupted_parts_of_replaced_weights_are_not_resumed(folder, tmp_path):
    run = saved_timm(tmp_path / "run", seed=0)
    out = tmp_path / "feats.npz"
    kw = dict(device="cpu", progress=False, num_workers=0, chunk_size=4, batch_size=2)
    with interrupted_after(2):
        extract_folder(run, [folder], out, **kw)
    assert (tmp_path / "feats.npz.parts" / "chunk-000000.npz").is_file()
    shutil.rmtree(run)
    saved_timm(run, seed=1)
    s = extract_folder(run, [folder], out, **kw)
    assert s.resumed == 0 and any("interrupted run" in n and "other weights" in n for n in s.notes)
    got = load_features(out)
    np.testing.assert_allclose(got["features"], want(run, got["paths"]), rtol=1e-4, atol=1e-5)


def test_random_weight_model_never_mixes_two_networks(folder, tmp_path):
    # The same picture at positions 0 and 5: in chunk 0 and chunk 1. One network gives them one row.
    listing = tmp_path / "list.txt"
    names = [f"img{i}.png" for i in (3, 0, 1, 2, 4, 3, 5, 6)]
    listing.write_text("".join(f"photos/{n}\n" for n in names))
    out = tmp_path / "scratch.npz"
    kw = dict(device="cpu", progress=False, num_workers=0, chunk_size=4, batch_size=4)
    with interrupted_after(1):
        extract_folder("lenet.scratch", [listing], out, **kw)
    s = extract_folder("lenet.scratch", [listing], out, **kw)
    assert s.resumed == 0 and any("random weights" in n and "--seed" in n for n in s.notes)
    feats = load_features(out)["features"]
    np.testing.assert_allclose(feats[0], feats[5], rtol=1e-5, atol=1e-6)

    # Seeded, the same random network comes back, so an interrupted run resumes.
    seeded = tmp_path / "seeded.npz"
    with interrupted_after(1):
        extract_folder("lenet.scratch", [listing], seeded, seed=7, **kw)
    s = extract_folder("lenet.scratch", [listing], seeded, seed=7, **kw)
    assert s.resumed == 4 and not s.notes
    whole = extract_folder("lenet.scratch", [listing], tmp_path / "whole.npz", seed=7, **kw)
    assert whole.resumed == 0
    np.testing.assert_allclose(load_features(seeded)["features"], load_features(whole.out)["features"],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="seed"):
        extract_folder(tiny_model(), [listing], tmp_path / "x.npz", seed=1, **kw)


def test_a_changed_input_file_is_extracted_again(folder, tmp_path):
    model = tiny_model()
    out = tmp_path / "feats.npz"
    kw = dict(device="cpu", progress=False, num_workers=0, chunk_size=4, batch_size=2)
    extract_folder(model, [folder], out, **kw)
    before = load_features(out)["features"]
    changed = folder / "img5.png"
    stamp = os.stat(changed).st_mtime_ns
    photo(50).save(changed)
    os.utime(changed, ns=(stamp + 10**9, stamp + 10**9))  # an edit a second later
    s = extract_folder(model, [folder], out, **kw)
    assert s.resumed == 8 and any("changed" in n for n in s.notes)  # only the chunk holding img5
    got = load_features(out)
    np.testing.assert_allclose(got["features"], reference(model, [Image.open(p) for p in got["paths"]], "pool"),
                               rtol=1e-4, atol=1e-5)
    row = got["paths"].index(str(changed))
    assert np.abs(got["features"][row] - before[row]).max() > 1e-4
    np.testing.assert_array_equal(np.delete(got["features"], row, 0), np.delete(before, row, 0))

    # The same during an interrupted run: the written chunk holding a changed file is redone.
    with interrupted_after(2):
        extract_folder(model, [folder], tmp_path / "again.npz", **kw)
    first = folder / "img1.png"
    stamp = os.stat(first).st_mtime_ns
    photo(51).save(first)
    os.utime(first, ns=(stamp + 10**9, stamp + 10**9))
    s = extract_folder(model, [folder], tmp_path / "again.npz", **kw)
    assert s.resumed == 0 and any("changed since" in n for n in s.notes)
    again = load_features(tmp_path / "again.npz")
    np.testing.assert_allclose(again["features"], reference(model, [Image.open(p) for p in again["paths"]],
                                                            "pool"), rtol=1e-4, atol=1e-5)


def test_ranks_that_loaded_other_weights_refuse_to_merge(folder, tmp_path, monkeypatch):
    out = tmp_path / "sharded.npz"
    kw = dict(device="cpu", progress=False, num_workers=0, chunk_size=3)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    extract_folder(tiny_model(seed=1), [folder], out, **kw)
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(DataError, match="other weights than this process's"):
        extract_folder(tiny_model(seed=0), [folder], out, **kw)
    assert not out.exists()


def test_parts_of_an_older_format_start_over(folder, tmp_path):
    parts = tmp_path / "f.npz.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text('{"format": "zoo-features-parts", "version": 1, "layer": "pool"}')
    np.savez(parts / "chunk-000000.npz", features=np.zeros((4, 16), np.float32), index=np.arange(4))
    s = extract_folder(tiny_model(), [folder], tmp_path / "f.npz", device="cpu", progress=False, num_workers=0,
                       chunk_size=4)
    assert s.resumed == 0 and any("another version" in n for n in s.notes)
    assert np.abs(load_features(s.out)["features"][:4]).sum() > 0
