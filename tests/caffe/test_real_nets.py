"""Real Caffe nets trained by other people (../shared/real): imported as a user would, run on real
inputs, against OpenCV's Caffe runtime; and LeNet's accuracy on real MNIST digits with the conventions
its own files carry.

Every net is imported three ways where the files allow: from its deploy prototxt, from its train_val
prototxt, and from the weights file alone (a solver snapshot stores the training net). OpenCV reads
the deploy file (it refuses train_val files), or, for NIN, which ships none, a deploy file cut from the
train_val one here. Both get the same input blob: real digits scaled by 1/256 for LeNet, real photos
resized to the input size for the others.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from zoo.caffe import import_caffe
from zoo.errors import CaffeError

TOL = 1e-4
CIFAR_MEAN_BGR = [113.9, 123.0, 125.3]  # ../shared/real/README.md; the files name a mean file that is absent

# name: folder, deploy, train_val, weights, input (C, H, W), input blob kind
NETS = {
    "lenet_ethereon": ("lenet_ethereon", "lenet.prototxt", None, "lenet_iter_10000.caffemodel", (1, 28, 28), "digits"),
    "lenet_everpeace": ("lenet_everpeace", "lenet.prototxt", "lenet_train_test.prototxt",
                        "lenet_iter_10000.caffemodel", (1, 28, 28), "digits"),
    "cifar10_full": ("cifar10_everpeace", "cifar10_full.prototxt", "cifar10_full_train_test.prototxt",
                     "cifar10_full_iter_70000.caffemodel", (3, 32, 32), "cifar"),
    "cifar10_quick": ("cifar10_everpeace", "cifar10_quick.prototxt", "cifar10_quick_train_test.prototxt",
                      "cifar10_quick_iter_5000.caffemodel", (3, 32, 32), "cifar"),
    "cifar10_nin": ("cifar10_nin", None, "nin_model.prototxt", "cifar10_nin.caffemodel", (3, 32, 32), "cifar"),
    "mtcnn_pnet": ("mtcnn_kpzhang93", "det1.prototxt", None, "det1.caffemodel", (3, 12, 12), "faces"),
    "mtcnn_rnet": ("mtcnn_kpzhang93", "det2.prototxt", None, "det2.caffemodel", (3, 24, 24), "faces"),
    "mtcnn_onet": ("mtcnn_kpzhang93", "det3.prototxt", None, "det3.caffemodel", (3, 48, 48), "faces"),
}
CASES = [(n, mode) for n, spec in NETS.items() for mode, f in (("deploy", spec[1]), ("train_val", spec[2]),
                                                               ("weights", spec[3])) if f]


def read_mnist_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """784 pixel columns then the label, one digit a row (gzip CSV): (N, 28, 28) uint8 and (N,) labels."""
    with gzip.open(path, "rt", newline="") as fh:
        rows = np.array([[int(v) for v in row] for row in csv.reader(fh) if row], dtype=np.int64)
    return rows[:, :784].reshape(-1, 28, 28).astype(np.uint8), rows[:, 784]


@pytest.fixture(scope="module")
def digits(real):
    return read_mnist_csv(real / "datasets" / "mnist_5k.csv.gz")


def _blob(kind: str, shape, real: Path, digits) -> np.ndarray:
    """The same real input blob for OpenCV and the zoo, in the net's own convention."""
    import cv2

    c, h, w = shape
    if kind == "digits":  # Caffe's LeNet: 0-255 digits times 1/256; one of each class, then more
        x, y = digits
        pick = [int(np.flatnonzero(y == k)[0]) for k in range(10)] + list(range(22))
        return (x[pick].astype(np.float32) / 256.0)[:, None]
    photos = sorted(p for p in (real / "photos").iterdir() if p.suffix in (".jpg", ".png"))
    images = [cv2.resize(cv2.imread(str(p)), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) for p in photos]
    batch = np.stack(images).transpose(0, 3, 1, 2)  # N, BGR, H, W
    if kind == "cifar":
        return np.ascontiguousarray(batch - np.array(CIFAR_MEAN_BGR, np.float32)[:, None, None])
    return np.ascontiguousarray((batch - 127.5) * 0.0078125)  # MTCNN's own normalisation


def _opencv_deploy(real: Path, name: str, tmp_path: Path) -> Path:
    """The deploy file OpenCV reads; for NIN (none shipped), the train_val file without its data, loss
    and accuracy layers, with the input's dims instead (cut by brace counting, not by the zoo's reader)."""
    folder, deploy, train_val, _w, shape, _k = NETS[name]
    if deploy:
        return real / "caffe" / folder / deploy
    text = (real / "caffe" / folder / train_val).read_text()
    blocks, depth, start = [], 0, None
    for i, ch in enumerate(text):
        if ch == "{":
            if depth == 0:
                start = text.rfind("layers", 0, i)
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                blocks.append(text[start:i + 1])
    keep = [b for b in blocks if not any(f"type: {t}" in b for t in ("DATA", "ACCURACY", "SOFTMAX_LOSS"))]
    header = 'name: "deploy"\ninput: "data"\n' + "".join(f"input_dim: {d}\n" for d in (1, *shape))
    out = tmp_path / "deploy.prototxt"
    out.write_text(header + "\n".join(keep))
    return out


def _import(real: Path, name: str, mode: str, out: Path):
    folder, deploy, train_val, weights, shape, kind = NETS[name]
    base = real / "caffe" / folder
    structure = {"deploy": deploy, "train_val": train_val, "weights": None}[mode]
    options = {"mean": CIFAR_MEAN_BGR} if kind == "cifar" else {}
    # The input size is in a deploy file; a train_val file and a snapshot feed from a database.
    return import_caffe(base / weights, base / structure if structure else None, out_dir=out,
                        input_shape=None if mode == "deploy" else shape, **options)


@pytest.mark.parametrize("name, mode", CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_real_net_agrees_with_opencv(name, mode, real, digits, tmp_path, cv2):
    out = _import(real, name, mode, tmp_path / "imported")
    model = zoo.load(out)
    plan = model.caffe_plan
    x = _blob(NETS[name][5], plan.input_shape, real, digits)
    net = cv2.dnn.readNetFromCaffe(str(_opencv_deploy(real, name, tmp_path)),
                                   str(real / "caffe" / NETS[name][0] / NETS[name][3]))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(x)
    # The zoo's output is the last layer's (a trailing Softmax left out); a snapshot alone ends at its
    # last non-loss layer (MTCNN: the box regression), named the same in the deploy file.
    theirs = net.forward(plan.ops[-1].name).reshape(len(x), -1)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    scale = float(np.abs(theirs).max())
    err = float(np.abs(ours - theirs).max()) / scale
    print(f"{name} from {mode}: output {plan.ops[-1].name} {ours.shape}, max error {err:.1e} of scale {scale:.3g}")
    assert ours.shape == theirs.shape
    assert err <= TOL, f"{name} from {mode}: max error {err:.2e} of scale {scale:.3g}"


def test_real_conventions_are_read_from_the_files(real, tmp_path):
    base = real / "caffe"
    lenet = zoo.load(_import(real, "lenet_everpeace", "train_val", tmp_path / "lenet"))
    p = lenet.preprocessing
    # transform_param { scale: 0.00390625 }, no crop: the whole 28x28 digit, 0-255 divided by 256
    assert (p.crop_mode, p.resize, p.input_size, p.scale, p.std, p.mean) == ("squash", 28, (1, 28, 28), 255.0,
                                                                             (256.0,), (0.0,))
    assert "scale 0.00390625 from the data layer 'mnist' of lenet_train_test.prototxt" in lenet.entry.description
    # The CIFAR-10 files name examples/cifar10/mean.binaryproto, which is not shipped: a clear error.
    with pytest.raises(CaffeError, match=r"subtracts the mean file 'examples/cifar10/mean\.binaryproto'.*--mean-file"):
        import_caffe(base / "cifar10_everpeace" / "cifar10_quick_iter_5000.caffemodel", out_dir=tmp_path / "c",
                     input_shape=(3, 32, 32))


@pytest.mark.slow
@pytest.mark.parametrize("name, mode", [("lenet_ethereon", "deploy"), ("lenet_everpeace", "train_val")])
def test_lenet_scores_like_caffe_on_real_digits(name, mode, real, digits, tmp_path, cv2):
    """The zoo's own transform on 5,000 real MNIST digits, against OpenCV fed Caffe's way (x / 256)."""
    x, y = digits
    model = zoo.load(_import(real, name, mode, tmp_path / "lenet"))
    transform = model.transforms
    with torch.no_grad():
        batch = torch.stack([transform(Image.fromarray(d)) for d in x])
        ours = float((model(batch).argmax(1).numpy() == y).mean() * 100)
    folder, deploy, _tv, weights, _s, _k = NETS[name]
    net = cv2.dnn.readNetFromCaffe(str(real / "caffe" / folder / deploy), str(real / "caffe" / folder / weights))
    net.setInput(cv2.dnn.blobFromImages(list(x), scalefactor=1 / 256))
    theirs = float((net.forward().reshape(len(x), -1).argmax(1) == y).mean() * 100)
    print(f"{name} ({mode}): zoo {ours:.2f}%, OpenCV {theirs:.2f}% on {len(y)} real MNIST digits")
    assert ours >= 99.7
    assert abs(ours - theirs) <= 0.05
