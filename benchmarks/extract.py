"""Feature extraction throughput: zoo extract against a naive loop and against the model alone.

Makes a folder of JPEGs (256-500 px a side, varied sizes; smooth colour fields, edges and noise, so
they decode like photos), then, for each model, prints images/s for

  (a) naive: a per-image loop as an app would write it: PIL open, the model's transform, forward one
      image at a time (eval, no_grad, default memory format);
  (b) model alone: ready preprocessed tensors at the zoo's batch size and settings (Extractor.forward);
  (c) zoo extract end to end: extract_folder (decode in workers, batches, the features file and
      its index written),

the ratios c/b and c/a, and peak memory (the main process's exact peak RSS; the decoding workers'
RSS sampled). The three run back to back in ``--rounds`` rounds, each round on its own share of the
folder, and the medians of the per-round figures and ratios are printed: other processes on a
shared machine make the load drift, and paired ratios cancel most of it. ``--memory-check`` then
runs (c) on the whole folder, to show peak memory does not grow with the folder's size. Weights are
random (same compute as pretrained).

Usage:
    python benchmarks/extract.py                                   # CPU, 2000 images, resnet50 + resnet18
    python benchmarks/extract.py --images 300 --models resnet18    # a quick check
    python benchmarks/extract.py --device cuda --images 2000       # on a GPU machine
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs in ``folder`` (reused when they are already there)."""
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob("*.jpg"))
    if len(existing) >= n:
        return existing[:n]
    rng = np.random.default_rng(seed)
    for i in range(len(existing), n):
        w, h = (int(v) for v in rng.integers(256, 501, 2))
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.empty((h, w, 3), np.float32)
        for c in range(3):
            fx, fy, ph = rng.uniform(0.005, 0.04, 2).tolist() + [rng.uniform(0, 6.3)]
            img[..., c] = 128 + 90 * np.sin(xx * fx + ph) * np.cos(yy * fy)
        # a few hard-edged shapes and sensor-like noise: JPEG content, not flat gradients
        for _ in range(4):
            x0, y0 = rng.integers(0, w - 40), rng.integers(0, h - 40)
            img[y0:y0 + rng.integers(20, 120), x0:x0 + rng.integers(20, 120)] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 8, img.shape)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"img{i:05d}.jpg",
                                                                quality=int(rng.integers(80, 96)))
    return sorted(folder.glob("*.jpg"))[:n]


class PeakMemory:
    """Peak memory of this process (the kernel's exact high-water mark, VmHWM, reset on entry) and of
    its children, the DataLoader workers (VmRSS sampled once a second: their RSS includes pages they
    share with this process).

    Cheap on purpose: a first version sampled PSS from smaps_rollup ten times a second, and the page
    table walk slowed ResNet-50 extraction by about a fifth.
    """

    def __init__(self, interval: float = 1.0):
        self.interval, self.main, self.workers, self._stop = interval, 0, 0, threading.Event()

    @staticmethod
    def _field(pid: int | str, key: str) -> int:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith(key):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    @staticmethod
    def _children() -> list[int]:
        pids = []
        for task in Path("/proc/self/task").iterdir():
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                pass
        return pids

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.workers = max(self.workers, sum(self._field(p, "VmRSS:") for p in self._children()))

    def __enter__(self) -> PeakMemory:
        try:  # "5" resets the peak RSS counter (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.main = self._field("self", "VmHWM:")


def build(name: str):
    """A timm architecture with random weights in the zoo contract, ImageNet preprocessing."""
    import timm
    import torch

    from zoo.model import ZooModel, split_classifier
    from zoo.registry.schema import Preprocessing

    torch.manual_seed(0)
    net = timm.create_model(name, pretrained=False)
    body, head = split_classifier(net, "fc")
    return ZooModel(body, head, num_features=head.in_features, name=name,
                    preprocessing=Preprocessing(input_size=(3, 224, 224), resize=256)).eval()


def naive(model, paths: list[Path], device: str) -> float:
    import torch

    model = model.to(device).to(memory_format=torch.contiguous_format)
    transform = model.transforms
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            im = Image.open(path).convert("RGB")
            x = transform(im).unsqueeze(0).to(device)
            model.body(x).cpu()
    return len(paths) / (time.perf_counter() - start)


def model_alone(ex, batches: int) -> float:
    import torch

    x = torch.randn(ex.batch_size, *ex.model.input_size)
    ex.forward(x)  # warm-up
    if ex.device.type == "cuda":
        x = x.to(ex.device)
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        ex.forward(x).get("pool").cpu()
    return batches * ex.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--naive-images", type=int, default=200, help="images for the naive loop (a)")
    parser.add_argument("--model-batches", type=int, default=6, help="batches timed for (b)")
    parser.add_argument("--models", default="resnet50,resnet18")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=None, help="default: the Extractor's (8 CPU, 64 GPU)")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on CUDA for (b) and (c)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "zoo-bench-images")
    parser.add_argument("--rounds", type=int, default=4,
                        help="interleaved rounds of (a), (b), (c), each on its share of the folder")
    parser.add_argument("--memory-check", action="store_true",
                        help="then run (c) on the whole folder and compare its peak memory with a round's")
    args = parser.parse_args()

    import torch

    from zoo.extract import Extractor

    print(f"# zoo extract benchmark: {args.images} JPEGs, device {args.device}, batch {args.batch_size}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpus {os.cpu_count()}, "
          f"load {os.getloadavg()[0]:.2f}")
    t = time.perf_counter()
    paths = make_images(args.dir, args.images)
    print(f"images ready in {args.dir} ({time.perf_counter() - t:.1f} s)")
    out_dir = Path(tempfile.mkdtemp(prefix="zoo-bench-out-"))
    rounds = max(1, args.rounds)
    try:
        for name in args.models.split(","):
            naive_model = build(name)
            ex = Extractor(build(name), device=args.device, batch_size=args.batch_size, num_workers=args.workers,
                           amp=args.amp)
            part = len(paths) // rounds
            rows = []
            for r in range(rounds):
                # (a), (b), (c) back to back in each round, on its own share of the folder: the load
                # other processes put on these cores drifts, and a paired ratio cancels most of it.
                a = naive(naive_model, paths[r * part: r * part + max(1, args.naive_images // rounds)], args.device)
                b = model_alone(ex, max(2, args.model_batches // rounds))
                subset = paths[r * part:(r + 1) * part]
                c, mem = extract(ex, subset, out_dir / f"{name}-{r}")
                rows.append((a, b, c, mem.main, mem.workers))
                print(f"{name:9s} round {r + 1}/{rounds} n={len(subset):4d}  (a) naive {a:6.1f}  (b) model alone "
                      f"{b:6.1f}  (c) zoo extract {c:6.1f} img/s   c/b {c / b:5.2f}   c/a {c / a:5.2f}   "
                      f"peak RSS main {mem.main / 2**20:5.0f} MiB, workers {mem.workers / 2**20:4.0f} MiB   "
                      f"load {os.getloadavg()[0]:.2f}", flush=True)
            med = lambda values: float(np.median(values))  # noqa: E731
            print(f"{name:9s} MEDIAN of {rounds} rounds: (a) {med([x[0] for x in rows]):.1f}  "
                  f"(b) {med([x[1] for x in rows]):.1f}  (c) {med([x[2] for x in rows]):.1f} img/s   "
                  f"c/b {med([x[2] / x[1] for x in rows]):.2f}   c/a {med([x[2] / x[0] for x in rows]):.2f}   "
                  f"workers {ex.num_workers}", flush=True)
            if args.memory_check:
                c, mem = extract(ex, paths, out_dir / f"{name}-all")
                print(f"{name:9s} whole folder n={len(paths)}: (c) {c:.1f} img/s, peak RSS main "
                      f"{mem.main / 2**20:.0f} MiB, workers {mem.workers / 2**20:.0f} MiB (vs. "
                      f"{max(x[3] for x in rows) / 2**20:.0f} / {max(x[4] for x in rows) / 2**20:.0f} MiB "
                      f"for {part} images)", flush=True)
            del ex, naive_model
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def extract(ex, subset: list[Path], stem: Path) -> tuple[float, PeakMemory]:
    """(c): ``extract_folder`` over ``subset`` (passed as a list file); images/s and peak memory."""
    from zoo.extract import extract_folder

    listing = stem.with_suffix(".txt")
    listing.write_text("\n".join(str(p) for p in subset))
    with PeakMemory() as mem:
        start = time.perf_counter()
        summary = extract_folder(ex, [listing], stem.with_suffix(".npz"), progress=False)
        seconds = time.perf_counter() - start
    assert summary.extracted == len(subset) and summary.failed == 0
    return summary.extracted / seconds, mem


if __name__ == "__main__":
    sys.exit(main())
