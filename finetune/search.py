"""``tune``: a hyper-parameter search over fine-tuning or from-scratch training, on optuna.

Owns ``SearchConfig`` (sampler, trials, timeout, metric, pruner, seed, jobs, storage, space file),
``tune`` (check the space, make the split once, start or continue the study in its folder, run its
trials in this process or ``jobs`` processes, record it) and ``report_study`` (rewrite a study's
table, best trial and plots from its storage). Every trial is a normal run of the one training loop
(``fit`` or ``train_scratch``) on the split the study saved once; the validation part judges the
trials and the test part is never used (a folder's ``test/`` is left out of the split; a built-in
data set holds validation out of its training part, ``hold_out=True``). The optuna side is in
``zoo.finetune.trials``; the folder and its record in ``zoo.finetune.study``. optuna is imported only
when a study runs: ``import zoo.finetune`` does not load it.
May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from zoo.errors import ConfigError, RunError, close_matches

from .config import FinetuneConfig
from .search_space import SearchSpace, builtin_space, check_space, read_space, valid_names
from .study import Study, StudyDir, StudySpec, write_records, write_study_plots
from .study_progress import StudyProgress

__all__ = ["tune", "report_study", "SearchConfig", "SAMPLERS", "PRUNERS", "METRICS", "DEFAULT_TRIALS",
           "STUDIES_FOLDER"]

SAMPLERS = ("grid", "random", "tpe", "gp")
PRUNERS = ("none", "median", "hyperband")
METRICS = ("accuracy", "loss")
DEFAULT_TRIALS = 20  # when neither trials nor a timeout is given (a grid runs its whole size)
STUDIES_FOLDER = Path("studies")


@dataclass(frozen=True)
class SearchConfig:
    """How a study searches. Every field is a ``zoo tune`` option of the same name."""

    sampler: str = "tpe"  # grid, random, tpe or gp (TPE and the Gaussian process are the Bayesian ones)
    trials: int | None = None  # trials in the study (None: 20, a grid's size for grid, or no limit with a timeout)
    timeout: float | None = None  # seconds after which this command starts no new trial
    metric: str = "accuracy"  # validation accuracy (maximised) or validation loss (minimised)
    pruner: str = "none"  # none, median or hyperband, fed each epoch's validation figure
    seed: int = 0  # seeds the sampler and the trials (split, weights, order)
    sampler_seed: int | None = None  # the sampler's own seed when it must differ from seed
    jobs: int = 1  # trials at a time on this machine, each in a process of its own
    storage: str | None = None  # optuna RDB URL or journal file (None: the study folder's journal.log)
    space: str | None = None  # a TOML or JSON space file (None: the built-in space)
    name: str | None = None  # the study's name in the storage (None: the folder's name)
    keep: int = 1  # trials that keep their weights (the best ones)
    plots: bool = True  # write the study's PNG plots at the end

    def __post_init__(self) -> None:
        for option, value, valid in (("sampler", self.sampler, SAMPLERS), ("pruner", self.pruner, PRUNERS),
                                     ("metric", self.metric, METRICS)):
            if value not in valid:
                hint = close_matches(str(value), valid)
                raise ConfigError(f"{option} must be one of {', '.join(valid)}, got {value!r}"
                                  f"{f' (did you mean {hint[0]}?)' if hint else ''}.", option=option, valid=valid)
        for option, value in (("trials", self.trials), ("jobs", self.jobs), ("keep", self.keep)):
            if value is not None and value < 1:
                raise ConfigError(f"{option} must be at least 1, got {value}.", option=option)
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"timeout must be a positive number of seconds, got {self.timeout}.", option="timeout")


def tune(target: str, data: str | Path, config: FinetuneConfig | None = None, *, search: SearchConfig | None = None,
         kind: str | None = None, out: str | Path | None = None, data_root: str | Path | None = None,
         progress: bool | None = None, command: str | None = None, **options: Any) -> Study:
    """Search hyper-parameters for fine-tuning ``target`` on ``data``, or for training it from scratch.

    Args:
        target: a model to fine-tune (``resnet18``) or a reference architecture to train from scratch
            (``lenet``, ``mlp_relu``).
        data: a folder of class folders, or (from scratch) ``fashion-mnist``, ``mnist``, ``cifar10``.
        config: the base options of every trial (``FinetuneConfig``); the space's values go over them.
        search: how to search (``SearchConfig``); its fields may also be given as keywords.
        kind: ``finetune`` or ``scratch``; default: scratch for a built-in data set or an architecture
            without weights (``lenet``, ``lenet.scratch``), else finetune.
        out: the study folder (default ``studies/<target>-<data name>``); rerunning with the same
            folder continues the study.
        data_root: where the built-in data sets live.
        progress: default (None): a line per trial always and a bar on a terminal; False: nothing.
        command: the command line to record.
        **options: ``SearchConfig`` fields (``sampler="gp"``, ``trials=30``...) and ``FinetuneConfig`` or
            loop options for the base config (``strategy="full"``, ``device="cuda"``); ``seed`` seeds both.

    Returns:
        The ``Study``: ``study.best`` (``best.json``), ``study.best_run`` (opens with ``zoo.load``).

    Raises:
        ConfigError: a bad option or space file (before any trial runs).
        RunError: ``out`` holds another study (its options differ), or a worker process failed.
        DataError: the data cannot be used.
        KeyboardInterrupt: after marking the running trials interrupted; rerun to continue.

    Example:
        >>> study = zoo.finetune.tune("resnet18", "photos/", sampler="tpe", trials=30)   # doctest: +SKIP
        >>> study.best["params"], zoo.load(study.best_run.path)                          # doctest: +SKIP
    """
    _require_optuna()
    search, base_options = _split_options(search, options)
    kind = kind or _guess_kind(target, data)
    if kind not in ("finetune", "scratch"):
        raise ConfigError(f"kind must be finetune or scratch, got {kind!r}.", option="kind", valid=["finetune",
                                                                                                   "scratch"])
    base, builder, arch_kwargs = _base_config(kind, target, data, config, base_options, search.metric)
    space = None
    if search.space:  # a bad file, or a value the runs would refuse, fails before anything is made
        space = read_space(search.space, valid_names(kind, strategy=base.strategy, builder=builder))
        space = dataclasses.replace(space, arch_defaults=arch_kwargs)
        check_space(base, space)
    study_dir = StudyDir(out if out is not None else _default_out(target, data))
    data_text = str(data) if kind == "scratch" and str(data).lower() in _builtin() else str(Path(data).resolve())
    split, test_images = _study_split(study_dir, kind, data_text, base)
    if space is None:  # the built-in space, less the options the caller fixed
        space = _default_space(kind, target, base, builder, arch_kwargs, split)
        given = set(base_options) - {"seed"}
        space = dataclasses.replace(space, params=tuple(p for p in space.params if p.name not in given))
        check_space(base, space)
    spec = _spec(study_dir, search, kind, target, data_text, base, space, data_root, command, test_images)
    if kind == "finetune" and base.strategy == "linear" and base.cache_features and split is not None:
        _warm_features(target, split, base, progress)
    return _run_study(study_dir, spec, search, progress)


# -- set-up ------------------------------------------------------------------------------------------------


def _require_optuna() -> None:
    import importlib.util

    if importlib.util.find_spec("optuna") is None:
        raise RunError("a hyper-parameter search needs optuna, an optional dependency: pip install 'zoo[tune]' (or "
                       "pip install optuna scipy).")


def _split_options(search: SearchConfig | None, options: dict[str, Any]) -> tuple[SearchConfig, dict[str, Any]]:
    fields = {f.name for f in dataclasses.fields(SearchConfig)}
    mine = {k: v for k, v in options.items() if k in fields}
    rest = {k: v for k, v in options.items() if k not in fields or k == "seed"}
    search = dataclasses.replace(search, **mine) if search is not None else SearchConfig(**mine)
    return search, rest


def _builtin() -> tuple[str, ...]:
    from .datasets import BUILTIN

    return BUILTIN


def _guess_kind(target: str, data: str | Path) -> str:
    from zoo.archs import BUILDERS

    if str(data).lower() in _builtin() or target.endswith(".scratch") or target in BUILDERS:
        return "scratch"
    return "finetune"


def _arch(target: str) -> tuple[str, dict[str, Any]]:
    """The builder and entry options of a reference architecture (``lenet``, ``lenet.scratch``)."""
    from zoo.registry import catalog

    name = target if "." in target else f"{target}.scratch"
    cat = catalog()
    if name in cat:
        entry = cat.get(name)
        return entry.architecture.builder, dict(entry.architecture.kwargs)
    return target, {}


def _base_config(kind: str, target: str, data: str | Path, config: FinetuneConfig | None, options: dict[str, Any],
                 metric: str) -> tuple[FinetuneConfig, str | None, dict[str, Any]]:
    """The options every trial starts from, the builder (from scratch) and its entry's options."""
    # Trials judge by the study's metric (and keep that epoch's weights); plots are drawn for the best only.
    fixed = {"monitor": "val_acc" if metric == "accuracy" else "val_loss"}
    if kind == "scratch":
        from .scratch import folder_config, scratch_config

        # On a folder, trials start where a run with no flags starts: what the space and the caller leave
        # out (epochs, batch size, early stopping, augmentation) each trial chooses from the data, with
        # fine-tuning's optimizer. A recipe's schedule is for its data set of tens of thousands of images.
        default = scratch_config if str(data).lower() in _builtin() else folder_config
        base = config.with_options(**options) if config is not None else default(target, **options)
        # A built-in data set's validation part comes out of its training part: the test split stays unseen.
        base = dataclasses.replace(base, hold_out=True, plots=False).with_options(**fixed)
        builder, kwargs = _arch(target)
        return base, builder, kwargs
    # What the space does not set (batch size, warm-up, early stopping...) each trial's run chooses from the
    # data, as a run with no flags does.
    base = (config or FinetuneConfig()).with_options(**options).with_options(plots=False, **fixed)
    return base, None, {}


def _default_out(target: str, data: str | Path) -> Path:
    name = str(data).lower() if str(data).lower() in _builtin() else Path(data).expanduser().resolve().name
    return STUDIES_FOLDER / f"{target.split('.')[0]}-{name}"


def _study_split(study_dir: StudyDir, kind: str, data: str, base: FinetuneConfig) -> tuple[Any, int]:
    """A folder's split, made once and saved in the study (train and val only); (None, 0) for a built-in
    data set, whose validation part the trials hold out themselves."""
    from .data import load_split, scan

    if kind == "scratch" and data.lower() in _builtin():
        return None, 0
    if study_dir.split.is_file():  # made by the first run (perhaps on another machine, the data elsewhere)
        return load_split(study_dir.split, root=data), 0
    split = scan(data, valid_pct=base.valid_pct, seed=base.seed)
    test_images = len(split.test)
    # The test part is never read by a trial: it is not in the split the trials get.
    split = dataclasses.replace(split, parts={p: split.parts[p] for p in ("train", "val")})
    split.save(study_dir.split)
    return split, test_images


def _default_space(kind: str, target: str, base: FinetuneConfig, builder: str | None, arch_kwargs: dict[str, Any],
                   split: Any) -> SearchSpace:
    if kind == "scratch":
        from .recipes import recipe_for

        recipe = {**recipe_for(builder).config, "epochs": base.epochs, "lr": base.lr,
                  "optimizer": base.train.optimizer}
        return builtin_space("scratch", builder=builder, recipe=recipe, arch_defaults=arch_kwargs,
                             n_train=len(split.train) if split is not None else None)
    layers = None
    if base.strategy == "partial":
        from zoo.factory import load

        from .strategies import layer_groups

        groups = layer_groups(load(target, pretrained=base.pretrained), 4)
        layers = [group[0][0] for group in groups[1:]]  # unfreeze the last three quarters, half or quarter
    return builtin_space("finetune", strategy=base.strategy, layers=layers)


def _spec(study_dir: StudyDir, search: SearchConfig, kind: str, target: str, data: str, base: FinetuneConfig,
          space: SearchSpace, data_root: Any, command: str | None, test_images: int) -> StudySpec:
    """The study's definition: a new one is written to ``study.json``; an existing one must match."""
    budget = search.trials
    if search.sampler == "grid":
        budget = min(budget or space.grid_size(), space.grid_size())
    elif budget is None and search.timeout is None:
        budget = DEFAULT_TRIALS
    spec = StudySpec(name=search.name or study_dir.path.resolve().name, kind=kind, target=target, data=data,
                     config=base.to_dict(), space=space.to_dict(), sampler=search.sampler, pruner=search.pruner,
                     metric=search.metric, seed=base.seed, storage=search.storage or str(study_dir.journal.resolve()),
                     sampler_seed=search.sampler_seed if search.sampler_seed is not None else search.seed,
                     budget=budget, keep=search.keep, data_root=str(data_root) if data_root is not None else None,
                     command=command or f"zoo.finetune.tune({target!r}, {data!r}, ...)", test_images=test_images)
    if study_dir.spec.is_file():
        spec = _continue(study_dir, spec, search)
    from zoo._io import write_json

    write_json(study_dir.spec, spec.to_dict())
    return spec


def _continue(study_dir: StudyDir, spec: StudySpec, search: SearchConfig) -> StudySpec:
    stored = Study(study_dir.path).spec
    mine, theirs = spec.identity(), stored.identity()
    changed = [k for k in mine if mine[k] != theirs[k]]
    if changed:
        what = "; ".join(f"{k} {theirs[k]!r} there, {mine[k]!r} here" for k in changed if k not in ("config", "space"))
        what = what or f"its {' and '.join(changed)} differ"
        raise RunError(f"{study_dir.path} holds another study ({what}). Rerun with that study's options to continue "
                       "it, or pass another --out for a new study.")
    if search.storage is not None and search.storage != stored.storage:
        raise RunError(f"{study_dir.path} keeps its trials in {stored.storage}, not {search.storage}; drop --storage "
                       "or pass another --out.")
    budget = spec.budget if search.trials is not None or search.timeout is not None else stored.budget
    return dataclasses.replace(stored, budget=budget, keep=spec.keep, data=spec.data, data_root=spec.data_root)


def _warm_features(target: str, split: Any, base: FinetuneConfig, progress: bool | None) -> None:
    """The linear strategy's features, computed once before the trials (each trial then reads them)."""
    from .fit import setup

    setup(target, split, base, progress=bool(progress) and sys.stderr.isatty())


# -- running -----------------------------------------------------------------------------------------------


def _run_study(study_dir: StudyDir, spec: StudySpec, search: SearchConfig, progress: bool | None) -> Study:
    from .trials import Worker, open_study, work

    study = open_study(spec)
    _check_storage_spec(study, spec)
    show = StudyProgress(spec, enabled=progress is not False)
    show.start(study.get_trials(deepcopy=False), jobs=search.jobs, timeout=search.timeout)
    deadline = time.time() + search.timeout if search.timeout else None
    try:
        if search.jobs == 1:
            worker = Worker(spec, study_dir, study, budget=spec.budget, deadline=deadline, keep=search.keep)
            worker.on_trial = lambda: show.update(study.get_trials(deepcopy=False))
            work(worker)
        else:
            _run_processes(study_dir, spec, search, study, show, deadline)
    finally:
        with FileLock(study_dir.lock):
            write_records(study_dir, spec, study.get_trials(deepcopy=False), keep=search.keep)
        show.update(study.get_trials(deepcopy=False))
        show.close()
    if search.plots:
        write_study_plots(study_dir, study, spec)
    return Study(study_dir.path)


def _check_storage_spec(study: Any, spec: StudySpec) -> None:
    """The storage holds the study's definition: a worker joining from another machine must match it."""
    stored = study.user_attrs.get("zoo_study")
    mine = spec.identity()
    if stored is None:
        study.set_user_attr("zoo_study", mine)
    elif stored != mine:
        changed = sorted(k for k in mine if stored.get(k) != mine[k])
        raise RunError(f"study {spec.name!r} in {spec.storage} was started with other options ({', '.join(changed)} "
                       "differ); run the same command as its other workers, or pass --name for a new study.")


def _run_processes(study_dir: StudyDir, spec: StudySpec, search: SearchConfig, study: Any, show: StudyProgress,
                   deadline: float | None) -> None:
    """``search.jobs`` worker processes (spawned: each its own interpreter, threads and GPU), watched
    from here; Ctrl-C reaches them too and each marks its running trial interrupted."""
    import multiprocessing

    import torch

    from .trials import worker_main

    ctx = multiprocessing.get_context("spawn")
    errors = ctx.Queue()
    threads = max(1, (os.cpu_count() or 1) // search.jobs)
    gpus = torch.cuda.device_count() if spec.config["train"].get("device") != "cpu" else 0
    procs = [ctx.Process(target=worker_main, args=(spec.to_dict(), str(study_dir.path), i),
                         kwargs=dict(budget=spec.budget, deadline=deadline, keep=search.keep, threads=threads,
                                     device=i % gpus if gpus else None, parent=os.getpid(), errors=errors),
                         name=f"zoo-tune-{i}") for i in range(search.jobs)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            show.update(study.get_trials(deepcopy=False))
            time.sleep(1.0)
    except KeyboardInterrupt:
        _stop(procs)
        raise
    messages = []
    while not errors.empty():
        messages.append(errors.get())
    if messages or any(p.exitcode not in (0, None) for p in procs):
        why = "; ".join(messages) or f"exit codes {[p.exitcode for p in procs]}"
        raise RunError(f"a worker of study {study_dir.path} stopped: {why}. Its trial is marked interrupted once a "
                       "worker notices; rerun the command to continue.")


def _stop(procs: list[Any]) -> None:
    """After Ctrl-C: the workers got it too and finish their step; a second signal, then a kill, for
    those that do not end."""
    import signal

    for wait, action in ((30.0, None), (10.0, signal.SIGINT), (5.0, signal.SIGKILL)):
        deadline = time.time() + wait
        while time.time() < deadline and any(p.is_alive() for p in procs):
            time.sleep(0.2)
        alive = [p for p in procs if p.is_alive()]
        if not alive:
            return
        if action is not None:
            for p in alive:
                os.kill(p.pid, action)


def report_study(path: str | Path, *, plots: bool = True) -> Study:
    """Rewrite a study's ``trials.csv``, ``best.json`` and plots from its storage (as they stand, even
    while workers run) and return it.

    Raises:
        RunError: ``path`` is not a study folder.
    """
    from .trials import open_study

    _require_optuna()
    found = Study(path)
    study = open_study(found.spec)
    with FileLock(found.dir.lock):
        write_records(found.dir, found.spec, study.get_trials(deepcopy=False), keep=found.spec.keep)
    if plots:
        write_study_plots(found.dir, study, found.spec)
    return Study(path)
