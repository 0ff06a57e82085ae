"""Exported models on the CPU: throughput against torch, cold start against torch, int8 accuracy.

1. Throughput, images/s on ready preprocessed batches (batch 1 and 8), for the pooled features of
   each model (the same output on every path):
     (a) torch eager: ``model.forward_features(x)`` under inference_mode (NCHW, as an app writes it);
     (b) the zoo's frozen TorchScript path: ``zoo.Extractor(model, freeze=True).forward(x)``
         (channels_last, traced, frozen, optimize_for_inference);
     (c) onnxruntime fp32: ``zoo.runtime.Features`` on ``zoo export --layer pool``;
     (d) onnxruntime int8: the same export with ``--quantize static`` (calibrated on sample JPEGs).
   The four run back to back in ``--rounds`` rounds; the medians of the per-round figures and of the
   paired ratios are printed (a shared machine's load drifts; paired ratios cancel most of it).
2. Cold start: wall time from starting a Python process to its first prediction on one JPEG, for
   ``zoo.runtime.Classifier`` on an export and for ``zoo.load`` on the same model saved as a folder
   (weights read from disk in both), median of ``--cold-runs`` alternating runs after one warm-up each.
3. int8 accuracy on labelled images: the zoo's embedded ``lenet.fmnist5`` (trained on Fashion-MNIST)
   on the 5,000 test-split images of its five classes, fp32 against dynamic and static int8 (static
   calibrated on 500 training images); and, when ``../shared/real`` is there, torchvision's real ImageNet
   MobileNetV2 weights (served through a user registry entry and ``ZOO_MIRROR``) on the real photos:
   fp32 and static int8 top-1 labels side by side; and Caffe's own LeNet (real weights, imported) on
   4,500 real MNIST digits, fp32 against dynamic and static int8 (calibrated on the other 500).

Throughput and cold start use random weights (the same compute as pretrained; no network here).

Usage (one run, under the shared lock on a shared machine):
    flock /tmp/zoo-cpu.lock python benchmarks/export.py
    python benchmarks/export.py --models resnet18 --rounds 1 --cold-runs 2 --no-accuracy   # a quick check
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# ../shared/real beside the repository (ZOO_REAL_DIR points elsewhere); never copied into the project.
REAL = Path(os.environ.get("ZOO_REAL_DIR") or ROOT / ".." / "shared" / "real")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from extract import make_images  # noqa: E402  (the extraction benchmark's photo-like JPEGs)

RUNTIME_COLD = ("import sys\nfrom zoo.runtime import Classifier\n"
                "print(Classifier(sys.argv[1]).predict([sys.argv[2]], top_k=5)[0]['top'][0]['label'])\n")
TORCH_COLD = ("import sys\nimport torch\nimport zoo\nfrom zoo.images import open_image\n"
              "m = zoo.load(sys.argv[1])\nx = m.transforms(open_image(sys.argv[2], mode=m.image_mode)).unsqueeze(0)\n"
              "with torch.inference_mode():\n    p = m(x).softmax(1)\nprint(int(p.argmax()))\n")


def rate(fn, batch: int, seconds: float) -> float:
    """Images per second of ``fn()`` over about ``seconds`` (after two warm-up calls)."""
    fn()
    fn()
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        n += batch
    return n / elapsed


def throughput(name: str, work: Path, images: list[Path], args) -> list[dict]:
    import torch

    import zoo
    from zoo.runtime import Features

    model = zoo.load(name, pretrained=False)
    fp32, int8 = work / f"{name}-pool", work / f"{name}-pool-int8"
    zoo.export(model, fp32, layer="pool", force=True)
    zoo.export(model, int8, layer="pool", quantize="static", calibration=images[0].parent, force=True)
    runtimes = {"ort_fp32": Features(fp32), "ort_int8": Features(int8)}
    rows = []
    for batch in args.batches:
        x = torch.randn(batch, *model.input_size)
        xn = x.numpy()
        extractor = zoo.Extractor(copy.deepcopy(model), layer="pool", freeze=True, batch_size=batch)
        paths = {
            "eager": lambda: model.forward_features(x),
            "frozen": lambda: extractor.forward(x),
            "ort_fp32": lambda: runtimes["ort_fp32"].forward(xn),
            "ort_int8": lambda: runtimes["ort_int8"].forward(xn),
        }
        rounds: dict[str, list[float]] = {k: [] for k in paths}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for key, fn in paths.items():
                    rounds[key].append(rate(fn, batch, args.seconds))
        ratio = [f / t for f, t in zip(rounds["ort_fp32"], rounds["frozen"], strict=True)]
        ratio8 = [f / t for f, t in zip(rounds["ort_int8"], rounds["frozen"], strict=True)]
        row = {"model": name, "batch": batch, **{k: statistics.median(v) for k, v in rounds.items()},
               "ort_fp32_vs_frozen": statistics.median(ratio), "ort_int8_vs_frozen": statistics.median(ratio8)}
        rows.append(row)
        print(f"  {name} batch {batch}: eager {row['eager']:.1f}, frozen {row['frozen']:.1f}, onnxruntime fp32 "
              f"{row['ort_fp32']:.1f}, int8 {row['ort_int8']:.1f} img/s; fp32/frozen {row['ort_fp32_vs_frozen']:.2f}x, "
              f"int8/frozen {row['ort_int8_vs_frozen']:.2f}x", flush=True)
    return rows


def cold_start(name: str, work: Path, image: Path, runs: int) -> dict:
    import zoo
    from zoo.factory import save_model

    model = zoo.load(name, pretrained=False)
    saved, exported = work / f"{name}-saved", work / f"{name}-cls"
    save_model(model, saved)
    zoo.export(model, exported, force=True)

    def once(code: str, folder: Path) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code, str(folder), str(image)], check=True, capture_output=True)
        return time.perf_counter() - start

    once(RUNTIME_COLD, exported), once(TORCH_COLD, saved)  # warm the page cache for both
    times: dict[str, list[float]] = {"runtime": [], "torch": []}
    for _ in range(runs):
        times["runtime"].append(once(RUNTIME_COLD, exported))
        times["torch"].append(once(TORCH_COLD, saved))
    row = {"model": name, **{k: statistics.median(v) for k, v in times.items()}}
    row["speedup"] = row["torch"] / row["runtime"]
    print(f"  {name}: zoo.runtime {row['runtime']:.2f} s, zoo.load {row['torch']:.2f} s -> {row['speedup']:.1f}x "
          f"faster ({runs} runs each, medians)", flush=True)
    return row


def fashion_mnist_folders(work: Path) -> tuple[Path, Path] | None:
    from zoo.finetune.datasets import find_fashion_mnist, read_idx

    root = find_fashion_mnist()
    if root is None:
        return None
    names = ("T-shirt_top", "Trouser", "Pullover", "Dress", "Coat")  # lenet.fmnist5's classes
    test, calib = work / "fmnist-test", work / "fmnist-calib"
    images, labels = read_idx(root / "t10k-images-idx3-ubyte.gz"), read_idx(root / "t10k-labels-idx1-ubyte.gz")
    for i, (img, y) in enumerate(zip(images, labels, strict=True)):
        if y < 5:
            (test / names[y]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(test / names[y] / f"{i}.png")
    calib.mkdir()
    for i, img in enumerate(read_idx(root / "train-images-idx3-ubyte.gz")[:500]):
        Image.fromarray(img).save(calib / f"{i}.png")
    return test, calib


def accuracy_lenet(work: Path) -> list[dict]:
    import zoo

    folders = fashion_mnist_folders(work)
    if folders is None:
        print("  Fashion-MNIST files absent: skipped (apt-get install dataset-fashion-mnist)")
        return []
    test, calib = folders
    rows = []
    for mode in ("dynamic", "static"):
        r = zoo.export("lenet.fmnist5", work / f"lenet-{mode}", quantize=mode, evaluate=test,
                       calibration=calib if mode == "static" else None, force=True)
        rows.append({"model": "lenet.fmnist5", "mode": mode, **{k: r.accuracy[k] for k in
                                                                 ("images", "top1_fp32", "top1_int8", "change_points")}})
        print(f"  lenet.fmnist5 {mode}: {r.accuracy['summary']}", flush=True)
    return rows


def accuracy_caffe_lenet(work: Path) -> list[dict]:
    """Caffe's own LeNet (real weights, imported) on real MNIST digits: 4,500 labelled test digits,
    static int8 calibrated on the other 500."""
    import csv
    import gzip

    import zoo
    from zoo.caffe import import_caffe

    base = REAL / "caffe" / "lenet_everpeace"
    with gzip.open(REAL / "datasets" / "mnist_5k.csv.gz", "rt", newline="") as fh:
        rows = [row for row in csv.reader(fh) if row]
    test, calib = work / "mnist-test", work / "mnist-calib"
    for i, row in enumerate(rows):
        folder = calib if i >= 4500 else test / row[784]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.array(row[:784], dtype=np.uint8).reshape(28, 28)).save(folder / f"{i}.png")
    imported = import_caffe(base / "lenet_iter_10000.caffemodel", base / "lenet_train_test.prototxt",
                            out_dir=work / "caffe-lenet", input_shape=(1, 28, 28), labels=[str(d) for d in range(10)])
    out = []
    for mode in ("dynamic", "static"):
        r = zoo.export(imported, work / f"caffe-lenet-{mode}", quantize=mode, evaluate=test,
                       calibration=calib if mode == "static" else None, force=True)
        out.append({"model": "caffe lenet (real MNIST)", "mode": mode,
                    **{k: r.accuracy[k] for k in ("images", "top1_fp32", "top1_int8", "change_points")}})
        print(f"  Caffe LeNet, real MNIST digits, {mode}: {r.accuracy['summary']}", flush=True)
    return out


def real_mobilenet_entry(work: Path) -> str | None:
    """A user registry entry for torchvision's MobileNetV2 ImageNet weights, served from a mirror
    folder holding the shared file (sha256 checked as for any download)."""
    weights = REAL / "torch" / "mobilenet_v2-b0353104.pth"
    if not weights.is_file():
        return None
    mirror = work / "mirror" / "mobilenet_v2.real_in1k"
    mirror.mkdir(parents=True)
    (mirror / weights.name).symlink_to(weights)
    entry = {"name": "mobilenet_v2.real_in1k", "architecture": {"library": "torchvision", "builder": "mobilenet_v2"},
             "files": [{"role": "weights", "filename": weights.name, "format": "pth",
                        "checksum": {"sha256": "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"},
                        "sources": [{"url": f"https://download.pytorch.org/models/{weights.name}"}]}],
             "license": "BSD-3-Clause",
             "preprocessing": {"input_size": [3, 224, 224], "resize": 256, "mean": [0.485, 0.456, 0.406],
                               "std": [0.229, 0.224, 0.225]},
             "head": {"num_classes": 1000, "labels": "imagenet-1k", "classifier": "classifier.1"}}
    registry = work / "registry.json"
    registry.write_text(json.dumps({"schema": 1, "entries": [entry]}))
    os.environ.update(ZOO_REGISTRY=str(registry), ZOO_MIRROR=str(work / "mirror"), ZOO_OFFLINE="1")
    return entry["name"]


def accuracy_mobilenet(name: str, work: Path, calibration: Path) -> dict:
    import zoo
    from zoo.runtime import Classifier

    photos = sorted(p for p in (REAL / "photos").iterdir() if p.suffix in (".jpg", ".png"))
    fp32, int8 = work / "mnv2", work / "mnv2-int8"
    zoo.export(name, fp32, force=True)
    zoo.export(name, int8, quantize="static", calibration=calibration, force=True)
    a = Classifier(fp32).predict(photos, top_k=1)
    b = Classifier(int8).predict(photos, top_k=1)
    same = sum(x["top"][0]["index"] == y["top"][0]["index"] for x, y in zip(a, b, strict=True))
    for x, y in zip(a, b, strict=True):
        print(f"    {Path(x['image']).name:<20} fp32 {x['top'][0]['label']:<24} int8 {y['top'][0]['label']}")
    print(f"  {name} static int8: same top-1 as fp32 on {same} of {len(photos)} real photos", flush=True)
    return {"model": name, "photos": len(photos), "same_top1": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet50,resnet18")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    args.batches = [int(b) for b in args.batches.split(",")]
    work = Path(tempfile.mkdtemp(prefix="zoo-export-bench-"))
    os.environ.setdefault("ZOO_HOME", str(work / "home"))
    mobilenet = None if args.no_accuracy else real_mobilenet_entry(work)
    import onnxruntime
    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    print(f"torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, {torch.get_num_threads()} threads, "
          f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}", flush=True)
    images = make_images(work / "jpegs", 64)
    report: dict = {"throughput": [], "cold_start": [], "accuracy": []}
    print("Throughput (pooled features, ready batches):")
    for name in args.models.split(","):
        report["throughput"] += throughput(name, work, images, args)
    print("Cold start (process start to first prediction):")
    for name in args.models.split(","):
        report["cold_start"].append(cold_start(name, work, images[0], args.cold_runs))
    if not args.no_accuracy:
        print("int8 accuracy:")
        report["accuracy"] += accuracy_lenet(work)
        if (REAL / "datasets" / "mnist_5k.csv.gz").is_file():
            report["accuracy"] += accuracy_caffe_lenet(work)
        if mobilenet:
            report["accuracy"].append(accuracy_mobilenet(mobilenet, work, images[0].parent))
        else:
            print(f"  {REAL} absent: the real MobileNetV2 check is skipped")
    print(f"load at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
