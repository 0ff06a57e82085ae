"""zoo's fine-tuning defaults against fastai's, side by side in one run: `zoo finetune` with no flags but
--epochs against `vision_learner(dls, arch).fine_tune(epochs)`, on the same folder, the same
train/validation split, the same backbone (torchvision's ImageNet MobileNetV2 weights, the real file in
../shared/real/torch/, reached by zoo through a ZOO_MIRROR folder), test accuracy and wall time per seed.

fastai is no dependency of the zoo: its side runs in another Python (``--fastai-python``, a venv with
fastai installed; it must see a torch and torchvision) as ``--worker``, fed the split zoo drew as JSON.
The fastai side is what its documentation shows for a folder of photos: item_tfms=Resize(224),
batch_tfms=aug_transforms(), batch size 64; MobileNetV2 is not in fastai's model_meta, so it is
described there as fastai's docs do for a custom architecture (cut -1: the torchvision network's
`features`; default_split; ImageNet stats, so vision_learner adds the normalisation); fine_tune's
defaults (one frozen epoch at 2e-3, then `epochs` unfrozen with discriminative LRs).

``--arch resnet18``: the second case, timm's ResNet-18 from random weights on both sides: fastai's
``vision_learner(dls, "resnet18", pretrained=False)`` (fastai builds it through timm) and zoo's
``fit("resnet18.a1_in1k", folder, pretrained=False, strategy="full", epochs=N)``.

The zoo side: fit(name, folder, strategy="full", epochs=N) and nothing else (the LR finder, the head
alone on cached features, the augmentation, batch size and early stopping are its defaults). Its wall
time includes computing the cached features of every part and the test evaluation; fastai's includes
building the DataLoaders and predicting the test set. Imports are outside both timings.

    .venv/bin/python benchmarks/finetune_fastai.py --fastai-python ../bench-venv/bin/python \\
        --folder photos20 --epochs 3 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REAL = Path(os.environ.get("ZOO_REAL", HERE.parents[1] / "shared" / "real"))
WEIGHTS = REAL / "torch" / "mobilenet_v2-b0353104.pth"
ZOO_NAME = "mobilenet_v2.tv_imagenet1k_v1"  # torchvision's enum name for that file
TIMM_RESNET18 = "resnet18.a1_in1k"  # timm's ResNet-18 (built from random weights: no file is read)
WORK = Path(os.environ.get("ZOO_BENCH_WORK", Path(tempfile.gettempdir()) / "zoo-finetune-fastai"))


def fastai_worker(job: dict) -> dict:
    """fastai's side (runs in the fastai Python): fine_tune on the given split, then the test set."""
    import torch
    import torchvision
    from fastai.vision.all import (CategoryBlock, DataBlock, ImageBlock, IndexSplitter, Resize, accuracy,
                                   aug_transforms, default_split, imagenet_stats, model_meta, parent_label,
                                   set_seed, vision_learner)

    torch.set_num_threads(job["threads"])
    set_seed(job["seed"], reproducible=True)

    def mobilenet_v2(pretrained: bool = True) -> torch.nn.Module:
        net = torchvision.models.mobilenet_v2()
        if pretrained:
            net.load_state_dict(torch.load(job["weights"], weights_only=True))
        return net

    # fastai's way to describe an architecture it does not know: where to cut, how to split, the stats
    model_meta[mobilenet_v2] = {"cut": -1, "split": default_split, "stats": imagenet_stats}
    arch, pretrained = (mobilenet_v2, True) if job["arch"] == "mobilenet_v2" else ("resnet18", False)
    items = [Path(p) for p in job["train"] + job["val"]]
    start = time.perf_counter()
    block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_y=parent_label,
                      splitter=IndexSplitter(range(len(job["train"]), len(items))), item_tfms=Resize(224),
                      batch_tfms=aug_transforms())
    dls = block.dataloaders(items, bs=64, num_workers=0)
    learn = vision_learner(dls, arch, pretrained=pretrained, metrics=accuracy)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(job["epochs"])
        test = dls.test_dl([Path(p) for p in job["test"]], with_labels=True)
        preds, targets = learn.get_preds(dl=test)
    seconds = time.perf_counter() - start
    return {"test": float((preds.argmax(1) == targets).float().mean()), "seconds": round(seconds, 1)}


def zoo_side(folder: Path, seed: int, epochs: int, out: Path, arch: str) -> dict:
    """zoo's side: fit with no option but the epochs (and the seed, the device, no bars; from random
    weights for ``resnet18``)."""
    import shutil

    from zoo.finetune import fit

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    name, pretrained = (ZOO_NAME, True) if arch == "mobilenet_v2" else (TIMM_RESNET18, False)
    run = fit(name, folder, out=out, strategy="full", epochs=epochs, seed=seed, device="cpu", progress=False,
              pretrained=pretrained)
    seconds = time.perf_counter() - start
    chosen = {k: v["value"] for k, v in (run.record.get("chosen") or {}).items()}
    return {"test": run.summary["test"]["accuracy"], "seconds": round(seconds, 1), "chosen": chosen,
            "weights_epoch": run.summary.get("weights_epoch"), "epochs_run": len(run.history)}


def _mirror() -> Path:
    """A ZOO_MIRROR folder holding the real weights file under the name zoo fetches it by."""
    folder = WORK / "mirror" / ZOO_NAME
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / WEIGHTS.name
    if not link.exists():
        link.symlink_to(WEIGHTS)
    return folder.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fastai-python", type=Path, help="a Python with fastai installed")
    parser.add_argument("--folder", default="photos20", choices=["photos20", "photos100", "mnist"])
    parser.add_argument("--arch", default="mobilenet_v2", choices=["mobilenet_v2", "resnet18"],
                        help="mobilenet_v2: the real ImageNet weights; resnet18: timm's, from random weights")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # a job file: run fastai's side
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(fastai_worker(json.loads(args.worker.read_text()))))
        return
    if args.fastai_python is None:
        parser.error("--fastai-python is required")
    if not WEIGHTS.is_file():
        sys.exit(f"{WEIGHTS} is missing (set ZOO_REAL to the folder of real files)")
    os.environ.update(ZOO_MIRROR=str(_mirror()), ZOO_OFFLINE="1", ZOO_HOME=str(WORK / "home"))
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    import torch
    from finetune_defaults import FOLDERS

    from zoo.finetune.data import scan

    torch.set_num_threads(args.threads)
    rows = []
    for seed in args.seeds:
        folder = FOLDERS[args.folder](WORK / "data" / f"{args.folder}-s{seed}", seed) / ""
        split = scan(folder, valid_pct=0.2, seed=seed)  # the split fit draws with this seed
        job = {"train": [str(p) for p in split.paths("train")], "val": [str(p) for p in split.paths("val")],
               "test": [str(p) for p in split.paths("test")], "seed": seed, "epochs": args.epochs,
               "threads": args.threads, "weights": str(WEIGHTS), "arch": args.arch}
        job_file = WORK / f"job-s{seed}.json"
        job_file.write_text(json.dumps(job))
        done = subprocess.run([str(args.fastai_python), __file__, "--worker", str(job_file)], check=True,
                              capture_output=True, text=True)
        fastai = json.loads(done.stdout.strip().splitlines()[-1])
        zoo = zoo_side(folder, seed, args.epochs, WORK / "runs" / f"{args.folder}-s{seed}", args.arch)
        rows.append({"seed": seed, "fastai": fastai, "zoo": zoo})
        print(f"seed {seed}: fastai test {fastai['test']:.1%} in {fastai['seconds']:.0f} s; zoo test "
              f"{zoo['test']:.1%} in {zoo['seconds']:.0f} s (chosen {zoo['chosen']}, weights of epoch "
              f"{zoo['weights_epoch']} of {zoo['epochs_run']})", flush=True)
    for side in ("fastai", "zoo"):
        accs = [100 * r[side]["test"] for r in rows]
        secs = [r[side]["seconds"] for r in rows]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{side:<6} {args.arch}, {args.folder}, {args.epochs} epochs, {len(rows)} seeds: test accuracy "
              f"{statistics.mean(accs):.1f} +- {sd:.1f} %, wall {statistics.mean(secs):.0f} s a run")
    ratio = statistics.mean(r["zoo"]["seconds"] for r in rows) / statistics.mean(r["fastai"]["seconds"] for r in rows)
    print(f"zoo / fastai wall time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
