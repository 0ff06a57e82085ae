"""From-scratch training on real Fashion-MNIST images: the data loaders, `zoo train` end to end (run folder
loads with zoo.load and predicts the same), resume, image folders, the embedded default and the demo
folder. A small slice of the real data set is written as IDX files so each run takes seconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.cli.main import main as zoo_main
from zoo.errors import DataError
from zoo.finetune import datasets
from zoo.finetune.datasets import TensorImageDataset, load_dataset, read_idx
from zoo.finetune.scratch import train_scratch

from ftdata import fmnist_subset, write_idx  # noqa: E402

torch.set_num_threads(1)  # the suite shares 2 cores: oversubscribed OpenMP threads crawl

try:
    FMNIST = datasets.find_fashion_mnist()
except DataError:
    FMNIST = None
needs_fmnist = pytest.mark.skipif(FMNIST is None, reason="Fashion-MNIST files absent "
                                  "(apt-get install dataset-fashion-mnist)")


@pytest.fixture(scope="module")
def small_root(tmp_path_factory) -> Path:
    """The first 1,200 training and 400 test images of the real Fashion-MNIST, as IDX files."""
    return fmnist_subset(tmp_path_factory.mktemp("fmnist_root"), 1200, 400)


def test_idx_round_trip_and_bad_magic(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), arr)
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "bad")


def test_class_subset_relabels_and_batches_normalise(small_root):
    full = load_dataset("fashion-mnist", "train", root=small_root)
    sub = load_dataset("fashion-mnist", "train", root=small_root, classes="5,9,7")
    assert sub.classes == ("Sandal", "Ankle boot", "Sneaker")
    assert set(sub.labels.tolist()) == {0, 1, 2}
    assert len(sub) == int(torch.isin(full.labels, torch.tensor([5, 9, 7])).sum())
    x, y = full.get_batch(torch.arange(len(full)))
    assert x.shape == (1200, 1, 28, 28) and x.dtype == torch.float32
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1  # the data set's own mean/std
    with pytest.raises(DataError, match="at least two distinct"):
        load_dataset("fashion-mnist", "train", root=small_root, classes="3")


def test_crop_augmentation_shifts_without_changing_content():
    img = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    img[0, 0, 3, 4] = 255
    ds = TensorImageDataset(img.repeat(64, 1, 1, 1), torch.zeros(64), ["a"], mean=[0.0], std=[1.0],
                            augment="crop", pad=2)
    torch.manual_seed(0)
    x, _ = ds.get_batch(torch.arange(64))
    positions = {tuple(torch.nonzero(x[i, 0] == 1.0)[0].tolist()) for i in range(64)}
    assert len(positions) > 5  # several different shifts
    assert all(abs(r - 3) <= 2 and abs(c - 4) <= 2 for r, c in positions)
    assert torch.all((x == 0) | (x == 1.0))


def test_random_erasing_blanks_one_rectangle_in_about_half_the_images():
    ds = TensorImageDataset(torch.full((400, 1, 28, 28), 255, dtype=torch.uint8), torch.zeros(400), ["a"],
                            mean=[0.0], std=[1.0], augment="crop_flip_erase", pad=0)
    torch.manual_seed(0)
    x, _ = ds.get_batch(torch.arange(400))
    erased = (x == 0).flatten(1).sum(1)
    assert 0.35 < float((erased > 0).float().mean()) < 0.65
    for i in torch.nonzero(erased).flatten()[:20]:
        rows, cols = torch.nonzero(x[i, 0] == 0, as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert int(box) == int(erased[i])  # one solid rectangle
        assert 0.02 * 784 * 0.5 <= int(erased[i]) <= 0.4 * 784 * 1.2


def test_missing_dataset_offline_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_OFFLINE", "1")
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        load_dataset("cifar10", "train", root=tmp_path)
    with pytest.raises(DataError, match=r"MNIST[/\\]raw"):
        load_dataset("mnist", "test", root=tmp_path)
    with pytest.raises(DataError, match="neither a built-in"):
        load_dataset(str(tmp_path / "nope"), "train")


def test_zoo_train_writes_a_run_that_loads_and_resumes(small_root, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "lenet", "--data", "fashion-mnist", "--data-root", str(small_root), "--classes", "0,1,2,3,4",
            "--epochs", "2", "--batch-size", "32", "--device", "cpu", "--out", str(out), "--json"]
    zoo_main(args)
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and summary["test_accuracy"] > 0.5  # 5 classes: chance is 0.2
    assert summary["images_per_s"] > 0
    record = json.loads((out / "config.json").read_text())  # a built-in data set keeps its recipe
    assert "chosen" not in record and record["config"]["lr"] == 3e-3 and record["config"]["augment"] == "flip"
    model = zoo.load(out)
    assert model.labels == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
    test = load_dataset("fashion-mnist", "test", root=small_root, classes="0,1,2,3,4")
    x, y = test.get_batch(torch.arange(len(test)))
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(summary["test_accuracy"], abs=1e-6)
    # The model's own transform (from the run's preprocessing) gives the same input as the data set.
    raw = Image.fromarray(test.images[0, 0].numpy(), mode="L")
    torch.testing.assert_close(model.transforms(raw), x[0], atol=1e-5, rtol=0)
    # Resume: two more epochs continue the count.
    zoo_main([*args[:args.index("--epochs")], "--epochs", "3", *args[args.index("--epochs") + 2:], "--resume"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]


def test_train_scratch_on_an_image_folder(small_root, tmp_path):
    ds = load_dataset("fashion-mnist", "train", root=small_root, classes="1,8")
    for i in range(60):
        folder = tmp_path / "photos" / ds.classes[int(ds.labels[i])].lower()
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(ds.images[i, 0].numpy(), mode="L").resize((40, 40)).convert("RGB").save(folder / f"{i}.png")
    run = train_scratch("softmax", tmp_path / "photos", out=tmp_path / "run", epochs=3, batch_size=8, seed=1,
                        device="cpu", progress=False)
    # The images' own size and colour (grey pictures saved as RGB files), not the .scratch entry's 28 px.
    assert run.model.input_size == (1, 40, 40) and run.record["data"]["input"]["size"] == [1, 40, 40]
    assert run.summary["val"]["accuracy"] >= 0.8  # trousers vs bags
    assert zoo.load(tmp_path / "run").labels == ("bag", "trouser")


def test_unknown_arch_names_the_builders(small_root, tmp_path):
    with pytest.raises(zoo.RegistryError, match="lenet"):
        train_scratch("lenett", "fashion-mnist", out=None, data_root=small_root, progress=False)


EMBEDDED = Path(zoo.__file__).parent / "assets" / "lenet_fmnist5.safetensors"


@needs_fmnist
@pytest.mark.skipif(not EMBEDDED.is_file(), reason="the embedded model has not been made yet (tools/make_embedded.py)")
def test_embedded_default_loads_through_the_checksum_path_and_classifies():
    model = zoo.load("lenet")
    assert model.name == "lenet.fmnist5" and len(model.labels) == 5
    test = load_dataset("fashion-mnist", "test", classes="0,1,2,3,4")
    x, y = test.get_batch(torch.arange(1000))
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert acc > 0.88
    entry = zoo.get_entry("lenet.fmnist5")
    assert entry.metric("top1").value > 88.0


def test_demo_folder_holds_the_other_five_classes():
    demo = Path(zoo.__file__).parent / "assets" / "demo" / "fashion5"
    for part in ("train", "test"):  # train/ from the TRAIN split, test/ from the TEST split
        classes = sorted(p.name for p in (demo / part).iterdir() if p.is_dir())
        assert classes == ["ankle_boot", "bag", "sandal", "shirt", "sneaker"]
    files = list(demo.rglob("*.png"))
    assert len(files) == 300 and sum(f.stat().st_size for f in files) < 1_000_000
    with Image.open(files[0]) as im:
        assert im.mode == "L" and im.size == (28, 28)
