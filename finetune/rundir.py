"""``RunDir``: the layout of a run folder. The only code that names the files a run leaves::

    config.json                     the run's record: FinetuneConfig, the exact command, the base model,
                                    the data's identity (folder and split, or built-in data set)
    model.safetensors, model.json   the trained model (``zoo.load(run_dir)`` rebuilds it)
    split.json, skipped.tsv         the split manifest (every file, its class and sha256) and the skip list
    metrics.jsonl, metrics.json     per-epoch rows (the loop's log) and the final per-part reports
    checkpoint.pt                   the loop's last checkpoint (``--resume``)
    best.safetensors                the best epoch's weights while training runs (gone once it ends)
    README.md                       the model card
    curves.png, confusion.png       plots, when matplotlib is installed

Names the loop (checkpoint, log) and ``zoo.factory`` (model files) write are taken from their
constants, so each name is spelled once. May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo._io import atomic_write, write_json
from zoo.errors import RunError
from zoo.factory import MODEL_FILE, WEIGHTS_FILE, save_model
from zoo.weights import read_state_dict, save_state_dict

from .data import Split, load_split, skipped_tsv
from .loop import CHECKPOINT, METRICS

__all__ = ["RunDir", "RUNS_FOLDER"]

RUNS_FOLDER = Path("runs")  # where a run goes when no folder is given (relative to the working directory)


class RunDir:
    """A run folder's paths and the plain reads and writes of its files.

    Example:
        >>> rd = RunDir("runs/photos")
        >>> rd.config.name, rd.weights.name
        ('config.json', 'model.safetensors')
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- the layout --------------------------------------------------------------------------------

    config = property(lambda self: self.path / "config.json")
    split = property(lambda self: self.path / "split.json")
    skipped = property(lambda self: self.path / "skipped.tsv")
    summary = property(lambda self: self.path / "metrics.json")
    history = property(lambda self: self.path / METRICS)
    checkpoint = property(lambda self: self.path / CHECKPOINT)
    best = property(lambda self: self.path / "best.safetensors")
    weights = property(lambda self: self.path / WEIGHTS_FILE)
    model_info = property(lambda self: self.path / MODEL_FILE)
    card = property(lambda self: self.path / "README.md")
    curves = property(lambda self: self.path / "curves.png")
    confusion = property(lambda self: self.path / "confusion.png")

    @classmethod
    def fresh(cls, name: str, parent: str | Path = RUNS_FOLDER) -> RunDir:
        """``runs/<name>``, or ``runs/<name>-2``, ``-3``... when taken: a default never overwrites a run."""
        base = Path(parent) / (name or "run")
        out, i = base, 2
        while out.exists():
            out, i = base.with_name(f"{base.name}-{i}"), i + 1
        return cls(out)

    def holds_run(self) -> bool:
        """True when a run was started here (a record or a checkpoint exists)."""
        return self.config.is_file() or self.checkpoint.is_file()

    def missing(self, *, split: bool) -> list[str]:
        """The files a finished run must have that are absent (``split``: a folder run's manifest)."""
        need = [self.config, self.model_info, self.weights] + ([self.split] if split else [])
        return [p.name for p in need if not p.is_file()]

    def plots(self) -> list[Path]:
        return [p for p in (self.curves, self.confusion) if p.is_file()]

    # -- the record (config.json) -------------------------------------------------------------------

    def read_record(self) -> dict[str, Any]:
        """``config.json`` as a dict.

        Raises:
            RunError: no such folder, no record, or a damaged one.
        """
        if not self.path.is_dir():
            raise RunError(f"no run folder at {self.path}; pass the --out folder of `zoo finetune` or `zoo train`.")
        if not self.config.is_file():
            raise RunError(f"{self.path} is not a run folder: it has no {self.config.name}. Pass the --out folder "
                           "of `zoo finetune` or `zoo train`.")
        try:
            record = json.loads(self.config.read_text("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise RunError(f"{self.config} is not valid JSON ({err}); the run folder is damaged.") from err
        if not isinstance(record, dict):
            raise RunError(f"{self.config} is not a run record (a JSON object); the run folder is damaged.")
        return record

    def write_record(self, record: dict[str, Any]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self.config, record)

    # -- data ----------------------------------------------------------------------------------------

    def write_split(self, split: Split) -> None:
        """``split.json`` and ``skipped.tsv``."""
        self.path.mkdir(parents=True, exist_ok=True)
        split.save(self.split)
        with atomic_write(self.skipped, "w") as fh:
            fh.write(skipped_tsv(split.skipped))

    def read_split(self, *, verify: bool = False) -> Split:
        return load_split(self.split, verify=verify)

    # -- results -------------------------------------------------------------------------------------

    def read_history(self) -> list[dict[str, Any]]:
        """Per-epoch rows of the loop's log; an epoch redone after a resume counts once (the last)."""
        rows: dict[int, dict[str, Any]] = {}
        if self.history.is_file():
            for line in self.history.read_text("utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    rows[int(row.get("epoch", len(rows) + 1))] = row
        return [rows[k] for k in sorted(rows)]

    def read_summary(self) -> dict[str, Any] | None:
        """``metrics.json``, or None when the run has not finished."""
        if not self.summary.is_file():
            return None
        return json.loads(self.summary.read_text("utf-8"))

    def write_summary(self, summary: dict[str, Any]) -> None:
        write_json(self.summary, summary)

    def save_model(self, model: nn.Module, extra: dict[str, Any], *, name: str | None = None,
                   labels: Any = None) -> None:
        """``model.safetensors`` and ``model.json`` (``zoo.factory.save_model``), under ``name`` and
        with ``labels`` when given."""
        save_model(model, self.path, name=name, labels=labels, extra=extra)

    # -- the best epoch's weights, kept while training runs ----------------------------------------

    def save_best(self, module: nn.Module, epoch: int) -> None:
        save_state_dict(module.state_dict(), self.best, metadata={"epoch": str(epoch)})

    def best_epoch(self) -> int | None:
        """The epoch whose weights ``best.safetensors`` holds, or None when there is none."""
        if not self.best.is_file():
            return None
        from safetensors import safe_open

        with safe_open(str(self.best), framework="pt") as fh:
            epoch = (fh.metadata() or {}).get("epoch")
        return int(epoch) if epoch is not None else None

    def load_best(self, module: nn.Module) -> None:
        state = read_state_dict(self.best, format="safetensors")
        with torch.no_grad():
            module.load_state_dict(state)

    def drop_best(self) -> None:
        self.best.unlink(missing_ok=True)
