"""Data sets for from-scratch training, held in memory as uint8 tensors and batched by indexing.

Owns: ``load_dataset(name_or_dir, split, ...)`` for ``fashion-mnist`` (the Debian package's files,
found automatically), ``mnist`` and ``cifar10`` (torchvision's loaders, with their download code,
and an error that says where to put the files when offline), and a folder of class folders;
``TensorImageDataset`` (normalisation and per-batch augmentation on tensors: random shifted crop,
horizontal flip); ``dataset_stats``; for from-scratch runs on a folder, ``split_tensors`` (a split's part
in memory), ``infer_input`` (the size and colour the images suggest) and ``tensor_digest`` (a data
set's identity). Class subsets (``classes=[0, 1, 2, 3, 4]``) relabel to 0..k-1.

May import ``zoo``, ``zoo.registry`` and ``zoo.finetune.data``; never ``zoo.cli``.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo import store
from zoo.errors import DataError
from zoo.registry import env

__all__ = ["TensorImageDataset", "load_dataset", "find_fashion_mnist", "read_idx", "dataset_stats",
           "split_tensors", "infer_input", "tensor_digest", "BUILTIN", "FASHION_MNIST_CLASSES", "AUGMENTATIONS",
           "MAX_INPUT_SIDE"]

BUILTIN = ("fashion-mnist", "mnist", "cifar10")
AUGMENTATIONS = ("none", "flip", "crop", "crop_flip", "crop_flip_erase")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")
MNIST_CLASSES = tuple(str(i) for i in range(10))
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# Per-channel mean and std of each training split (pixels scaled to [0, 1]); dataset_stats recomputes them.
STATS = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "mnist": ((0.1307,), (0.3081,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}
# Images from a folder train at their own size up to this side (ImageNet's input): cost grows with the
# square of the side, and from-scratch training gains little beyond it.
MAX_INPUT_SIDE = 224
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


class TensorImageDataset(torch.utils.data.Dataset):
    """Images as one uint8 tensor (N, C, H, W) with int64 labels, normalised on the fly.

    ``get_batch(indices)`` returns a whole normalised float batch at once (the training loop's fast
    path); with ``augment`` set, it applies ``flip`` (random horizontal flip), ``crop`` (pad by
    ``pad`` pixels and take a random crop of the original size), ``crop_flip``, or ``crop_flip_erase``
    (plus random erasing, Zhong et al. 2020: half the images get a rectangle of 2-40% of their area,
    aspect 0.3-3.3, set to the mean) to that batch.

    Attributes:
        images, labels: the tensors. classes: the class names. mean, std: per-channel normalisation.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], *,
                 mean: Sequence[float], std: Sequence[float], augment: str = "none", pad: int = 2, name: str = ""):
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
        self.images, self.labels = images, labels.long()
        self.classes = tuple(classes)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.augment, self.pad, self.name = augment, pad, name

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def with_augment(self, augment: str) -> TensorImageDataset:
        """The same tensors (shared, not copied) with another augmentation."""
        return TensorImageDataset(self.images, self.labels, self.classes, mean=self.mean.flatten().tolist(),
                                  std=self.std.flatten().tolist(), augment=augment, pad=self.pad, name=self.name)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float().div_(255.0) - self.mean) / self.std

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self._normalise(self.images[index:index + 1])[0], self.labels[index]

    def get_batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[indices]
        if "crop" in self.augment and self.pad:
            x = _random_crop(x, self.pad)
        x = self._normalise(x)
        if "flip" in self.augment:
            flip = torch.rand(x.shape[0]) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if "erase" in self.augment:
            x = _random_erase(x)
        return x, self.labels[indices]


def _random_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad (zeros) by ``pad`` and take one random crop per image, as a single gather."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,))
    dx = torch.randint(0, 2 * pad + 1, (n,))
    rows = (dy.view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w)).view(n, 1, 1, w)
    return padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(c).view(1, c, 1, 1), rows, cols]


def _random_erase(x: torch.Tensor, p: float = 0.5, area: tuple[float, float] = (0.02, 0.4),
                  aspect: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """Random erasing on a normalised batch: one rectangle per chosen image set to 0 (the mean)."""
    n, _, h, w = x.shape
    target = torch.empty(n).uniform_(*area) * h * w
    log_r = torch.empty(n).uniform_(float(np.log(aspect[0])), float(np.log(aspect[1])))
    ratio = torch.exp(log_r)
    eh = torch.sqrt(target * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(target / ratio).round().clamp(1, w).long()
    y0 = (torch.rand(n) * (h - eh + 1)).long()
    x0 = (torch.rand(n) * (w - ew + 1)).long()
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    inside = ((rows >= y0.view(n, 1, 1)) & (rows < (y0 + eh).view(n, 1, 1))
              & (cols >= x0.view(n, 1, 1)) & (cols < (x0 + ew).view(n, 1, 1)))
    chosen = (torch.rand(n) < p).view(n, 1, 1)
    return x.masked_fill((inside & chosen).unsqueeze(1), 0.0)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format, optionally gzipped) into a numpy array.

    Raises:
        DataError: the file is not IDX or is truncated.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number); "
                        "re-install the data set (e.g. `apt-get install --reinstall dataset-fashion-mnist`)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    start = 4 + 4 * ndim
    count = int(np.prod(dims))
    if len(data) - start < count:
        raise DataError(f"{path} is truncated: expected {count} values, found {len(data) - start}; re-install it")
    return np.frombuffer(data, dtype=np.uint8, count=count, offset=start).reshape(dims)


def _data_root() -> Path:
    return store.datasets_root()


def find_fashion_mnist(root: str | Path | None = None) -> Path:
    """The folder holding Fashion-MNIST's four ``*-ubyte(.gz)`` files.

    Looks in ``root`` (if given), ``$ZOO_HOME/datasets/fashion-mnist``, torchvision's layout under it
    (``FashionMNIST/raw``), and the Debian package's ``/usr/share/datasets/fashion-mnist``.

    Raises:
        DataError: listing the places searched and how to fill one.
    """
    candidates = []
    if root is not None:
        candidates += [Path(root), Path(root) / "fashion-mnist", Path(root) / "FashionMNIST" / "raw"]
    base = _data_root()
    candidates += [base / "fashion-mnist", base / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST]
    for folder in candidates:
        if all(_idx_file(folder, f) is not None for pair in _IDX_FILES.values() for f in pair):
            return folder
    raise DataError("Fashion-MNIST was not found. Searched: " + ", ".join(str(c) for c in candidates)
                    + ". Install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put "
                    "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
                    f"t10k-labels-idx1-ubyte.gz in {base / 'fashion-mnist'}.")


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _fashion_mnist(split: str, root: Any) -> tuple[torch.Tensor, torch.Tensor]:
    folder = find_fashion_mnist(root)
    images_file, labels_file = (_idx_file(folder, f) for f in _IDX_FILES[split])
    images = torch.from_numpy(read_idx(images_file).copy()).unsqueeze(1)
    labels = torch.from_numpy(read_idx(labels_file).astype(np.int64))
    return images, labels


def _torchvision(name: str, split: str, root: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST / CIFAR-10 through torchvision.datasets (which keeps their download code)."""
    import torchvision.datasets as tvd

    cls = {"mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}[name]
    folder = Path(root) if root is not None else _data_root()
    train = split == "train"
    try:
        ds = cls(str(folder), train=train, download=False)
    except RuntimeError:
        if env.offline():
            raise DataError(_missing(name, folder, "offline mode (ZOO_OFFLINE) is on")) from None
        try:
            ds = cls(str(folder), train=train, download=True)
        except Exception as err:  # noqa: BLE001 - any network failure gets the same advice
            raise DataError(_missing(name, folder, f"the download failed ({type(err).__name__}: {err})")) from err
    if name == "mnist":
        return ds.data.unsqueeze(1).to(torch.uint8), ds.targets.long()
    images = torch.from_numpy(np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)))
    return images, torch.tensor(ds.targets, dtype=torch.long)


def _missing(name: str, folder: Path, why: str) -> str:
    where = {"mnist": f"{folder / 'MNIST' / 'raw'} (train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), "
                      "t10k-images-idx3-ubyte(.gz), t10k-labels-idx1-ubyte(.gz))",
             "cifar10": f"{folder} (cifar-10-python.tar.gz, or its extracted cifar-10-batches-py/ folder)"}[name]
    return (f"{name} is not on this machine and {why}. Copy the files from a connected machine to {where}, "
            "then run again.")


def _folder(path: Path, split: str, *, input_size: tuple[int, int, int] | None, seed: int,
            valid_pct: float) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """A folder of class folders (or train/ val/ test/ parts) loaded into memory at ``input_size``."""
    from zoo.finetune.data import scan

    split_info = scan(path, valid_pct=valid_pct, seed=seed)
    part = {"train": "train", "val": "val", "test": "test" if split_info.test else "val"}[split]
    images, labels = split_tensors(split_info, part, input_size or (3, 32, 32))
    return images, labels, list(split_info.classes)


def split_tensors(split: Any, part: str, input_size: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of one part of a ``zoo.finetune.data.Split`` as uint8 (N, C, H, W), resized to
    ``input_size`` (C 1: greyscale, 3: RGB), and their labels.

    Raises:
        DataError: the part holds no image.
    """
    from zoo.images import open_image

    channels, h, w = input_size
    mode = "L" if channels == 1 else "RGB"
    images, labels = [], []
    for file, label in zip(split.paths(part), split.labels(part), strict=True):
        arr = np.asarray(open_image(file, mode=mode).resize((w, h)), dtype=np.uint8)
        images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        labels.append(label)
    if not images:
        raise DataError(f"{split.root} has no images in its {part} part; add images or lower valid_pct")
    return torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.long)


def infer_input(paths: Sequence[Path], *, sample: int = 48,
                max_side: int = MAX_INPUT_SIDE) -> tuple[int, bool, str]:
    """The input a folder of images suggests: (square side, greyscale?, a sentence saying why).

    The side is the median shorter side of up to ``sample`` images spread over the list, capped at
    ``max_side`` (default ``MAX_INPUT_SIDE``); the images count as greyscale when none of those sampled
    has a pixel whose channels differ (an RGB file of a grey picture is grey).
    """
    from zoo.images import open_image

    picked = list(paths)[:: max(1, len(paths) // sample)][:sample]
    sides, colour = [], 0
    for path in picked:
        arr = np.asarray(open_image(path, mode="RGB"))
        sides.append(min(arr.shape[:2]))
        colour += int(bool((arr[..., 0] != arr[..., 1]).any() or (arr[..., 1] != arr[..., 2]).any()))
    median = int(np.median(sides)) if sides else 32
    side = max(8, min(max_side, median))
    capped = f", capped at {max_side}" if median > max_side else ""
    why = (f"median shorter side {median} px{capped}; {colour} of {len(picked)} sampled images in colour")
    return side, colour == 0, why


def tensor_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    """sha256 over an in-memory data set's pixels and labels: its identity, whatever files held it."""
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()


def dataset_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W), in [0, 1] units."""
    x = images.double().div(255.0)
    return tuple(x.mean(dim=(0, 2, 3)).tolist()), tuple(x.std(dim=(0, 2, 3)).tolist())


def _parse_classes(classes: Sequence[int] | str | None, n: int) -> list[int] | None:
    if classes is None:
        return None
    if isinstance(classes, str):
        try:
            classes = [int(c) for c in classes.replace(" ", "").split(",") if c]
        except ValueError as err:
            raise DataError(f"classes must be comma-separated class indices like '0,1,2', got {classes!r}") from err
    classes = list(classes)
    bad = [c for c in classes if not 0 <= c < n]
    if bad or len(set(classes)) != len(classes) or len(classes) < 2:
        raise DataError(f"classes {classes} must be at least two distinct indices in 0..{n - 1}")
    return classes


def load_dataset(data: str | Path, split: str = "train", *, classes: Sequence[int] | str | None = None,
                 augment: str = "none", root: str | Path | None = None,
                 input_size: tuple[int, int, int] | None = None, seed: int = 0,
                 valid_pct: float = 0.1,
                 stats: tuple[Sequence[float], Sequence[float]] | None = None) -> TensorImageDataset:
    """A data set by name (``fashion-mnist``, ``mnist``, ``cifar10``) or folder, in memory.

    Args:
        data: a built-in name or a folder of class folders (optionally with train/ val/ test/ parts).
        split: ``train`` or ``test`` for the built-ins; ``train``, ``val`` or ``test`` for a folder
            (``test`` falls back to ``val`` when the folder has no test part).
        classes: keep only these class indices (a list or ``"0,1,2"``), relabelled 0..k-1 in order.
        augment: one of ``AUGMENTATIONS``, applied per batch by ``get_batch``.
        root: where the built-in data sets live (default ``$ZOO_HOME/datasets``; Fashion-MNIST is also
            found in the Debian package's folder).
        input_size: (C, H, W) images of a folder are converted and resized to (default 3x32x32).
        seed, valid_pct: the validation split of a folder without val/.
        stats: (mean, std) to normalise with, when the caller already has the training split's (a
            folder's val/test part then need not load the training part again to compute them).

    Returns:
        A ``TensorImageDataset`` normalised with ``stats``, else the training split's mean and std.

    Raises:
        DataError: unknown name, missing files (saying where to put them), bad class list.

    Example:
        >>> train = load_dataset("fashion-mnist", "train", classes="0,1,2,3,4")   # doctest: +SKIP
        >>> len(train), train.classes[:2]                                        # doctest: +SKIP
        (30000, ('T-shirt/top', 'Trouser'))
    """
    key = str(data).lower()
    if key in BUILTIN:
        if split not in ("train", "test"):
            raise DataError(f"{key} has a train and a test split, not {split!r}")
        if key == "fashion-mnist":
            images, labels = _fashion_mnist(split, root)
            names: list[str] = list(FASHION_MNIST_CLASSES)
        else:
            images, labels = _torchvision(key, split, root)
            names = list(MNIST_CLASSES if key == "mnist" else CIFAR10_CLASSES)
        stats = stats or STATS[key]
        name = key
    else:
        path = Path(data).expanduser()
        if not path.is_dir():
            raise DataError(f"--data {data!r} is neither a built-in data set ({', '.join(BUILTIN)}) nor a folder")
        if split not in ("train", "val", "test"):
            raise DataError(f"a data folder has train, val and test parts, not {split!r}")
        images, labels, names = _folder(path, split, input_size=input_size, seed=seed, valid_pct=valid_pct)
        if stats is None:
            # Normalise with the training part's statistics, whatever part this is.
            train_images = images if split == "train" else _folder(path, "train", input_size=input_size, seed=seed,
                                                                   valid_pct=valid_pct)[0]
            mean, std = dataset_stats(train_images)
            stats = (mean, tuple(max(s, 1e-3) for s in std))
        name = str(path)
    mean, std = stats
    wanted = _parse_classes(classes, len(names))
    if wanted is not None:
        keep = torch.isin(labels, torch.tensor(wanted))
        remap = torch.full((len(names),), -1, dtype=torch.long)
        remap[torch.tensor(wanted)] = torch.arange(len(wanted))
        images, labels = images[keep], remap[labels[keep]]
        names = [names[c] for c in wanted]
    return TensorImageDataset(images.contiguous(), labels, names, mean=mean, std=std, augment=augment, name=name)
