"""The lecture's ranking of hyper-parameter searches ("Grid search :(", "Random search :/", "Bayesian
optimization :)"), measured with ``zoo tune``; pruning against no pruning; the Fashion-MNIST ladder with
tuned recipes.

The task of the ranking and pruning parts is a linear probe on cached features, cheap enough for a
shared 2-core CPU: the frozen body of ``lenet.fmnist5`` (the embedded LeNet, trained on the five
Fashion-MNIST classes 0-4) under a new linear head for the five classes it never saw (Sandal, Shirt,
Sneaker, Bag, Ankle boot), real Fashion-MNIST training images written as PNG class folders (``train/``
and ``val/``; no test part). The features are computed once; every trial is then ``zoo.finetune.fit``
on them. Every trial trains with seed 0, so a configuration scores the same whatever sampler found it;
the samplers differ by their own seed (``sampler_seed``).

  ranking  grid, random, TPE and GP with the same budget (the full grid: 4 learning rates x 3 weight
           decays x 3 epoch counts = 36 trials), sampler seeds 0-4 each, 160+80 images per class.
           Reports the trials each needs to come within 0.5 points of the grid's best and to reach it,
           and draws best-so-far validation accuracy against trials (mean and min-max over seeds).
           Target: a Bayesian sampler reaches the grid's best in at most a third of the grid's trials.
  pruning  TPE on a larger probe (600+150 images per class, 40 epochs per trial, learning rate and
           weight decay searched), 24 trials, no pruner against the median and Hyperband pruners on
           the same sampler seed: best validation accuracy and the study's wall time. Target: the same
           best (within 0.3 points) in at most half the time.
  ladder   (from scratch, expensive: hours on 2 cores) softmax, sigmoid MLP and ReLU + dropout MLP tuned
           (TPE, median pruner, the built-in spaces) on a held-out 10% of the full training set; each
           rung's chosen recipe then trained on all 60,000 training images and tested once.

Each study is a folder under ``--dir`` and continues where it stopped (``--minutes M`` starts no trial
after M minutes; the same command continues). ``report`` prints the tables and writes the PNG.

  .venv/bin/python benchmarks/tune.py ranking --threads 1
  .venv/bin/python benchmarks/tune.py pruning --threads 1
  .venv/bin/python benchmarks/tune.py report --png benchmarks/results/tune_ranking.png
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run from a checkout: this folder's sibling scripts (the Fashion-MNIST folders) import as modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

BACKBONE = "lenet.fmnist5"
UNSEEN = [5, 6, 7, 8, 9]  # the Fashion-MNIST classes lenet.fmnist5 was not trained on
RANKING_SPACE = """\
lr = { low = 1e-4, high = 1.0, log = true, grid = [1e-4, 1e-3, 1e-2, 1e-1] }
weight_decay = { low = 1e-6, high = 1.0, log = true, grid = [1e-6, 1e-3, 1.0] }
epochs = { low = 2, high = 30, grid = [2, 10, 30] }
"""
PRUNING_SPACE = """\
lr = { low = 1e-4, high = 1.0, log = true }
weight_decay = { low = 1e-6, high = 1.0, log = true }
epochs = 40
"""
SAMPLERS = ["grid", "random", "tpe", "gp"]
GRID_TRIALS = 36
PRUNING_TRIALS = 24
RUNGS = ["softmax", "mlp_sigmoid", "mlp_relu", "lenet"]
LADDER_TRIALS = {"softmax": 20, "mlp_sigmoid": 20, "mlp_relu": 20, "lenet": 0}


def probe_folder(base: Path, per_class: int, val_per_class: int) -> Path:
    """Real Fashion-MNIST training images of the classes the backbone never saw, as ``train/`` and
    ``val/`` class folders of PNGs (made once per size)."""
    from finetune_transfer import load_fmnist, make_folder

    root = base / f"probe-{per_class}-{val_per_class}"
    if not (root / "done").is_file():
        make_folder(root, load_fmnist(), UNSEEN, per_class=per_class, val_per_class=val_per_class,
                    test_per_class=0, seed=0)
        (root / "done").touch()
    return root


def warm_features(data: Path) -> None:
    """The backbone's features of every image, computed once before any study is timed (the studies
    then all read them from the cache, as a rerun of one study would)."""
    from zoo.finetune.config import FinetuneConfig
    from zoo.finetune.data import scan
    from zoo.finetune.fit import setup

    setup(BACKBONE, scan(data), FinetuneConfig().with_options(device="cpu", batch_size=64))


def _study(out: Path, deadline: float, **kwargs) -> bool:
    """Run (or continue) one study until its budget or the deadline; True when it is complete. The
    wall time of every call that ran trials is added up in ``wall.json`` beside the study."""
    from zoo.finetune.search import tune
    from zoo.finetune.study import Study

    if out.joinpath("trials.csv").is_file() and _done(Study(out)):
        return True
    left = deadline - time.time()
    if left < 20:
        return False
    print(f"-- {out.name}", flush=True)
    start = time.perf_counter()
    study = tune(out=out, timeout=left, progress=False, plots=False, **kwargs)
    wall = out.parent / f"{out.name}.wall.json"
    before = json.loads(wall.read_text())["seconds"] if wall.is_file() else 0.0
    wall.write_text(json.dumps({"seconds": before + time.perf_counter() - start}))
    return _done(study)


def _done(study) -> bool:
    finished = [r for r in study.trials if r["state"] in ("complete", "pruned", "failed")]
    return study.spec.budget is not None and len(finished) >= study.spec.budget


def _studies(args, folder: str, names: list[str], **kwargs) -> None:
    """One study per sampler seed and name (``folder/NAME-sSEED``), each ``_study`` with ``kwargs`` and
    its name as the ``folder`` option (sampler or pruner), until the ``--minutes`` deadline."""
    deadline = time.time() + 60 * args.minutes
    option = {"ranking": "sampler", "pruning": "pruner"}[folder]
    for seed in args.seeds:
        for name in names:
            if not _study(args.dir / folder / f"{name}-s{seed}", deadline, sampler_seed=seed, **{option: name},
                          **kwargs):
                print("time is up: run the same command again to continue", flush=True)
                return


def ranking(args) -> None:
    data, space = probe_folder(args.dir, 160, 80), args.dir / "ranking_space.toml"
    space.write_text(RANKING_SPACE)
    warm_features(data)
    _studies(args, "ranking", args.samplers, target=BACKBONE, data=data, space=str(space), seed=0,
             trials=GRID_TRIALS, device="cpu")


def pruning(args) -> None:
    data, space = probe_folder(args.dir, 600, 150), args.dir / "pruning_space.toml"
    space.write_text(PRUNING_SPACE)
    warm_features(data)
    _studies(args, "pruning", args.pruners, target=BACKBONE, data=data, space=str(space), sampler="tpe", seed=0,
             trials=PRUNING_TRIALS, device="cpu")


def ladder(args) -> None:
    from zoo.finetune.scratch import scratch_config, train_scratch
    from zoo.finetune.study import Study

    deadline = time.time() + 60 * args.minutes
    trials = {**LADDER_TRIALS, **{k: int(v) for k, v in (item.split("=") for item in args.trials)}}
    for rung in args.rungs:
        out, final = args.dir / "ladder" / rung, args.dir / "ladder" / f"{rung}-final.json"
        if final.is_file():
            continue
        if trials[rung]:
            if not _study(out, deadline, target=rung, data="fashion-mnist", sampler="tpe", pruner="median",
                          trials=trials[rung], valid_pct=0.1, jobs=args.jobs):
                print("time is up: run the same command again to continue", flush=True)
                return
            config, how = Study(out).best_config, f"tuned: {trials[rung]} TPE trials, median pruner"
        else:
            config, how = scratch_config(rung), "its recipe, not tuned"
        if time.time() > deadline - 60:
            print("time is up before the final training: run the same command again", flush=True)
            return
        # The chosen recipe on all 60,000 training images, tested once (final-epoch weights).
        config = dataclasses.replace(config.with_options(device="cpu"), hold_out=False)
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            run = train_scratch(rung, "fashion-mnist", config, out=Path(tmp) / rung, progress=False)
            row = {"rung": rung, "how": how, "test_accuracy": round(100 * run.summary["test"]["accuracy"], 2),
                   "epochs": len(run.history), "wall_seconds": round(time.perf_counter() - start, 1),
                   "config": config.to_dict()}
        final.write_text(json.dumps(row, indent=1))
        print(json.dumps({k: v for k, v in row.items() if k != "config"}), flush=True)


# -- the report -------------------------------------------------------------------------------------------


def _rows(study_dir: Path) -> list[dict[str, str]]:
    with (study_dir / "trials.csv").open() as fh:
        return [r for r in csv.DictReader(fh) if r["state"] in ("complete", "pruned", "failed")]


def _curve(rows: list[dict[str, str]]) -> list[float]:
    """Best-so-far validation accuracy after each trial, in trial order (a pruned or failed trial adds
    nothing)."""
    best, curve = -math.inf, []
    for row in rows:
        if row["state"] == "complete":
            best = max(best, float(row["val_acc"]))
        curve.append(best)
    return curve


def _first(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, v in enumerate(curve) if v >= target - 1e-9), None)


def _spread(values: list[int | None]) -> str:
    found = [v for v in values if v is not None]
    never = len(values) - len(found)
    if not found:
        return f"never ({never} of {len(values)})"
    text = f"{statistics.median(found):g} ({min(found)}-{max(found)})"
    return text + (f"; not within {GRID_TRIALS} in {never}" if never else "")


def report(args) -> None:
    if (args.dir / "ranking").is_dir():
        _report_ranking(args.dir / "ranking", args.png)
    if (args.dir / "pruning").is_dir():
        _report_pruning(args.dir / "pruning")
    if (args.dir / "ladder").is_dir():
        print("\n| rung | how | test acc (%) | epochs | wall (s) |\n| --- | --- | --- | --- | --- |")
        for rung in RUNGS:
            path = args.dir / "ladder" / f"{rung}-final.json"
            if path.is_file():
                r = json.loads(path.read_text())
                print(f"| {rung} | {r['how']} | {r['test_accuracy']:.2f} | {r['epochs']} | {r['wall_seconds']:.0f} |")


def _report_ranking(base: Path, png: Path) -> None:
    curves: dict[str, dict[int, list[float]]] = {s: {} for s in SAMPLERS}
    walls: dict[str, list[float]] = {s: [] for s in SAMPLERS}
    for folder in sorted(p for p in base.glob("*-s*") if p.is_dir()):
        sampler, seed = folder.name.rsplit("-s", 1)
        if (folder / "trials.csv").is_file():
            curves[sampler][int(seed)] = _curve(_rows(folder))
            wall = base / f"{folder.name}.wall.json"
            if wall.is_file():
                walls[sampler].append(json.loads(wall.read_text())["seconds"])
    full = [c for c in curves["grid"].values() if len(c) == GRID_TRIALS]
    if not full:
        print("ranking: the full grid has not run yet")
        return
    grid_best = full[0][-1]
    print(f"ranking: the full grid's best validation accuracy {100 * grid_best:.2f}% ({GRID_TRIALS} trials)")
    print("| sampler | seeds | trials to within 0.5 pt of the grid's best: median (min-max) | trials to reach the "
          "grid's best: median (min-max) | best after 12 trials, mean (min-max) | best after 36, mean (min-max) "
          "| study wall (s), mean |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for sampler, runs in curves.items():
        if not runs:
            continue
        near = [_first(c, grid_best - 0.005) for c in runs.values()]
        reach = [_first(c, grid_best) for c in runs.values()]
        at12 = [100 * c[min(11, len(c) - 1)] for c in runs.values()]
        at36 = [100 * c[-1] for c in runs.values()]
        wall = f"{statistics.mean(walls[sampler]):.0f}" if walls[sampler] else ""
        print(f"| {sampler} | {len(runs)} | {_spread(near)} | {_spread(reach)} | {statistics.mean(at12):.2f} "
              f"({min(at12):.2f}-{max(at12):.2f}) | {statistics.mean(at36):.2f} ({min(at36):.2f}-{max(at36):.2f}) "
              f"| {wall} |")
    _plot_ranking(curves, grid_best, png)


def _plot_ranking(curves: dict, grid_best: float, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for sampler, runs in curves.items():
        if not runs:
            continue
        n = min(len(c) for c in runs.values())
        values = np.array([c[:n] for c in runs.values()]) * 100
        values[~np.isfinite(values)] = np.nan  # before the first completed trial
        x = np.arange(1, n + 1)
        ax.plot(x, np.nanmean(values, 0), label=f"{sampler}: mean, band min-max of {len(runs)} seeds")
        ax.fill_between(x, np.nanmin(values, 0), np.nanmax(values, 0), alpha=0.15)
    ax.axhline(100 * grid_best, color="grey", linestyle="--", linewidth=0.8, label="the full grid's best")
    ax.axhline(100 * grid_best - 0.5, color="grey", linestyle=":", linewidth=0.8, label="0.5 point below it")
    ax.axvline(GRID_TRIALS / 3, color="black", linestyle=":", linewidth=0.6)
    ax.set_xlabel("trials")
    ax.set_ylabel("best validation accuracy so far (%)")
    ax.set_title(f"linear probe of {BACKBONE} on 5 unseen Fashion-MNIST classes: lr, weight decay, epochs",
                 fontsize=9)
    ax.set_ylim(100 * grid_best - 8, 100 * grid_best + 2)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    print(f"plot: {png}")


def _report_pruning(base: Path) -> None:
    print("\n| pruner | sampler seed | best val acc (%) | trials complete / pruned | epochs run | study wall (s) "
          "| vs no pruner |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    results = {}
    for folder in sorted((p for p in base.glob("*-s*") if p.is_dir()),
                         key=lambda p: (p.name.rsplit("-s", 1)[1], p.name != "none-s" + p.name.rsplit("-s", 1)[1])):
        pruner, seed = folder.name.rsplit("-s", 1)
        if not (folder / "trials.csv").is_file() or not (base / f"{folder.name}.wall.json").is_file():
            continue
        rows = _rows(folder)
        best, wall = _curve(rows)[-1], json.loads((base / f"{folder.name}.wall.json").read_text())["seconds"]
        epochs = sum(int(r["epochs"] or 0) for r in rows)
        results[(pruner, seed)] = (best, wall)
        base_best, base_wall = results.get(("none", seed), (None, None))
        versus = (f"{wall / base_wall:.2f}x the time, {100 * (best - base_best):+.2f} pt"
                  if base_wall and pruner != "none" else "")
        states = [r["state"] for r in rows]
        print(f"| {pruner} | {seed} | {100 * best:.2f} | {states.count('complete')} / {states.count('pruned')} | "
              f"{epochs} | {wall:.0f} | {versus} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["ranking", "pruning", "ladder", "report"])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "zoo-tune-bench")
    parser.add_argument("--minutes", type=float, default=12.0, help="start no trial after this long (then rerun)")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="sampler seeds")
    parser.add_argument("--samplers", nargs="*", default=SAMPLERS)
    parser.add_argument("--pruners", nargs="*", default=["none", "median", "hyperband"])
    parser.add_argument("--rungs", nargs="*", default=RUNGS)
    parser.add_argument("--trials", nargs="*", default=[], help="ladder: RUNG=N trials (lenet=0: its recipe)")
    parser.add_argument("--jobs", type=int, default=1, help="ladder: trials at a time")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--png", type=Path, default=Path(__file__).resolve().parent / "results" / "tune_ranking.png")
    args = parser.parse_args()
    args.seeds = args.seeds if args.seeds is not None else ([0, 1, 2, 3, 4] if args.part == "ranking" else [0])
    args.dir.mkdir(parents=True, exist_ok=True)
    # One feature cache for every study (the features are computed once), away from the user's.
    os.environ.setdefault("ZOO_HOME", str(args.dir / "home"))
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); studies in {args.dir}", flush=True)
    {"ranking": ranking, "pruning": pruning, "ladder": ladder, "report": report}[args.part](args)


if __name__ == "__main__":
    main()
