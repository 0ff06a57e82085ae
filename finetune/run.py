"""Run directories: the complete record a fine-tuning run leaves, and the ``Run`` object that reads it.

A run folder holds::

    model.safetensors, model.json   the fine-tuned model (``zoo.load(run_dir)`` rebuilds it)
    config.json                     every option, the exact command, the base model and its licence
    split.json, skipped.tsv         the split manifest (files, classes, seed, sha256) and the skip list
    metrics.jsonl, metrics.json     per-epoch rows (the loop's) and the final per-class report
    checkpoint.pt                   the loop's last checkpoint (``--resume``)
    README.md                       the model card
    curves.png, confusion.png       plots, when matplotlib is installed

Owns: ``Run`` (``path``, ``config``, ``history``, ``summary``, lazy ``model``, ``evaluate``,
``predict``), ``load_run``, ``register_run`` (a local registry entry for a run), and the writers of
the card and plots. May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo._io import atomic_write, file_digest, write_json
from zoo.errors import ImageError, RegistryError, RunError

__all__ = ["Run", "load_run", "register_run", "write_card", "write_plots", "REQUIRED_FILES"]

REQUIRED_FILES = ("config.json", "split.json", "model.json", "model.safetensors")


class Run:
    """A run folder, read lazily.

    Attributes:
        path: the folder.
        config: ``config.json`` (options, command, base model).

    Example:
        >>> run = load_run("runs/photos")                          # doctest: +SKIP
        >>> run.predict(["cat.jpg"], top_k=3)                       # doctest: +SKIP
        >>> run.evaluate("photos_test/")["accuracy"]                # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        config = self.path / "config.json"
        if not self.path.is_dir():
            raise RunError(f"no run folder at {self.path}; pass the --out folder of `zoo finetune`.")
        if not config.is_file():
            raise RunError(f"{self.path} is not a run folder: it has no config.json. Pass the --out folder "
                           "of `zoo finetune`.")
        try:
            self.config: dict[str, Any] = json.loads(config.read_text("utf-8"))
        except ValueError as err:
            raise RunError(f"{config} is not valid JSON ({err}); the run folder is damaged.") from err
        self._model = None

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, base={self.config.get('base')!r}, complete={self.complete})"

    @property
    def complete(self) -> bool:
        """True when training finished and the model was saved."""
        return all((self.path / name).is_file() for name in REQUIRED_FILES)

    @property
    def classes(self) -> list[str]:
        return list(self.config.get("classes", []))

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per-epoch rows from ``metrics.jsonl``; an epoch redone after a resume counts once (the last)."""
        rows: dict[int, dict[str, Any]] = {}
        path = self.path / "metrics.jsonl"
        if path.is_file():
            for line in path.read_text("utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    rows[int(row.get("epoch", len(rows) + 1))] = row
        return [rows[k] for k in sorted(rows)]

    @property
    def summary(self) -> dict[str, Any]:
        """``metrics.json``: the final report per part (``val``, ``test``), best epoch, feature cache."""
        path = self.path / "metrics.json"
        if not path.is_file():
            raise RunError(f"{self.path} has no metrics.json: the run did not finish. Resume it with "
                           f"`zoo finetune {self.config.get('base', 'MODEL')} DATA --out {self.path} --resume`.")
        return json.loads(path.read_text("utf-8"))

    @property
    def split(self):
        from .data import load_split

        return load_split(self.path)

    @property
    def model(self):
        """The fine-tuned model (``zoo.load(run.path)``), loaded on first use, in eval mode."""
        if self._model is None:
            self._require_complete()
            from zoo.factory import load

            self._model = load(self.path)
        return self._model

    def _require_complete(self) -> None:
        missing = [name for name in REQUIRED_FILES if not (self.path / name).is_file()]
        if missing:
            raise RunError(f"run {self.path} is incomplete (missing {', '.join(missing)}): training did not "
                           f"finish. Resume it with `zoo finetune {self.config.get('base', 'MODEL')} "
                           f"{self.config.get('data_dir', 'DATA')} --out {self.path} --resume`.")

    def evaluate(self, data_dir: str | Path, *, batch_size: int = 64, device: str = "auto",
                 num_workers: int = 0) -> dict[str, Any]:
        """Accuracy, per-class precision and recall and the confusion matrix on a labelled folder.

        ``data_dir`` holds class folders named as the run's classes (a subset is fine), or ``test/``
        (else ``val/``) folders of them. Unreadable files are skipped and listed.

        Returns:
            ``classification_report`` plus ``loss``, ``folder`` and ``skipped`` ((path, reason) pairs).

        Raises:
            DataError: no such folder, an unknown class folder, no usable image.
        """
        from .data import scan_labelled
        from .features import LabelledImages
        from .loop import evaluate
        from .metrics import classification_report

        model = self.model
        split, folder = scan_labelled(data_dir, self.classes)
        data = LabelledImages(split.paths("test"), split.labels("test"), model.transforms, mode=model.image_mode)
        ev = evaluate(model, data, batch_size=batch_size, device=device)
        model.to("cpu")
        report = classification_report(ev["targets"].tolist(), ev["predictions"].tolist(), self.classes)
        report.update({"loss": ev["loss"], "folder": folder, "skipped": [list(s) for s in split.skipped]})
        return report

    def predict(self, images: Sequence[Any], *, top_k: int = 5, batch_size: int = 64) -> list[dict[str, Any]]:
        """Top-k labels with probabilities for each image.

        Args:
            images: paths, or anything ``zoo.images.open_image`` accepts.
            top_k: labels per image (at most the number of classes).

        Returns:
            One dict per image, in order: ``{"image": str, "top": [{"label", "index", "probability"}]}``,
            or ``{"image": str, "error": reason}`` for an image that cannot be read.
        """
        import torch

        from zoo.images import open_image

        model = self.model
        transform, mode = model.transforms, model.image_mode
        labels = list(model.labels or self.classes)
        k = max(1, min(top_k, len(labels)))
        results: list[dict[str, Any]] = []
        pending: list[tuple[int, Any]] = []

        def flush() -> None:
            if not pending:
                return
            with torch.no_grad():
                probs = torch.softmax(model(torch.stack([x for _, x in pending])).float(), dim=1)
            values, indices = probs.topk(k, dim=1)
            for (i, _), vs, ix in zip(pending, values.tolist(), indices.tolist(), strict=True):
                results[i]["top"] = [{"label": labels[j], "index": j, "probability": v} for v, j in zip(vs, ix, strict=True)]
            pending.clear()

        for src in images:
            name = str(src) if isinstance(src, (str, Path)) else type(src).__name__
            results.append({"image": name})
            try:
                pending.append((len(results) - 1, transform(open_image(src, mode=mode))))
            except ImageError as err:
                results[-1]["error"] = str(err)
            if len(pending) >= batch_size:
                flush()
        flush()
        return results


def load_run(path: str | Path) -> Run:
    """Open a finished run folder.

    Raises:
        RunError: no such folder, not a run, or training did not finish (says how to resume).
    """
    run = Run(path)
    run._require_complete()
    return run


# ----------------------------------------------------------------------------------------------
# Registering a run as a local registry entry.

_NAME_PART = re.compile(r"[^a-z0-9_\-]+")


def _entry_name(run: Run, name: str | None) -> str:
    from zoo.registry.schema import NAME_RE

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


def register_run(path: str | Path, *, name: str | None = None, force: bool = False) -> tuple[str, Path]:
    """Write a local registry entry for a finished run, so ``zoo list --source local`` shows it and
    ``zoo.load(name)`` loads it.

    The entry file goes to ``<config dir>/registry/<name>.json`` (``zoo.registry.env.config_dir``);
    its weights source is the run's ``model.safetensors`` as a ``file://`` URL, with its sha256, so a
    team can copy the run folder to a share and point the URL at it.

    Args:
        path: the run folder.
        name: the entry name (``arch.tag``; a bare word gets ``.local``); default from the folder name.
        force: replace an entry file this function wrote before for the same name.

    Returns:
        (entry name, entry file).

    Raises:
        RunError: the run is incomplete.
        RegistryError: a bad name, or the name is taken by another entry.
    """
    from zoo.registry import catalog, env
    from zoo.registry.catalog import load_entry_file

    run = load_run(path)
    entry_name = _entry_name(run, name)
    folder = env.config_dir() / "registry"
    target = folder / f"{entry_name}.json"
    existing = catalog().resolve(entry_name)
    if existing is not None and not (force and target.is_file()):
        raise RegistryError(f"the name {entry_name!r} is already taken"
                            f"{' by ' + existing if existing != entry_name else ''}; pass another --name"
                            f"{' or --force to replace your own entry' if target.is_file() else ''}.")
    info = json.loads((run.path / "model.json").read_text("utf-8"))
    pre = info.get("preprocessing") or run.config.get("base_preprocessing")
    if not pre:
        raise RunError(f"{run.path} records no preprocessing; it cannot be registered.")
    pre = {k: v for k, v in pre.items() if v is not None}
    pre.pop("mean_file", None)  # a Caffe mean file is a role of the base entry, not of this one
    weights = (run.path / "model.safetensors").resolve()
    summary = run.summary if (run.path / "metrics.json").is_file() else {}
    metrics = []
    for part in ("val", "test"):
        if part in summary:
            metrics.append({"dataset": f"{run.path.resolve().name}/{part}", "metric": "top1",
                            "value": round(100 * float(summary[part]["accuracy"]), 3),
                            "protocol": f"fine-tuned {run.config.get('options', {}).get('strategy', '')}",
                            "source": str(run.path.resolve())})
    base_license = run.config.get("base_license") or "unknown"
    entry = {
        "name": entry_name,
        "architecture": {"library": "run", "builder": str(run.path.resolve())},
        "files": [{"role": "weights", "filename": "model.safetensors", "format": "safetensors",
                   "size": weights.stat().st_size,
                   "sources": [{"url": weights.as_uri()}],
                   "checksum": {"sha256": file_digest(weights)}}],
        "license": base_license,
        "preprocessing": pre,
        "head": {"num_classes": len(run.classes), "labels": run.classes},
        "metrics": metrics,
        "description": f"{run.config.get('base', '?')} fine-tuned on {run.config.get('data_dir', '?')} "
                       f"({run.config.get('options', {}).get('strategy', '?')}).",
        "origin": str(run.path.resolve()),
        "recipe": run.config.get("command") or "",
        "tags": ["fine-tuned", "local"],
    }
    if base_license == "unknown":
        entry["license_note"] = "inherits the base model's licence, which its entry does not name"
    document = {"schema": 1, "entries": [entry]}
    # Validate before writing: a broken file in the user registry would break every `zoo list`.
    load_entry_file(target, text=json.dumps(document), collection="local")
    write_json(target, document)
    return entry_name, target


# ----------------------------------------------------------------------------------------------
# The card and the plots.


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def write_card(out: Path, config: dict[str, Any], summary: dict[str, Any], split) -> Path:
    """``README.md``: base model and licence, data summary with class balance, metrics, the command,
    and how to load the result."""
    from .data import balance_table

    opts = config.get("options", {})
    lines = [
        "---",
        f"license: {config.get('base_license', 'unknown')}",
        f"base_model: {config.get('base')}",
        "library_name: zoo",
        "tags: [image-classification, fine-tuned, zoo]",
        "---",
        "",
        f"# {out.name}",
        "",
        f"`{config.get('base')}` fine-tuned with strategy **{opts.get('strategy')}** on `{config.get('data_dir')}` "
        f"({len(split.classes)} classes).",
        "",
        "## Base model",
        "",
        f"- name: `{config.get('base')}`",
        f"- licence: {config.get('base_license', 'unknown')} (the fine-tuned weights are a derivative of the base "
        "weights: check that their licence allows your use)",
    ]
    if config.get("base_origin"):
        lines.append(f"- origin: {config['base_origin']}")
    plan = config.get("plan", {})
    lines += [
        f"- strategy: {opts.get('strategy')}"
        + (f", cut at `{opts.get('cut')}`" if opts.get("cut") else "")
        + (f", unfrozen from `{plan.get('unfreeze_from')}`" if plan.get("unfreeze_from") else "")
        + f"; head: {opts.get('head')}"
        + (f" (hidden {opts.get('hidden')}, dropout {opts.get('dropout')})" if opts.get("head") == "mlp" else "")
        + f"; trainable parameters {plan.get('trainable_params', 0):,} of "
          f"{plan.get('trainable_params', 0) + plan.get('frozen_params', 0):,}",
        "",
        "## Data",
        "",
        f"Folder `{config.get('data_dir')}`, layout `{split.layout}`, split seed {split.seed}"
        + (f", {100 * split.valid_pct:.0f}% of each class held out for validation" if split.valid_pct else "")
        + f". {len(split.skipped)} file(s) skipped (see `skipped.tsv`). Every file, its class and sha256 are in "
          "`split.json`.",
        "",
        "```",
        balance_table(split),
        "```",
        "",
        "## Metrics",
        "",
    ]
    for part in ("val", "test"):
        report = summary.get(part)
        if not report:
            continue
        lines += [f"**{part}** ({report['n']} images): accuracy {_pct(report['accuracy'])}, macro precision "
                  f"{_pct(report['macro_precision'])}, macro recall {_pct(report['macro_recall'])}", "",
                  "| class | precision | recall | support |", "| --- | ---: | ---: | ---: |"]
        for label in report["labels"]:
            c = report["per_class"][label]
            lines.append(f"| {label} | {c['precision']:.3f} | {c['recall']:.3f} | {c['support']} |")
        lines.append("")
    best = summary.get("best_epoch") or {}
    if best:
        lines += [f"Best epoch {best.get('epoch')} of {summary.get('epochs_run')} (val loss "
                  f"{best.get('val_loss', float('nan')):.4f}); per-epoch figures in `metrics.jsonl`"
                  + (", curves in `curves.png`, confusion in `confusion.png`." if (out / "curves.png").exists() else "."),
                  ""]
    lines += [
        "## Training",
        "",
        "```",
        str(config.get("command")),
        "```",
        "",
        "Options: " + ", ".join(f"{k}={v}" for k, v in opts.items()) + ".",
        "",
        "## Use",
        "",
        "```python",
        "import zoo",
        f"model = zoo.load({str(out)!r})          # classifier with labels and preprocessing",
        "x = model.transforms(zoo.open_image('photo.jpg')).unsqueeze(0)",
        "probs = model(x).softmax(1)",
        "```",
        "",
        "```",
        f"zoo predict {out} photo.jpg --top-k 3",
        f"zoo evaluate {out} DATA_DIR",
        f"zoo register {out} --name NAME.TAG      # share it as a local registry entry",
        "```",
        "",
        "## Limits",
        "",
        "Trained on the images above only; accuracy on other data (other cameras, lighting, classes not in "
        "the list) is unknown until measured with `zoo evaluate`. The classifier always answers with one of "
        "its classes.",
        "",
    ]
    path = out / "README.md"
    with atomic_write(path, "w") as fh:
        fh.write("\n".join(lines))
    return path


def write_plots(out: Path, history: list[dict[str, Any]], summary: dict[str, Any]) -> list[Path]:
    """``curves.png`` (loss and accuracy per epoch) and ``confusion.png``; nothing when matplotlib is
    not installed (the figures are in metrics.jsonl / metrics.json anyway)."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    if history:
        epochs = [r["epoch"] for r in history]
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
        ax1.plot(epochs, [r["train_loss"] for r in history], label="train")
        if all("val_loss" in r for r in history):
            ax1.plot(epochs, [r["val_loss"] for r in history], label="val")
        ax1.set_xlabel("epoch")
        ax1.set_ylabel("loss")
        ax1.legend()
        if all(r.get("val_acc") is not None for r in history):
            ax2.plot(epochs, [r["val_acc"] for r in history], color="C2")
        ax2.set_xlabel("epoch")
        ax2.set_ylabel("val accuracy")
        fig.tight_layout()
        with atomic_write(out / "curves.png") as fh:
            fig.savefig(fh, format="png", dpi=100)
        plt.close(fig)
        written.append(out / "curves.png")
    report = summary.get("test") or summary.get("val")
    if report:
        import numpy as np

        cm = np.asarray(report["confusion"])
        labels = report["labels"]
        size = min(12, 2 + 0.5 * len(labels))
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(cm, cmap="Blues")
        if len(labels) <= 30:
            ax.set_xticks(range(len(labels)), labels, rotation=90)
            ax.set_yticks(range(len(labels)), labels)
            for i in range(len(labels)):
                for j in range(len(labels)):
                    ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if cm[i, j] > cm.max() / 2 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"confusion ({'test' if summary.get('test') else 'val'})")
        fig.tight_layout()
        with atomic_write(out / "confusion.png") as fh:
            fig.savefig(fh, format="png", dpi=100)
        plt.close(fig)
        written.append(out / "confusion.png")
    return written
