"""Registering a finished run as a local registry entry, so ``zoo list --source local`` shows it and
``zoo.load(name)`` loads it.

Owns: ``register_run`` and ``registered_copy``. The run's model, record and card are copied into the
cache (``$ZOO_HOME/runs/<name>/``) and the entry points at that copy, with its sha256: a registered
model is something others load by name, so it must not break when its working folder is moved,
renamed or deleted (a checksum-only entry would only say it broke and ask for a new ``zoo register``).
The entry is built as a ``zoo.registry.schema.Entry`` and written through the schema's own serialiser
(``write_entries``), which reads it back with the registry's parser before it writes. May import ``zoo``
and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from zoo import store
from zoo._io import file_digest
from zoo.errors import RegistryError, RunError
from zoo.registry import env
from zoo.registry.records import Architecture, Checksum, Entry, FileSpec, Head, Metric, Preprocessing, Source
from zoo.registry.schema import NAME_RE
from zoo.registry.serialiser import write_entries

from .run import Run, load_run
from .rundir import RunDir

__all__ = ["register_run", "registered_copy"]

_NAME_PART = re.compile(r"[^a-z0-9_\-]+")


def _entry_name(run: Run, name: str | None) -> str:
    if name is None:
        arch = _NAME_PART.sub("-", run.path.resolve().name.lower()).strip("-_") or "run"
        name = f"{arch}.local"
    name = name.lower()
    if "." not in name:
        name = f"{name}.local"
    if not NAME_RE.match(name):
        raise RegistryError(f"{name!r} is not a valid entry name: use 'arch.tag' in lower case (letters, digits, "
                            "'_' and '-'), e.g. 'flowers.ft1'.")
    return name


def registered_copy(name: str) -> RunDir:
    """Where the registered copy of entry ``name`` lives: ``$ZOO_HOME/runs/<name>``."""
    return RunDir(store.registered_run_path(name))


def _copy_run(run: Run, target: RunDir) -> None:
    """Copy the files that make the run loadable and documented (not its checkpoint or plots) into
    ``target``, replacing an earlier copy only once the new one is complete."""
    target.path.parent.mkdir(parents=True, exist_ok=True)
    staging = RunDir(tempfile.mkdtemp(prefix=f".{target.path.name}-", dir=target.path.parent))
    try:
        for src, dst in zip(_kept(run.dir), _kept(staging), strict=True):
            if src.is_file():
                shutil.copyfile(src, dst)
        old = target.path.with_name(f".{target.path.name}.old")
        if target.path.exists():
            shutil.rmtree(old, ignore_errors=True)
            target.path.rename(old)
        staging.path.rename(target.path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging.path, ignore_errors=True)


def _kept(rd: RunDir) -> list[Path]:
    return [rd.config, rd.model_info, rd.weights, rd.summary, rd.card, rd.split, rd.skipped, rd.history]


def _preprocessing(run: Run, info: dict) -> Preprocessing:
    pre = info.get("preprocessing") or (run.record.get("base") or {}).get("preprocessing")
    if not pre:
        raise RunError(f"{run.path} records no preprocessing; it cannot be registered.")
    # A Caffe mean file is a role of the base entry, not of this one.
    pre = {k: (tuple(v) if isinstance(v, list) else v) for k, v in pre.items() if v is not None and k != "mean_file"}
    return Preprocessing(**pre)


def _metrics(run: Run) -> tuple[Metric, ...]:
    summary = run.dir.read_summary() or {}
    strategy = (run.record.get("config") or {}).get("strategy", "")
    how = "from scratch" if run.kind == "scratch" else f"fine-tuned {strategy}"
    return tuple(Metric(dataset=f"{run.data.get('name')}/{part}", metric="top1",
                        value=round(100 * float(summary[part]["accuracy"]), 3), protocol=how,
                        source=str(run.path.resolve()))
                 for part in ("val", "test") if part in summary)


def register_run(path: str | Path, *, name: str | None = None, force: bool = False) -> tuple[str, Path]:
    """Write a local registry entry for a finished run.

    The entry file goes to ``<config dir>/registry/<name>.json`` (``zoo.registry.env.config_dir``); the
    run's model, record and card are copied to ``$ZOO_HOME/runs/<name>/`` and the entry's weights
    source is that copy's ``model.safetensors`` (a ``file://`` URL) with its sha256. Moving or deleting
    the run folder afterwards leaves the entry working.

    Args:
        path: the run folder (fine-tuned or from scratch).
        name: the entry name (``arch.tag``; a bare word gets ``.local``); default from the folder name.
        force: replace an entry file this function wrote before for the same name.

    Returns:
        (entry name, entry file).

    Raises:
        RunError: the run is incomplete.
        RegistryError: a bad name, or the name is taken by another entry.

    Example:
        >>> register_run("runs/photos", name="photos.ft1")         # doctest: +SKIP
        ('photos.ft1', PosixPath('~/.config/zoo/registry/photos.ft1.json'))
    """
    from zoo.registry import catalog

    run = load_run(path)
    entry_name = _entry_name(run, name)
    target = env.config_dir() / "registry" / f"{entry_name}.json"
    existing = catalog().resolve(entry_name)
    if existing is not None and not (force and target.is_file()):
        raise RegistryError(f"the name {entry_name!r} is already taken"
                            f"{' by ' + existing if existing != entry_name else ''}; pass another --name"
                            f"{' or --force to replace your own entry' if target.is_file() else ''}.")
    info = json.loads(run.dir.model_info.read_text("utf-8"))
    preprocessing = _preprocessing(run, info)
    copy = registered_copy(entry_name)
    _copy_run(run, copy)
    weights = copy.weights.resolve()
    base = run.record.get("base") if isinstance(run.record.get("base"), dict) else {}
    # Fine-tuned weights inherit the base weights' licence; weights trained from scratch inherit none.
    license_ = (base.get("license") or "unknown") if base.get("pretrained", True) else "unknown"
    strategy = (run.record.get("config") or {}).get("strategy", "?")
    how = "trained from scratch" if run.kind == "scratch" else f"fine-tuned ({strategy})"
    entry = Entry(
        name=entry_name, architecture=Architecture(library="run", builder=str(copy.path.resolve())),
        files=(FileSpec(role="weights", filename=weights.name, format="safetensors",
                        sources=(Source(url=weights.as_uri()),),
                        checksum=Checksum(algorithm="sha256", value=file_digest(weights), trust="local"),
                        size=weights.stat().st_size),),
        license=license_, preprocessing=preprocessing,
        head=Head(num_classes=len(run.classes), labels=tuple(run.classes)), metrics=_metrics(run),
        description=f"{run.base or '?'} {how} on {run.data.get('name', '?')}.",
        origin=str(run.path.resolve()), recipe=run.command,
        tags=("fine-tuned" if run.kind == "finetune" else "from-scratch", "local"),
        license_note=("" if license_ != "unknown" else "trained from random weights: no inherited licence"
                      if run.kind == "scratch" else "inherits the base model's licence, which its entry does not name"))
    # The serialiser reads the text back with the registry's own parser before it writes: a broken file in
    # the user registry would be skipped by every `zoo list`.
    write_entries(target, [entry], collection="local")
    return entry_name, target
