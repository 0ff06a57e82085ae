"""The optuna side of a study: its storage, sampler and pruner, and the worker that claims trials and
runs each as a normal run of the one training loop.

Owns ``open_study`` (``optuna.create_study`` on the spec's storage, sampler and pruner), ``Worker``
and ``work`` (claim a trial, run it, record it; until the budget, the timeout or Ctrl-C) and
``worker_main`` (the same in a process of its own, for ``--jobs``). Only a study imports this module,
so ``import zoo.finetune`` never loads optuna.

How trials stay exact when several processes (or machines) share one storage: a worker claims a
trial under the study folder's file lock, counting the trials that ran or run (complete, pruned,
failed, running) against the budget before it asks optuna for one. A machine that does not share
the folder is caught by rank: a claimed trial numbered past the budget among the counted ones is
given back unrun (state ``surplus``). A trial whose process is gone (same host: its pid ended; any
host: no heartbeat for ``STALE_SECONDS``) is marked ``interrupted`` and its parameters are queued to
run again, so a SIGKILL loses only the trials that were running, and the rerun command redoes them.
May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from optuna.trial import TrialState

from zoo.errors import ZooError

from .config import FinetuneConfig
from .data import Split, load_split
from .loop import StopTraining
from .search_space import SearchSpace, trial_config
from .study import StudyDir, StudySpec, counts, write_records

__all__ = ["open_study", "make_storage", "Worker", "work", "worker_main", "TrialReporter",
           "HEARTBEAT_SECONDS", "STALE_SECONDS"]

HEARTBEAT_SECONDS = 30.0  # a running trial's worker stamps it this often
STALE_SECONDS = 600.0  # a trial whose stamp is older is taken as lost (its machine stopped)
# A trial that raises one of these failed (a value the run refused, out of memory...); the study goes on.
TRIAL_ERRORS = (ZooError, RuntimeError, ValueError, FloatingPointError, OverflowError, MemoryError)
_HOST = socket.gethostname()


class _GridSampler(optuna.samplers.GridSampler):
    """optuna's grid sampler without its stop at the end of the grid: ``after_trial`` calls
    ``study.stop()``, which works only inside ``study.optimize``; a worker here ends on the budget,
    which for a grid is its size."""

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None


def make_storage(url: str) -> Any:
    """An RDB storage for a URL (``sqlite:///study.db``, ``postgresql://...``), else an optuna journal
    file at that path."""
    if "://" in url:
        return _rdb_storage(url)
    from optuna.storages.journal import JournalFileBackend

    Path(url).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(Path(url).expanduser())))


def _rdb_storage(url: str, attempts: int = 5) -> Any:
    """``optuna.storages.RDBStorage`` for ``url``. Workers that start together on a new database race
    to create its tables and version row, and the losers get an integrity or "already exists" error:
    they try again, and then find the schema made."""
    import random

    from sqlalchemy.exc import DBAPIError

    # SQLite: writers wait for each other up to a minute instead of failing at once.
    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    for attempt in range(attempts - 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except DBAPIError:
            time.sleep(0.2 + random.random() * (attempt + 1))  # apart, so the next try does not race again
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def _startup(spec: StudySpec) -> int:
    """Random trials before TPE or GP model the results: a fifth of the budget, between 3 and 10
    (optuna's default, 10, would spend most of a short study at random)."""
    return 10 if spec.budget is None else max(3, min(10, spec.budget // 5))


def make_sampler(spec: StudySpec, space: SearchSpace, worker: int = 0) -> Any:
    """The spec's sampler. Each worker (``worker``: a number unique to it) draws with a seed of its own:
    with the same seed, workers would propose the same points. Grid search keeps the study's seed,
    which orders the grid that every worker shares."""
    if spec.sampler == "grid":
        return _GridSampler(space.grid(), seed=spec.sampler_seed)
    seed = spec.sampler_seed + 7919 * worker
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=_startup(spec))
    # constant_liar: parallel workers do not all pick the point the model likes best at that moment.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=_startup(spec), multivariate=True,
                                      constant_liar=True)


def make_pruner(spec: StudySpec, max_epochs: int) -> Any:
    if spec.pruner == "median":  # from the second epoch on, once 5 trials have finished
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
    if spec.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, max_epochs), reduction_factor=3)
    return optuna.pruners.NopPruner()


def max_epochs(spec: StudySpec) -> int:
    """The most epochs a trial can run (the space's upper bound, else the base config's)."""
    param = spec.space.get("params", {}).get("epochs")
    if param:
        return int(param.get("high") or max(param.get("choices") or [1]))
    return int(spec.space.get("fixed", {}).get("epochs") or spec.config.get("epochs") or 1)


def open_study(spec: StudySpec, worker: int = 0) -> Any:
    """The ``optuna.Study`` of ``spec`` (made when new) with its sampler and pruner, for worker number
    ``worker`` of this machine."""
    # What optuna would log (each trial's result, its optional speed-ups) the study shows its own way.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = make_storage(spec.storage)
    study = optuna.create_study(storage=storage, study_name=spec.name, direction=spec.direction, load_if_exists=True)
    started_on = study.user_attrs.get("zoo_host")
    if started_on is None:
        study.set_user_attr("zoo_host", _HOST)
    elif started_on != _HOST:  # another machine's workers: their seeds must differ from this one's
        worker += 1 + zlib.crc32(_HOST.encode()) % 100_003
    space = SearchSpace.from_dict(spec.space)
    return optuna.load_study(study_name=spec.name, storage=storage, sampler=make_sampler(spec, space, worker),
                             pruner=make_pruner(spec, max_epochs(spec)))


@dataclass
class Worker:
    """What a worker needs to claim and run trials of one study."""

    spec: StudySpec
    study_dir: StudyDir
    study: Any  # optuna.Study
    budget: int | None = None  # trials in the study (None: until the deadline)
    deadline: float | None = None  # time.time() after which no trial starts
    keep: int = 1  # trials that keep their weights
    parent: int | None = None  # the coordinating process: when it is gone, the worker stops
    on_trial: Callable[[], None] | None = None  # after each trial is recorded (progress)

    def __post_init__(self) -> None:
        self.space = SearchSpace.from_dict(self.spec.space)
        self.base = self.spec.base_config()
        # The study's split, with this machine's path to the data (study.json holds it).
        self.split: Split | None = (load_split(self.study_dir.split, root=self.spec.data)
                                    if self.study_dir.split.is_file() else None)
        self.id = {"host": _HOST, "pid": os.getpid(), "started": _process_start(os.getpid())}


def work(worker: Worker) -> int:
    """Claim and run trials until the budget is spent, the deadline passes or the parent is gone.

    Returns:
        The number of trials this worker ran.

    Raises:
        KeyboardInterrupt: after marking the running trial interrupted (a rerun runs it again).
    """
    ran = 0
    while worker.deadline is None or time.time() < worker.deadline:
        if worker.parent is not None and os.getppid() != worker.parent:
            break
        trial = _claim(worker)
        if trial is None:
            break
        try:
            _run(worker, trial)
        finally:
            with FileLock(worker.study_dir.lock):
                write_records(worker.study_dir, worker.spec, worker.study.get_trials(deepcopy=False),
                              keep=worker.keep)
        ran += 1
        if worker.on_trial is not None:
            worker.on_trial()
    return ran


def _claim(w: Worker) -> Any | None:
    """A new trial of the study, or None when the budget is spent."""
    with FileLock(w.study_dir.lock):
        _reap(w)
        if w.budget is not None and sum(counts(t) for t in w.study.get_trials(deepcopy=False)) >= w.budget:
            return None
        trial = w.study.ask()
        trial.set_user_attr("worker", w.id)
        trial.set_user_attr("heartbeat", time.time())
    if w.budget is not None:
        # Another machine, outside this folder's lock, may have claimed the last place at the same time.
        ranked = sorted(t.number for t in w.study.get_trials(deepcopy=False) if counts(t))
        if trial.number in ranked and ranked.index(trial.number) >= w.budget:
            trial.set_user_attr("fail_kind", "surplus")
            trial.set_user_attr("fail_reason", "claimed after the budget was spent by another worker; not run")
            w.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            return None
    return trial


def _reap(w: Worker) -> None:
    """Running trials whose process is gone: marked interrupted, their parameters queued again."""
    now = time.time()
    for t in w.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner, beat = t.user_attrs.get("worker"), t.user_attrs.get("heartbeat")
        if not owner:
            continue
        if owner["host"] == _HOST and not _alive(owner):
            reason = f"interrupted: its process (pid {owner['pid']}) ended before the trial did"
        elif beat is not None and now - beat > STALE_SECONDS:
            reason = f"interrupted: no heartbeat from {owner['host']} for {now - beat:.0f} s"
        else:
            continue
        # The trial belongs to another process: reach it by its storage id (optuna's own retry
        # callbacks do the same).
        _interrupt(w, optuna.trial.Trial(w.study, t._trial_id), t.number, t.params, reason,
                   local=owner["host"] == _HOST)


def _interrupt(w: Worker, trial: Any, number: int, params: dict[str, Any], reason: str, *, local: bool) -> None:
    """Mark a trial interrupted and queue its parameters to run again; its partial run folder goes."""
    try:
        trial.set_user_attr("fail_kind", "interrupted")
        trial.set_user_attr("fail_reason", reason)
        w.study.tell(number, state=TrialState.FAIL)
    except (RuntimeError, ValueError):  # another worker finished or reaped it first
        return
    w.study.enqueue_trial(params, user_attrs={"retry_of": number})
    if local:
        shutil.rmtree(w.study_dir.trial(number), ignore_errors=True)


def _alive(owner: dict[str, Any]) -> bool:
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process holds the pid now
        return False
    started = _process_start(owner["pid"])
    return started is None or owner.get("started") is None or started == owner["started"]


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), so a reused pid is not taken for the
    worker that had it; None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


class TrialReporter:
    """``on_epoch_end`` callback of a trial's run: reports the monitored value to optuna, stops the run
    when the pruner says so, or when the loss is NaN or infinite (the trial then fails with that
    reason), or when the coordinating process is gone."""

    def __init__(self, trial: Any, monitor: str, *, prune: bool, parent: int | None = None):
        self.trial, self.monitor, self.prune, self.parent = trial, monitor, prune, parent
        self.failure: str | None = None
        self.pruned_at: int | None = None

    def __call__(self, info: dict[str, Any]) -> None:
        row = info["row"]
        if self.parent is not None and os.getppid() != self.parent:
            raise KeyboardInterrupt  # the study's command was killed: stop like Ctrl-C
        bad = next((k for k in ("train_loss", "val_loss") if k in row and not math.isfinite(row[k])), None)
        if bad is not None:
            self.failure = f"diverged: {bad} {row[bad]} at epoch {row['epoch']}"
            raise StopTraining
        value = row.get(self.monitor)
        if value is None:
            return
        self.trial.report(value, row["epoch"])
        if self.prune and self.trial.should_prune():
            self.pruned_at = row["epoch"]
            raise StopTraining


@contextlib.contextmanager
def _heartbeat(trial: Any) -> Iterator[None]:
    """Stamp the trial every ``HEARTBEAT_SECONDS`` while it runs, from a thread (the loop is busy)."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):  # a missed stamp is retried at the next beat
                trial.set_user_attr("heartbeat", time.time())

    thread = threading.Thread(target=beat, name="zoo-tune-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _run(w: Worker, trial: Any) -> None:
    """One trial: its config, a normal run into ``trials/NNNN``, and what optuna is told."""
    params = w.space.suggest(trial)
    out = w.study_dir.trial(trial.number)
    reporter = TrialReporter(trial, w.spec.monitor, prune=w.spec.pruner != "none", parent=w.parent)
    try:
        config = trial_config(w.base, w.space, params).with_options(monitor=w.spec.monitor)
        trial.set_user_attr("run", out.relative_to(w.study_dir.path).as_posix())
        trial.set_user_attr("config", config.to_dict())
        with _heartbeat(trial):
            run = _train(w, config, out, reporter, trial.number)
    except KeyboardInterrupt:
        _interrupt(w, trial, trial.number, trial.params, "interrupted (Ctrl-C or the study's command ended)",
                   local=True)
        raise
    except Exception as err:
        trial.set_user_attr("fail_reason", f"{type(err).__name__}: {' '.join(str(err).split())}")
        w.study.tell(trial, state=TrialState.FAIL)
        if not isinstance(err, TRIAL_ERRORS):
            raise
        return
    if reporter.failure is not None:
        trial.set_user_attr("fail_reason", reporter.failure)
        w.study.tell(trial, state=TrialState.FAIL)
    elif reporter.pruned_at is not None:
        w.study.tell(trial, state=TrialState.PRUNED)
    else:
        w.study.tell(trial, run.summary["val"]["accuracy" if w.spec.metric == "accuracy" else "loss"])


def _train(w: Worker, config: FinetuneConfig, out: Path, reporter: TrialReporter, number: int) -> Any:
    from .fit import fit
    from .scratch import train_scratch

    spec = w.spec
    call = "fit" if spec.kind == "finetune" else "train_scratch"
    command = (f"zoo.finetune.{call}({spec.target!r}, {spec.data!r}, {config!r})  # trial {number} of study "
               f"{w.study_dir.path} (zoo tune)")
    callbacks = {"on_epoch_end": [reporter]}
    if spec.kind == "finetune":
        return fit(spec.target, spec.data, config, out=out, progress=False, command=command, callbacks=callbacks,
                   split=w.split)
    return train_scratch(spec.target, spec.data, config, out=out, progress=False, command=command,
                         data_root=spec.data_root, callbacks=callbacks, split=w.split)


def worker_main(spec: dict[str, Any], folder: str, index: int, *, budget: int | None, deadline: float | None,
                keep: int, threads: int, device: int | None, parent: int, errors: Any) -> None:
    """A worker process of ``--jobs``: its own threads (and GPU, when ``device`` is given), then ``work``.
    An error is put on ``errors`` (a multiprocessing queue) as one line for the parent to report."""
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(device)
    import torch

    torch.set_num_threads(threads)
    try:
        study_spec = StudySpec.from_dict(spec)
        work(Worker(study_spec, StudyDir(folder), open_study(study_spec, index), budget=budget, deadline=deadline,
                    keep=keep, parent=parent))
    except KeyboardInterrupt:
        pass
    except (ZooError, OSError) as err:
        errors.put(f"worker {os.getpid()}: {err}")
    except Exception as err:  # a bug: the parent reports it in one line, with the type
        errors.put(f"worker {os.getpid()}: {type(err).__name__}: {err}")
        raise
