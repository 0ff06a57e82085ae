"""What every run records, fine-tuned or from scratch: the same ``config.json``, the best epoch's
weights, the per-part reports and the finished folder (model, ``metrics.json``, plots, card).

Owns: ``new_record`` (the record a run starts with: its ``FinetuneConfig``, the exact command, the base
model, the data's identity), ``resume_config`` (the stored config with the caller's changes, for
``--resume``), ``BestWeights`` (a loop callback that keeps the best epoch's weights by the monitored
validation metric), ``restore_best``, ``part_reports`` and ``finish_run``. ``fit`` and
``train_scratch`` both end here, so their folders cannot drift apart. May import ``zoo`` and
``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError, RunError
from zoo.model import ZooModel

from .config import FinetuneConfig
from .data import Split
from .loop import TrainResult, evaluate, is_better
from .metrics import classification_report
from .rundir import RunDir

__all__ = ["RECORD_VERSION", "new_record", "base_info", "open_resumed", "resume_config", "folder_identity",
           "BestWeights", "restore_best", "part_reports", "finish_run"]

RECORD_VERSION = 2  # 1: options in "options", no "kind"/"data" (runs before FinetuneConfig)


def new_record(kind: str, *, command: str, model_ref: str | None, base: dict[str, Any], data: dict[str, Any],
               config: FinetuneConfig, plan: dict[str, Any] | None, device: str) -> dict[str, Any]:
    """The ``config.json`` a run starts with.

    Args:
        kind: ``finetune`` or ``scratch``.
        command: the command line (or Python call) that reproduces the run.
        model_ref: the model as the caller named it (None for a model object).
        base: ``name``, ``license``, ``origin``, ``preprocessing``, ``pretrained`` of the starting model.
        data: the data's identity (``folder_identity`` or a built-in data set's).
        config: the run's config with every schedule field chosen.
        plan: ``Plan.describe()``: what trains.
        device: where it ran.
    """
    return {
        "format": "zoo-run", "version": RECORD_VERSION, "kind": kind, "command": command,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": model_ref, "base": base, "data": data, "config": config.to_dict(), "plan": plan,
        "environment": {"torch": torch.__version__, "python": platform.python_version(), "device": device},
    }


def base_info(model: ZooModel, *, pretrained: bool) -> dict[str, Any]:
    """The starting model's name, licence, origin and preprocessing, for the record and the card."""
    entry = getattr(model, "entry", None)
    return {"name": model.base or model.name, "license": getattr(entry, "license", None) or "unknown",
            "origin": getattr(entry, "origin", "") or "", "pretrained": pretrained,
            "preprocessing": asdict(model.preprocessing) if model.preprocessing is not None else None}


def folder_identity(split: Split) -> dict[str, Any]:
    """A folder's identity: where it was, its classes and counts, and one digest over every file's
    path, class and sha256 (the manifest ``split.json`` holds them one by one)."""
    h = hashlib.sha256()
    for part in sorted(split.parts):
        for s in split.parts[part]:
            h.update(f"{part}\t{s.path}\t{s.label}\t{s.sha256}\n".encode())
    return {"kind": "folder", "name": split.root.name, "root": str(split.root), "layout": split.layout,
            "classes": list(split.classes), "sizes": {p: len(v) for p, v in split.parts.items()},
            "sha256": h.hexdigest()}


def open_resumed(out: Any, config: FinetuneConfig | None, changes: dict[str, Any],
                 command: str | None = None) -> tuple[RunDir, FinetuneConfig, dict[str, Any]]:
    """The folder, stored config (with ``changes``) and record of the interrupted run in ``out``, the
    record noting the resume when options changed (``fit`` and ``train_scratch`` alike).

    Raises:
        RunError: no ``out``, nothing to resume there, or a record this zoo cannot read.
        ConfigError: a whole ``config`` given (only changes are), or a change names no option.
    """
    if out is None:
        raise RunError("resume needs the run folder: pass out=... (--out RUN_DIR) of the interrupted run.")
    if config is not None:
        raise ConfigError("resume continues with the stored config; pass only the options to change, as keywords "
                          "(epochs=..., device=...).", option="config")
    run_dir = RunDir(out)
    config, record = resume_config(run_dir, changes)
    if changes:
        record["config"] = config.to_dict()
        note = {"command": command} if command is not None else {}
        record.setdefault("resumed", []).append({**note, "changed": sorted(changes)})
    return run_dir, config, record


def resume_config(run_dir: RunDir, changes: dict[str, Any]) -> tuple[FinetuneConfig, dict[str, Any]]:
    """The stored config of an interrupted run with ``changes`` applied, and its record.

    Raises:
        RunError: nothing to resume (no record or no checkpoint), or a record this zoo cannot read.
        ConfigError: a change names no option.
    """
    if not run_dir.config.is_file():
        raise RunError(f"cannot resume: {run_dir.path} holds no {run_dir.config.name} (no run was started there). "
                       "Start it without --resume.")
    record = run_dir.read_record()
    if record.get("version") != RECORD_VERSION or not isinstance(record.get("config"), dict):
        raise RunError(f"cannot resume: {run_dir.config} was written by another version of the zoo (record "
                       f"version {record.get('version')!r}, this zoo writes {RECORD_VERSION}); start a new run.")
    if not run_dir.checkpoint.is_file():
        raise RunError(f"cannot resume: {run_dir.path} has no {run_dir.checkpoint.name} (the run stopped before its "
                       "first checkpoint). Remove the folder and start again.")
    try:
        config = FinetuneConfig.from_dict(record["config"])
    except ConfigError as err:
        raise RunError(f"cannot resume: {run_dir.config}: {err}") from err
    return config.with_options(**changes), record


class BestWeights:
    """``on_epoch_end`` callback: when an epoch beats every earlier one on the monitored metric, its
    weights go to the run folder,
    so they survive an interruption and ``restore_best`` can put them back at the end. The rule is the
    loop's ``is_better`` (an accuracy tie goes to the lower loss). ``baseline``: a row of epoch 0 whose
    weights are already saved (the head-alone phase of fine-tuning), which an epoch must beat too."""

    def __init__(self, run_dir: RunDir, monitor: str, *, write: bool = True, baseline: dict[str, Any] | None = None):
        self.run_dir, self.monitor, self.write, self.baseline = run_dir, monitor, write, baseline

    def __call__(self, info: dict[str, Any]) -> None:
        row, history = info["row"], info["history"]
        key = self.monitor if self.monitor in row else "train_loss"
        best: dict[str, Any] = {}
        earlier_rows = [r for r in history if r is not row and r["epoch"] < row["epoch"]]
        if self.baseline and key in self.baseline:
            earlier_rows.append(self.baseline)
        for earlier in sorted(earlier_rows, key=lambda r: r["epoch"]):
            if is_better(earlier, best, key):
                best = earlier
        if self.write and is_better(row, best, key):
            self.run_dir.save_best(info["model"], row["epoch"])


def restore_best(run_dir: RunDir, target: nn.Module, result: TrainResult) -> int | None:
    """Load the best epoch's weights (kept by ``BestWeights``) into ``target``; return that epoch (the
    last epoch when the last was best, 0 for a baseline's weights that no epoch beat, None when the run
    trained no epoch)."""
    last = result.history[-1]["epoch"] if result.history else None
    epoch = run_dir.best_epoch()
    if epoch is None or epoch == last:
        return last
    run_dir.load_best(target)
    return epoch


def part_reports(target: nn.Module, parts: dict[str, Any], classes: list[str], *, batch_size: int,
                 device: str) -> dict[str, dict[str, Any]]:
    """``classification_report`` plus ``loss`` for each named data set (``val``, ``test``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, data in parts.items():
        ev = evaluate(target, data, batch_size=batch_size, device=device)
        report = classification_report(ev["targets"].tolist(), ev["predictions"].tolist(), classes)
        report["loss"] = ev["loss"]
        out[name] = report
    target.to("cpu")
    return out


def finish_run(run_dir: RunDir, model: ZooModel, *, record: dict[str, Any], result: TrainResult,
               reports: dict[str, dict[str, Any]], weights_epoch: int | None, split: Split | None,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write the finished run: the model (with the weights of ``weights_epoch``), ``metrics.json``, the
    plots (unless the config's ``plots`` is off) and the card; drop the best-weights file. Returns the
    summary written to ``metrics.json``."""
    from .card import write_card
    from .plots import write_plots

    history = result.history
    summary: dict[str, Any] = {
        **reports, "epochs_run": len(history), "best_epoch": result.best, "weights_epoch": weights_epoch,
        "stopped_early": result.stopped_early, "last_epoch": history[-1] if history else None,
        "train_seconds": sum(r.get("seconds", 0.0) for r in history), **(extra or {}),
    }
    model.to("cpu").eval()
    run_dir.save_model(model, name=run_dir.path.name, labels=record["data"]["classes"],
                       extra={"run": {"kind": record["kind"], "data": record["data"].get("name"),
                                      "strategy": record["config"]["strategy"]}})
    run_dir.write_summary(json.loads(json.dumps(summary)))  # plain JSON types only
    if record["config"].get("plots", True):
        write_plots(run_dir, history, summary)
    write_card(run_dir, record, summary, split)
    run_dir.drop_best()
    return summary
