"""Do the fine-tuning defaults win? Every strategy with no flags against the same network from scratch
with no flags, against the old constant defaults, and against a small manual grid, on real folders.

Folders (``benchmarks/photo_folders.py``; training images drawn per seed, a fixed test set):
  photos20   six Fashion-MNIST classes as RGB JPEG photos of 100-200 px, 20 images per class
  photos100  the same, 100 images per class
  mnist      the real MNIST digits of ../shared/real/datasets/mnist_5k.csv.gz, 50 per class, 28 px PNG
The test set (50 photos or 100 digits per class) is read only for the figures; ``fit`` draws its
validation part (20%) from the training images, and every choice (epoch, grid cell) is the one a user
could make without the test set, except "grid best", which is the oracle cell by mean test accuracy.

Settings (one run each; ``--setting`` picks them, a run appends one JSON line to ``--results``):
  default           zoo.finetune.fit(BACKBONE, folder, strategy=S): no other option
  scratch           the same network from random weights: fit(..., pretrained=False, strategy="full")
                    (scratch:K=V,...: with options set, as default:K=V,...)
  train             `zoo train lenet --data folder` (no flags: settings from the data, as fine-tuning
                    chooses them): train_scratch("lenet", folder)
  old               the constants before the defaults were chosen from the data: lr 1e-3 (linear 3e-3),
                    10 epochs (linear 20), batch 64, warm-up 1 (linear 0), random resized crops of 35-100%
                    and flips, weights of the lowest validation loss
  default:K=V,...   an ablation: the defaults with options of fit set (augment=off, early_stopping=0,
                    head_epochs=0, lr=0.003; on/off are booleans)
  grid:LR:AUG       a grid cell: batch 16, 15 epochs (linear 30), no head phase, no early stopping,
                    lr LR, AUG "on" (the chosen augmentation) or "off"

Each run is one process call, so runs go in chunks under the shared lock:

    for seed in 0 1 2; do flock /tmp/zoo-cpu.lock .venv/bin/python benchmarks/finetune_defaults.py \\
        --folder photos20 --seed $seed --setting default scratch train; done
    .venv/bin/python benchmarks/finetune_defaults.py --report     # the tables, from the results file

``--per-epoch`` also evaluates the test set after every epoch (for choosing the monitor; slower).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import photo_folders  # noqa: E402

FOLDERS = {
    "photos20": lambda root, seed: photo_folders.fashion_photos(root, per_class=20, test_per_class=50, seed=seed),
    "photos100": lambda root, seed: photo_folders.fashion_photos(root, per_class=100, test_per_class=50, seed=seed),
    "mnist": lambda root, seed: photo_folders.mnist_digits(root, per_class=50, test_per_class=100, seed=seed),
}
STRATEGIES = ("linear", "partial", "full")
GRID_LRS = {"linear": (3e-3, 1e-2, 3e-2, 1e-1), "partial": (1e-3, 3e-3, 1e-2, 3e-2), "full": (1e-3, 3e-3, 1e-2, 3e-2)}
# --small-grid: two learning rates a strategy (what fits a run on two shared CPU cores)
SMALL_GRID_LRS = {"linear": (1e-2, 1e-1), "partial": (3e-3, 3e-2), "full": (3e-3, 3e-2)}
OLD = {"linear": dict(lr=3e-3, epochs=20, warmup_epochs=0.0), "partial": dict(lr=1e-3, epochs=10, warmup_epochs=1.0),
       "full": dict(lr=1e-3, epochs=10, warmup_epochs=1.0)}
WORK = Path(os.environ.get("ZOO_BENCH_WORK", Path(tempfile.gettempdir()) / "zoo-finetune-defaults"))
RESULTS = Path(__file__).resolve().parent / "results" / "finetune_defaults.jsonl"


def grid_settings(strategy: str, small: bool = False) -> list[str]:
    augments = ("off",) if strategy == "linear" else ("on", "off")
    return [f"grid:{lr:g}:{aug}" for lr in (SMALL_GRID_LRS if small else GRID_LRS)[strategy] for aug in augments]


def options_for(setting: str, strategy: str) -> dict:
    """The keyword options of ``fit`` for a setting (``default``: none at all)."""
    if setting == "default":
        return {"strategy": strategy}
    if setting.startswith("default:"):  # an ablation: the defaults with one or more options set
        return {"strategy": strategy, **{k: _value(v) for k, v in
                                         (pair.split("=", 1) for pair in setting[len("default:"):].split(","))}}
    if setting == "scratch" or setting.startswith("scratch:"):  # scratch:K=V,...: an ablation from scratch
        return {**options_for("default" + setting[len("scratch"):], "full"), "pretrained": False}
    if setting == "old":
        old = {"strategy": strategy, "batch_size": 64, "early_stopping": 0, "monitor": "val_loss", **OLD[strategy]}
        return old if strategy == "linear" else {**old, "head_epochs": 0}
    _, lr, aug = setting.split(":")
    options = {"strategy": strategy, "lr": float(lr), "batch_size": 16, "epochs": 30 if strategy == "linear" else 15,
               "early_stopping": 0, "augment": aug == "on", "warmup_epochs": 0.0 if strategy == "linear" else 1.0}
    if strategy != "linear":
        options["head_epochs"] = 0
    return {k: v for k, v in options.items() if v is not None}


def _from_scratch(setting: str) -> bool:
    """Whether a setting trains from random weights (``scratch``, ``scratch:K=V,...``, ``train``): one run,
    not one a strategy."""
    return setting.split(":")[0] in ("scratch", "train")


def _value(text: str):
    """An ablation's option value: on/off as booleans, numbers as numbers."""
    if text in ("on", "off"):
        return text == "on"
    try:
        return int(text)
    except ValueError:
        return float(text)


class _TestEveryEpoch:
    """``on_epoch_end``: the test accuracy of the epoch's weights, kept beside the loop's row."""

    def __init__(self, data):
        self.data, self.rows = data, []

    def __call__(self, info):
        self.rows.append({k: info["row"].get(k) for k in ("epoch", "val_loss", "val_acc")}
                         | {"test_acc": self.test(info["model"])})

    def test(self, model) -> float:
        from zoo.finetune.loop import evaluate

        accuracy = evaluate(model, self.data, batch_size=256, device="cpu")["accuracy"]
        model.train()
        return accuracy

    def start(self, s) -> None:
        """Epoch 0: the head-alone phase's weights (the candidate the body's epochs must beat), if any."""
        if s.head_phase:
            self.rows.append({"epoch": 0, "val_loss": s.head_phase.get("val_loss"),
                              "val_acc": s.head_phase.get("val_acc"), "test_acc": self.test(s.target)})


def run_one(folder: Path, setting: str, strategy: str, seed: int, backbone: str, per_epoch: bool) -> dict:
    """One run; returns its JSON row."""
    import shutil

    from zoo.finetune import fit
    from zoo.finetune.scratch import train_scratch

    out = WORK / "runs" / f"{folder.name}-{setting.replace(':', '_')}-{strategy}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    if setting == "train":
        run = train_scratch("lenet", folder, out=out, progress=False, seed=seed, device="cpu")
        test = run.summary["test"]["accuracy"]
        options, epochs_log = {}, []
    else:
        options = options_for(setting, strategy)
        restore = _old_augmentation() if setting == "old" else None
        probe: dict = {}
        hooks, callbacks = {}, None
        try:
            if per_epoch:
                def on_setup(s):
                    probe["cb"] = _TestEveryEpoch(_test_data(s))
                    probe["cb"].start(s)

                hooks = {"on_setup": on_setup}
                callbacks = {"on_epoch_end": [lambda info: probe["cb"](info)]}
            run = fit(backbone, folder, out=out, progress=False, device="cpu", seed=seed, callbacks=callbacks,
                      **hooks, **options)
        finally:
            if restore:
                restore()
        test = run.summary["test"]["accuracy"]
        epochs_log = probe["cb"].rows if per_epoch else []
    seconds = time.perf_counter() - start
    cfg = run.record["config"]
    return {"folder": folder.name.rsplit("-s", 1)[0], "seed": seed, "setting": setting,
            "strategy": "scratch" if _from_scratch(setting) else strategy, "backbone": backbone,
            "options": {k: v for k, v in options.items() if k != "strategy"}, "val": run.summary["val"]["accuracy"],
            "test": test, "epochs_run": len(run.history), "weights_epoch": run.summary.get("weights_epoch"),
            "lr": cfg.get("lr"), "batch_size": cfg.get("batch_size"), "epochs": cfg.get("epochs"),
            "chosen": {k: v["value"] for k, v in (run.record.get("chosen") or {}).items()},
            "augmentation": (run.record.get("augmentation") or {}).get("kind"), "head_phase": run.record.get("head_phase"),
            "seconds": round(seconds, 1), "per_epoch": epochs_log}


def _test_data(s):
    """The test part in the form the trained target takes (features for a head on cached features)."""
    import torch
    from torch.utils.data import TensorDataset

    from zoo.finetune.features import LabelledImages

    if s.features is not None:
        from safetensors.torch import load_file

        x = load_file(s.features["test"]["cache"])["features"]
        return TensorDataset(x, torch.tensor(s.split.labels("test"), dtype=torch.long))
    return LabelledImages(s.split.paths("test"), s.split.labels("test"), s.model.transforms, mode=s.model.image_mode)


def _old_augmentation():
    """The old default augmentation (random resized crops of 35-100% and flips for every input size),
    patched in for the ``old`` setting; returns the undo."""
    fit_module = importlib.import_module("zoo.finetune.fit")  # the module: zoo.finetune.fit is also the function
    from zoo.finetune.augment import Augmentation

    saved = fit_module.choose_augmentation
    fit_module.choose_augmentation = lambda side, image_side, per_class=None: Augmentation(
        "resized_crop_flip", min_area=0.35, flip=True, why="the old constant default")
    return lambda: setattr(fit_module, "choose_augmentation", saved)


def report(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    by: dict[tuple, list[dict]] = {}
    for r in rows:
        by.setdefault((r["folder"], r["strategy"], r["setting"]), []).append(r)

    def stats(rs):
        accs = [100 * r["test"] for r in sorted(rs, key=lambda r: r["seed"])]
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        return statistics.mean(accs), sd, len(accs), accs

    def fmt(rs):
        if not rs:
            return "-"
        mean, sd, n, _ = stats(rs)
        return f"{mean:.1f} +- {sd:.1f} (n={n})"

    for folder in FOLDERS:
        if not any(k[0] == folder for k in by):
            continue
        print(f"\n## {folder}  (test accuracy %, mean +- sd over seeds)")
        scratch, train = by.get((folder, "scratch", "scratch"), []), by.get((folder, "scratch", "train"), [])
        print(f"  from scratch, no flags: fit(pretrained=False) {fmt(scratch)}; zoo train lenet {fmt(train)}")
        for strategy in STRATEGIES:
            default, old = by.get((folder, strategy, "default"), []), by.get((folder, strategy, "old"), [])
            cells = [(k[2], v) for k, v in by.items() if k[0] == folder and k[1] == strategy and k[2].startswith("grid")]
            best = max(cells, key=lambda c: stats(c[1])[0]) if cells else None
            line = f"  {strategy:<8} default {fmt(default)}  old {fmt(old)}"
            if best:
                line += f"  grid best {best[0]} {fmt(best[1])}"
            if default:
                d = stats(default)[0]
                verdicts = []
                for name, other in (("scratch", scratch), ("train", train)):
                    if other:
                        verdicts.append(f"vs {name} {d - stats(other)[0]:+.1f}")
                if best:
                    verdicts.append(f"vs grid best {d - stats(best[1])[0]:+.1f}")
                line += "  [" + ", ".join(verdicts) + "]"
            print(line)
            if default:
                secs = statistics.mean(r["seconds"] for r in default)
                chosen = default[0]["chosen"]
                print(f"           chosen (seed {default[0]['seed']}): {chosen}; {secs:.0f} s a run")
        for strategy in STRATEGIES:
            cells = sorted((k[2], v) for k, v in by.items() if k[0] == folder and k[1] == strategy and k[2].startswith("grid"))
            if cells:
                print(f"  grid {strategy}: " + "; ".join(f"{name[5:]} {stats(v)[0]:.1f}" for name, v in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", choices=list(FOLDERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--setting", nargs="+", default=["default"],
                        help="default, default:K=V,..., scratch, train, old, grid:LR:on|off, or grid (every cell)")
    parser.add_argument("--strategy", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--backbone", default="lenet.fmnist5")
    parser.add_argument("--per-epoch", action="store_true", help="evaluate the test set after every epoch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--small-grid", action="store_true", help="two learning rates a strategy in the grid")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--report", action="store_true", help="print the tables from --results and stop")
    args = parser.parse_args()
    if args.report:
        report(args.results)
        return
    if args.folder is None:
        parser.error("--folder is required (or --report)")
    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("ZOO_HOME", str(WORK / "home"))
    folder = FOLDERS[args.folder](WORK / "data" / f"{args.folder}-s{args.seed}", args.seed)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    jobs = []
    for setting in args.setting:
        if _from_scratch(setting):
            jobs.append((setting, "full"))
        else:
            for strategy in args.strategy:
                for cell in (grid_settings(strategy, args.small_grid) if setting == "grid" else [setting]):
                    jobs.append((cell, strategy))
    for setting, strategy in jobs:
        row = run_one(folder, setting, strategy, args.seed, args.backbone, args.per_epoch)
        with open(args.results, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{row['folder']} seed {args.seed} {row['strategy']:<8} {setting:<16} val {row['val']:.3f} test "
              f"{row['test']:.3f}  epochs {row['epochs_run']}/{row['epochs']} lr {row['lr']:.3g} bs {row['batch_size']}"
              f"  {row['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
