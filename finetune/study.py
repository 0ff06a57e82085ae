"""A hyper-parameter study's folder, its definition and its record. The folder::

    study.json      what the study is (``StudySpec``): target, data, base config, space, sampler,
                    pruner, metric, seeds, storage and the command; a rerun must match it
    journal.log     optuna's journal storage (the default; ``--storage`` may name a database instead)
    split.json      a folder's split, made once: train and val only (the test part is never used)
    trials/NNNN/    each trial's run folder (only the best ``keep`` trials keep their weights)
    trials.csv      every trial: number, state, metric, parameters, epochs, seconds, reason, run folder
    best.json       the best trial: number, value, parameters, full config, run folder
    best            a link to the best trial's run folder: ``zoo.load("STUDY/best")``
    plots/*.png     best-so-far against trials, parameter importances, slice, intermediate values

Owns ``StudyDir`` (the paths), ``StudySpec``, ``Study`` (a study folder read from its files, without
optuna), ``write_records`` (trials.csv, best.json, the link, the best run's card section, the
weights of trials that are not among the best) and ``write_study_plots`` (optuna's matplotlib
figures). Only ``write_study_plots`` imports optuna, inside the function. May import ``zoo`` and
``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from zoo._io import atomic_write, write_json
from zoo.errors import RunError

from .config import FinetuneConfig
from .run import Run
from .rundir import RunDir

__all__ = ["StudyDir", "StudySpec", "Study", "counts", "trial_rows", "write_records", "write_study_plots", "CARD_BEGIN",
           "CARD_END", "HEAVY_FILES"]

CARD_BEGIN, CARD_END = "<!-- zoo tune: how this model was found -->", "<!-- /zoo tune -->"
HEAVY_FILES = ("model.safetensors", "checkpoint.pt", "best.safetensors")  # what a trial that is not kept drops
METRICS = {"accuracy": ("val_acc", "maximize"), "loss": ("val_loss", "minimize")}


class StudyDir:
    """A study folder's paths."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()

    spec = property(lambda self: self.path / "study.json")
    journal = property(lambda self: self.path / "journal.log")
    split = property(lambda self: self.path / "split.json")
    trials = property(lambda self: self.path / "trials")
    table = property(lambda self: self.path / "trials.csv")
    best = property(lambda self: self.path / "best.json")
    best_link = property(lambda self: self.path / "best")
    plots = property(lambda self: self.path / "plots")
    lock = property(lambda self: self.path / ".lock")

    def trial(self, number: int) -> Path:
        """The run folder of trial ``number``."""
        return self.trials / f"{number:04d}"

    def default_storage(self) -> str:
        return str(self.journal)


@dataclass(frozen=True)
class StudySpec:
    """What a study is: every worker (on any machine) builds its trials from this.

    Attributes:
        name: the study's name in the storage (several machines share a study by name and storage).
        kind: ``finetune`` (``zoo.finetune.fit``) or ``scratch`` (``zoo.finetune.train_scratch``).
        target: the model (fine-tuning) or architecture (from scratch).
        data: a folder or a built-in data set's name; ``data_root``: where built-in data sets live.
        config: the base ``FinetuneConfig`` (as ``to_dict``); each trial sets the space's options on it.
        space: the ``SearchSpace`` (as ``to_dict``).
        sampler, pruner, metric: ``grid|random|tpe|gp``, ``none|median|hyperband``, ``accuracy|loss``.
        seed: the trials' seed (split, weights, order); ``sampler_seed``: the sampler's.
        storage: an optuna RDB URL, or the path of an optuna journal file.
        budget: the number of trials the study runs (None: until the timeout).
        keep: how many of the best trials keep their weights.
        command: the command that started it; ``test_images``: the test part's size (never used).
    """

    name: str
    kind: str
    target: str
    data: str
    config: dict[str, Any]
    space: dict[str, Any]
    sampler: str = "tpe"
    pruner: str = "none"
    metric: str = "accuracy"
    seed: int = 0
    sampler_seed: int = 0
    storage: str = ""
    budget: int | None = None
    keep: int = 1
    data_root: str | None = None
    command: str = ""
    test_images: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def monitor(self) -> str:
        """The per-epoch figure a trial reports and is judged by (``val_acc`` or ``val_loss``)."""
        return METRICS[self.metric][0]

    @property
    def direction(self) -> str:
        return METRICS[self.metric][1]

    def identity(self) -> dict[str, Any]:
        """The fields that make two studies the same (not where the data or the storage is)."""
        identity = {"kind": self.kind, "target": self.target, "data": Path(self.data).name, "config": self.config,
                    "space": self.space, "sampler": self.sampler, "pruner": self.pruner, "metric": self.metric,
                    "seed": self.seed, "sampler_seed": self.sampler_seed}
        return json.loads(json.dumps(identity))  # as stored: lists, not tuples

    def to_dict(self) -> dict[str, Any]:
        return {"format": "zoo-study", "version": 1, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudySpec:
        values = {k: v for k, v in data.items() if k not in ("format", "version")}
        return cls(**values)

    def base_config(self) -> FinetuneConfig:
        return FinetuneConfig.from_dict(self.config)


class Study:
    """A study folder, read from its files (no optuna needed): ``spec``, ``trials`` (the rows of
    ``trials.csv``), ``best`` (``best.json``), ``best_run`` and ``best_config``.

    Example:
        >>> study = Study("studies/photos")                    # doctest: +SKIP
        >>> study.best["value"], study.best["params"]          # doctest: +SKIP
        >>> model = zoo.load(study.best_run.path)              # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.dir = StudyDir(path)
        self.path = self.dir.path
        if not self.dir.spec.is_file():
            raise RunError(f"{self.path} is not a study folder: it has no {self.dir.spec.name}. Pass the --out "
                           "folder of `zoo tune`.")
        try:
            self.spec = StudySpec.from_dict(json.loads(self.dir.spec.read_text("utf-8")))
        except (ValueError, TypeError) as err:
            raise RunError(f"{self.dir.spec} is not a study record ({err}); the study folder is damaged.") from err

    def __repr__(self) -> str:
        return f"Study({str(self.path)!r}, sampler={self.spec.sampler!r}, trials={len(self.trials)})"

    @property
    def trials(self) -> list[dict[str, str]]:
        """The rows of ``trials.csv`` (strings, as written), one per trial."""
        if not self.dir.table.is_file():
            return []
        return list(csv.DictReader(io.StringIO(self.dir.table.read_text("utf-8"))))

    @property
    def best(self) -> dict[str, Any] | None:
        """``best.json``: ``trial``, ``value``, ``metric``, ``params``, ``config``, ``run``; None before a
        trial completes."""
        if not self.dir.best.is_file():
            return None
        return json.loads(self.dir.best.read_text("utf-8"))

    @property
    def best_config(self) -> FinetuneConfig:
        """The best trial's full config (with plots on again): train it again, on more data with
        ``hold_out=False``, and test it once."""
        return dataclasses.replace(FinetuneConfig.from_dict(self._require_best()["config"]), plots=True)

    @property
    def best_run(self) -> Run:
        """The best trial's run folder (``zoo.load``, ``zoo evaluate`` and ``zoo register`` open it)."""
        best = self._require_best()
        path = self.path / best["run"]
        if not path.is_dir():
            raise RunError(f"the best trial ({best['trial']}) ran on {best.get('host', 'another machine')}, and its "
                           f"run folder {path} is not here: share the study folder between machines, or open it there.")
        return Run(path)

    def _require_best(self) -> dict[str, Any]:
        best = self.best
        if best is None:
            raise RunError(f"study {self.path} has no completed trial yet; run `zoo tune` again to continue it.")
        return best


# -- the record ----------------------------------------------------------------------------------------


def counts(trial: Any) -> bool:
    """Whether an optuna trial uses a place in the budget: it ran or runs (an interrupted or surplus
    trial, or one queued to run again, does not)."""
    if trial.state.name in ("COMPLETE", "PRUNED", "RUNNING"):
        return True
    return trial.state.name == "FAIL" and trial.user_attrs.get("fail_kind") not in ("interrupted", "surplus")


def _state(trial: Any) -> str:
    state = trial.state.name.lower()
    if state == "fail":
        return trial.user_attrs.get("fail_kind", "failed")
    return {"complete": "complete", "pruned": "pruned", "running": "running", "waiting": "waiting"}.get(state, state)


def trial_rows(trials: list[Any], spec: StudySpec) -> list[dict[str, Any]]:
    """One row per optuna ``FrozenTrial``: ``trial``, ``state`` (complete, pruned, failed, interrupted,
    running, waiting), the metric, each parameter, ``epochs``, ``seconds``, ``reason``, ``run``, ``host``."""
    names = list(spec.space.get("params", {}))
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        value = t.value if t.value is not None else (t.intermediate_values.get(t.last_step)
                                                     if t.last_step is not None else None)
        seconds = t.duration.total_seconds() if t.duration is not None else None
        worker = t.user_attrs.get("worker") or {}
        row = {"trial": t.number, "state": _state(t), spec.monitor: value,
               **{f"param_{n}": t.params.get(n) for n in names},
               "epochs": t.last_step, "seconds": round(seconds, 2) if seconds is not None else None,
               "reason": t.user_attrs.get("fail_reason", "") or (f"pruned at epoch {t.last_step}"
                                                                  if t.state.name == "PRUNED" else ""),
               "run": t.user_attrs.get("run", ""), "host": worker.get("host", "")}
        rows.append(row)
    return rows


def _best(trials: list[Any], spec: StudySpec) -> Any | None:
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)]
    if not done:
        return None
    sign = -1 if spec.direction == "maximize" else 1
    return min(done, key=lambda t: (sign * t.value, t.number))


def write_records(study_dir: StudyDir, spec: StudySpec, trials: list[Any], *, keep: int = 1) -> dict[str, Any] | None:
    """Rewrite ``trials.csv`` and ``best.json``, point ``best`` at the best trial's run folder, give
    that run's card the section that says how it was found, and drop the weights of finished trials
    that are not among the best ``keep`` (their records stay). Call it under the study's lock.

    Returns:
        The best trial's record (``best.json``), or None before a trial completes.
    """
    rows = trial_rows(trials, spec)
    text = io.StringIO()
    if rows:
        writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    with atomic_write(study_dir.table, "w") as fh:
        fh.write(text.getvalue())
    best = _best(trials, spec)
    _drop_weights(study_dir, spec, trials, keep)
    if best is None:
        return None
    counts = {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "failed", "interrupted",
                                                            "running")}
    record = {"trial": best.number, "value": best.value, "metric": spec.monitor, "params": best.params,
              "config": best.user_attrs.get("config"), "run": best.user_attrs.get("run", ""),
              "host": (best.user_attrs.get("worker") or {}).get("host", ""), "trials": counts,
              "sampler": spec.sampler, "pruner": spec.pruner, "study": spec.name}
    write_json(study_dir.best, record)
    run_path = study_dir.path / record["run"]
    if record["run"] and run_path.is_dir():
        _link(study_dir.best_link, Path(record["run"]))
        best_run = RunDir(run_path)
        if not best_run.plots() and best_run.summary.is_file():  # trials draw no plots: the best gets them
            from .plots import write_plots

            write_plots(best_run, best_run.read_history(), best_run.read_summary())
        _card_section(best_run, spec, record, len(rows))
    return record


def _drop_weights(study_dir: StudyDir, spec: StudySpec, trials: list[Any], keep: int) -> None:
    """The weights of finished trials outside the best ``keep`` go; a trial once out never comes back in
    (finished values do not change), so concurrent workers cannot drop one that another keeps."""
    done = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)]
    sign = -1 if spec.direction == "maximize" else 1
    kept = {t.number for t in sorted(done, key=lambda t: (sign * t.value, t.number))[:max(1, keep)]}
    for t in trials:
        if not t.state.is_finished() or not t.user_attrs.get("run"):
            continue
        folder = study_dir.path / t.user_attrs["run"]
        for name in HEAVY_FILES[1:] if t.number in kept else HEAVY_FILES:  # no trial is resumed: no checkpoint
            (folder / name).unlink(missing_ok=True)


def _link(link: Path, target: Path) -> None:
    """``link`` -> ``target`` (relative), replaced atomically."""
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp, target_is_directory=True)
    os.replace(tmp, link)


def _card_section(run_dir: RunDir, spec: StudySpec, best: dict[str, Any], total: int) -> None:
    """The best run's card says how it was found: the study, sampler, pruner, trials, space, values."""
    if not run_dir.card.is_file():
        return
    from .search_space import SearchSpace

    space = SearchSpace.from_dict(spec.space)
    counts = ", ".join(f"{n} {s}" for s, n in best["trials"].items() if n)
    values = ", ".join(f"{k}={_short(v)}" for k, v in best["params"].items())
    pruner = f" and the {spec.pruner} pruner" if spec.pruner != "none" else ""
    lines = [CARD_BEGIN, "## How it was found", "",
             f"Trial {best['trial']} of the hyper-parameter study `{spec.name}` (`zoo tune`, on "
             f"{socket.gethostname()}): the best of {total} trials ({counts}) by validation {spec.metric} "
             f"({best['value']:.4f}), searched with the {spec.sampler} sampler (seed {spec.sampler_seed}){pruner}.",
             "", f"Search space ({space.source}):", ""]
    lines += [f"- {line}" for line in space.describe()]
    lines += ["", f"This trial's values: {values}.", "",
              "The validation part chose these values; the test part of the data was not used during the search.",
              "", f"Study command: `{spec.command}`", CARD_END]
    text = run_dir.card.read_text("utf-8")
    if CARD_BEGIN in text:
        text = text[:text.index(CARD_BEGIN)].rstrip("\n") + text[text.index(CARD_END) + len(CARD_END):]
    with atomic_write(run_dir.card, "w") as fh:
        fh.write(text.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- plots ---------------------------------------------------------------------------------------------


def write_study_plots(study_dir: StudyDir, study: Any, spec: StudySpec) -> list[Path]:
    """optuna's matplotlib figures as PNGs in ``plots/``: ``history.png`` (each trial's value and the
    best so far), ``importances.png`` (parameter importances, fANOVA), ``slice.png`` (value against each
    parameter) and, when trials reported per-epoch values, ``intermediate.png``. A figure that needs
    more completed trials than the study has is left out. Nothing without matplotlib.

    Args:
        study: the ``optuna.Study``.
        spec: its definition (the metric names the axes).
    """
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    import functools
    import warnings

    from optuna.visualization import matplotlib as vis

    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state.name == "COMPLETE"]
    named = functools.partial
    figures = {"history": named(vis.plot_optimization_history, target_name=spec.monitor),
               "slice": named(vis.plot_slice, target_name=spec.monitor)}
    if len(done) >= 2 and done[0].params:
        figures["importances"] = named(vis.plot_param_importances, target_name=spec.monitor)
    if any(t.intermediate_values for t in trials):
        figures["intermediate"] = vis.plot_intermediate_values
    written = []
    study_dir.plots.mkdir(parents=True, exist_ok=True)
    for name, plot in figures.items() if done else ():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # optuna marks its matplotlib figures experimental
            try:
                axes = plot(study)
            except (ValueError, RuntimeError, ZeroDivisionError):  # too few distinct trials for this figure
                continue
        fig = (axes.flat[0] if hasattr(axes, "flat") else axes).get_figure()
        path = study_dir.plots / f"{name}.png"
        with atomic_write(path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
