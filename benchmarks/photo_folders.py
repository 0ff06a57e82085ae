"""Image folders for the fine-tuning benchmarks, made from real data sets (imported by
``finetune_defaults.py`` and ``finetune_fastai.py``; not a benchmark itself).

* ``fashion_photos``: Fashion-MNIST classes as RGB "photos": each 28 px garment upscaled (bicubic) to
  a random 100-200 px per side (so also a random aspect ratio), drawn in a random light colour on a
  random dark background, saved as JPEG. Colour and size carry no class information, so a model must
  read the shape, as in a folder of product photos.
* ``mnist_digits``: the real MNIST digits of ``../shared/real/datasets/mnist_5k.csv.gz`` (500 per class)
  as 28 px greyscale PNGs.

Each folder holds ``train/<class>/`` (``per_class`` images, drawn with ``seed``; ``zoo.finetune.fit``
draws its validation part from them) and ``test/<class>/`` (a fixed draw, disjoint, the same for every
seed): the test images are read only for the reported figures.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
from PIL import Image

FMNIST = Path("/usr/share/datasets/fashion-mnist")
FMNIST_NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
# The five classes lenet.fmnist5 never saw (5-9) and coat (4), which it saw and which looks like a
# shirt: six classes, as in the folder of the issue that asked for these benchmarks.
PHOTO_CLASSES = (4, 5, 6, 7, 8, 9)
REAL = Path(os.environ.get("ZOO_REAL", Path(__file__).resolve().parents[2] / "shared" / "real"))
MNIST_5K = REAL / "datasets" / "mnist_5k.csv.gz"
TEST_SEED = 12345  # the test draw: the same images for every seed


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def _photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A 28 px grey garment as a colour picture of 100-200 px a side: the garment in a random light
    colour on a random dark background, with a little sensor noise."""
    w, h = (int(v) for v in rng.integers(100, 201, size=2))
    alpha = np.asarray(Image.fromarray(digit).resize((w, h), Image.BICUBIC), dtype=np.float32)[..., None] / 255
    fg, bg = rng.integers(130, 256, size=3).astype(np.float32), rng.integers(0, 90, size=3).astype(np.float32)
    pixels = bg * (1 - alpha) + fg * alpha + rng.normal(0, 6, size=(h, w, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def fashion_photos(root: Path, *, per_class: int, test_per_class: int, seed: int,
                   classes: tuple[int, ...] = PHOTO_CLASSES) -> Path:
    """``root/train`` (``per_class`` from Fashion-MNIST's TRAIN split, drawn with ``seed``) and
    ``root/test`` (``test_per_class`` from its TEST split, fixed) as JPEG photos."""
    if (root / "train").is_dir():
        return root
    images, labels = _read_idx(FMNIST / "train-images-idx3-ubyte.gz"), _read_idx(FMNIST / "train-labels-idx1-ubyte.gz")
    t_images, t_labels = _read_idx(FMNIST / "t10k-images-idx3-ubyte.gz"), _read_idx(FMNIST / "t10k-labels-idx1-ubyte.gz")
    rng, test_rng = np.random.default_rng(seed), np.random.default_rng(TEST_SEED)
    for cls in classes:
        for part, source, lab, draw, n in (("train", images, labels, rng, per_class),
                                          ("test", t_images, t_labels, test_rng, test_per_class)):
            folder = root / part / FMNIST_NAMES[cls]
            folder.mkdir(parents=True, exist_ok=True)
            for i in draw.permutation(np.flatnonzero(lab == cls))[:n]:
                _photo(source[i], draw).save(folder / f"{i}.jpg", quality=90)
    return root


def mnist_digits(root: Path, *, per_class: int, test_per_class: int, seed: int) -> Path:
    """``root/train`` and ``root/test`` from the 5,000 real MNIST digits (500 per class): the test
    images are a fixed draw, the training images are drawn with ``seed`` from the rest."""
    if (root / "train").is_dir():
        return root
    if not MNIST_5K.is_file():
        raise FileNotFoundError(f"{MNIST_5K} is missing (set ZOO_REAL to the folder of real files)")
    table = np.loadtxt(MNIST_5K, delimiter=",", dtype=np.uint8)
    pixels, labels = table[:, :784].reshape(-1, 28, 28), table[:, 784]
    rng, test_rng = np.random.default_rng(seed), np.random.default_rng(TEST_SEED)
    for cls in range(10):
        idx = test_rng.permutation(np.flatnonzero(labels == cls))
        test, rest = idx[:test_per_class], idx[test_per_class:]
        for part, chosen in (("test", test), ("train", rng.permutation(rest)[:per_class])):
            folder = root / part / str(cls)
            folder.mkdir(parents=True, exist_ok=True)
            for i in chosen:
                Image.fromarray(pixels[i], "L").save(folder / f"{i}.png")
    return root
