"""The ``Run`` object: one type that opens every run folder, fine-tuned or trained from scratch.

Owns: ``Run`` (``path``, ``record``, ``config``, ``kind``, ``base``, ``classes``, ``history``,
``summary``, lazy ``model``, ``evaluate``, ``predict``, ``row`` for side-by-side tables),
``load_run`` (a finished run) and ``compare_runs`` (the rows behind ``zoo runs``). The folder's
layout is ``RunDir``'s; writing a run is ``zoo.finetune.record``'s. May import ``zoo`` and
``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.errors import RunError

from .config import FinetuneConfig
from .rundir import RunDir

__all__ = ["Run", "load_run", "compare_runs"]


class Run:
    """A run folder, read lazily.

    Attributes:
        path: the folder.
        dir: its ``RunDir`` (the paths of its files).
        record: ``config.json`` (the config, the exact command, the base model, the data's identity).

    Example:
        >>> run = load_run("runs/photos")                          # doctest: +SKIP
        >>> run.predict(["cat.jpg"], top_k=3)                       # doctest: +SKIP
        >>> run.evaluate("photos_test/")["accuracy"]                # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.dir = RunDir(path)
        self.path = self.dir.path
        self.record: dict[str, Any] = self.dir.read_record()
        self._model = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, kind={self.kind!r}, base={self.base!r}, complete={self.complete})"

    @property
    def kind(self) -> str:
        """``finetune`` or ``scratch``."""
        return self.record.get("kind", "finetune")

    @property
    def config(self) -> FinetuneConfig:
        """The run's options (``FinetuneConfig``), as it ran them.

        Raises:
            RunError: the record was written by an older zoo and holds no config of this form.
        """
        if not isinstance(self.record.get("config"), dict):
            raise RunError(f"{self.dir.config} was written by an older zoo and holds no FinetuneConfig; its model "
                           "still loads, predicts and evaluates.")
        return FinetuneConfig.from_dict(self.record["config"])

    @property
    def base(self) -> str:
        """The model the run started from (for a run from scratch: the architecture's entry)."""
        base = self.record.get("base")
        return base.get("name", "") if isinstance(base, dict) else str(base or "")

    @property
    def command(self) -> str:
        return str(self.record.get("command") or "")

    @property
    def data(self) -> dict[str, Any]:
        """The data's identity: ``kind`` (``folder`` or ``dataset``), ``name``, ``classes``..."""
        data = self.record.get("data")
        if isinstance(data, dict):
            return data
        return {"kind": "folder", "name": Path(self.record.get("data_dir", "")).name,
                "root": self.record.get("data_dir", ""), "classes": self.record.get("classes", [])}

    @property
    def classes(self) -> list[str]:
        return list(self.data.get("classes", []))

    @property
    def complete(self) -> bool:
        """True when training finished and the model was saved."""
        return not self.dir.missing(split=self.data["kind"] == "folder")

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per-epoch rows of the loop's log; an epoch redone after a resume counts once (the last)."""
        return self.dir.read_history()

    @property
    def summary(self) -> dict[str, Any]:
        """``metrics.json``: the final report per part (``val``, ``test``), the best epoch, the epoch
        whose weights were saved, the training time."""
        summary = self.dir.read_summary()
        if summary is None:
            raise RunError(f"{self.path} has no {self.dir.summary.name}: the run did not finish. Resume it with "
                           f"`{self.resume_command()}`.")
        return summary

    @property
    def split(self):
        """The split manifest of a run on a folder (``zoo.finetune.data.Split``)."""
        return self.dir.read_split()

    @property
    def model(self):
        """The trained model (``zoo.load(run.path)``), loaded on first use, in eval mode."""
        if self._model is None:
            self._require_complete()
            from zoo.factory import load

            self._model = load(self.path)
        return self._model

    def resume_command(self) -> str:
        """The command that continues this run after an interruption."""
        model = self.record.get("model") or self.base or "MODEL"
        if self.kind == "scratch":
            data = self.data.get("root") or self.data.get("name")
            return f"zoo train {model} --data {data} --out {self.path} --resume"
        return f"zoo finetune {model} {self.data.get('root', 'DATA')} --out {self.path} --resume"

    def row(self) -> dict[str, Any]:
        """This run as one row of a side-by-side table (``zoo runs``): model, strategy, data, epochs,
        the best epoch by the monitored validation metric, the final val/test accuracy, training time.
        An unfinished run gives what its log holds. Numbers are numbers or None."""
        history, summary = self.history, self.dir.read_summary() or {}
        cfg = self.record.get("config") if isinstance(self.record.get("config"), dict) else {}
        monitor = (cfg.get("train") or {}).get("monitor", "val_loss")
        held_out = self.data["kind"] == "folder"  # a built-in data set's per-epoch figures are on its test split
        best = summary.get("best_epoch") or _best_row(history, monitor)
        return {
            "run": str(self.path), "model": self.base, "kind": self.kind,
            "strategy": "scratch" if self.kind == "scratch" else cfg.get("strategy"),
            "data": self.data.get("name"), "epochs": len(history), "epochs_planned": cfg.get("epochs"),
            "monitor": monitor, "best_value": best.get(monitor) if held_out else None,
            "best_epoch": best.get("epoch") if held_out else None, "weights_epoch": summary.get("weights_epoch"),
            "val_accuracy": (summary.get("val") or {}).get("accuracy"),
            "test_accuracy": (summary.get("test") or {}).get("accuracy"),
            "seconds": summary.get("train_seconds", sum(r.get("seconds", 0.0) for r in history)),
            "complete": self.complete,
        }

    def _require_complete(self) -> None:
        missing = self.dir.missing(split=self.data["kind"] == "folder")
        if missing == [self.dir.weights.name] and self.dir.read_summary() is not None:
            # Finished, then its weights went: a search keeps them for its best trials only (--keep).
            raise RunError(f"run {self.path} finished, but its weights ({self.dir.weights.name}) are gone: a search "
                           "keeps the weights of its best trials only (zoo tune --keep N). Use the study's best "
                           "run (STUDY/best), or train with this trial's settings again (its config.json).")
        if missing:
            raise RunError(f"run {self.path} is incomplete (missing {', '.join(missing)}): training did not "
                           f"finish. Resume it with `{self.resume_command()}`.")

    def evaluate(self, data_dir: str | Path, *, batch_size: int = 64, device: str = "auto",
                 num_workers: int = 0) -> dict[str, Any]:
        """Accuracy, per-class precision and recall and the confusion matrix on a labelled folder
        (``zoo.finetune.validate.validate`` with this run's model).

        ``data_dir`` holds class folders named as the run's classes (a subset is fine), or ``test/``
        (else ``val/``) folders of them. Unreadable files are skipped and listed.

        Returns:
            ``validate``'s report: ``classification_report`` plus ``loss``, ``top1``/``top5``, ``folder``
            and ``skipped`` ((path, reason) pairs).

        Raises:
            DataError: no such folder, an unknown class folder, no usable image.
        """
        from .validate import validate

        report = validate(self.model, data_dir, batch_size=batch_size, device=device, num_workers=num_workers)
        self.model.to("cpu")
        report["folder"] = report["data"]["name"]
        return report

    def predict(self, images: Sequence[Any], *, top_k: int = 5, batch_size: int = 64) -> list[dict[str, Any]]:
        """Top-k labels with probabilities for each image (``zoo.finetune.predict.predict`` with this
        run's model, on the CPU).

        Args:
            images: paths, or anything ``zoo.images.open_image`` accepts.
            top_k: labels per image (at most the number of classes).

        Returns:
            One dict per image, in order: ``{"image": str, "top": [{"label", "index", "probability"}]}``,
            or ``{"image": str, "error": reason}`` for an image that cannot be read.
        """
        from .predict import predict

        return predict(self.model, list(images), top_k=top_k, batch_size=batch_size, device="cpu", num_workers=0)


def load_run(path: str | Path) -> Run:
    """Open a finished run folder.

    Raises:
        RunError: no such folder, not a run, or training did not finish (says how to resume).
    """
    run = Run(path)
    run._require_complete()
    return run


def _best_row(history: list[dict[str, Any]], monitor: str) -> dict[str, Any]:
    rows = [r for r in history if r.get(monitor) is not None]
    if not rows:
        return {}
    pick = max if monitor.endswith("acc") else min
    return pick(rows, key=lambda r: r[monitor])


def compare_runs(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """``Run.row()`` for each run folder; a folder that is not a run but holds runs stands for them all.

    Raises:
        RunError: a path is neither a run folder nor a folder of runs.

    Example:
        >>> rows = compare_runs(["runs/photos", "runs/photos-2"])   # doctest: +SKIP
        >>> [(r["strategy"], r["test_accuracy"]) for r in rows]      # doctest: +SKIP
    """
    rows = []
    for path in paths:
        folder = RunDir(path)
        if not folder.config.is_file() and folder.path.is_dir():
            inner = sorted(p for p in folder.path.iterdir() if RunDir(p).config.is_file())
            if inner:
                rows += [Run(p).row() for p in inner]
                continue
        rows.append(Run(folder.path).row())
    return rows
