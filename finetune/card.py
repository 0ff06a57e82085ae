"""The model card of a run: ``README.md`` rendered from the Markdown template shipped with the package
(``templates/run_card.md``) through ``huggingface_hub.ModelCard``, whose ``ModelCardData`` writes the
metadata (licence, base model, tags, evaluation results) the way the Hugging Face Hub reads it.

Owns: ``write_card`` and ``card_license``. The prose is in the template; this module only computes
the values it shows. May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from zoo._io import atomic_write

from .data import Split, balance_table
from .rundir import RunDir

__all__ = ["write_card", "card_license", "TEMPLATE"]

TEMPLATE = ("templates", "run_card.md")
# Licences the Hub knows by these ids; any other licence is "other" with its own name (the Hub's rule).
_HUB_LICENSES = {"Apache-2.0": "apache-2.0", "BSD-2-Clause": "bsd-2-clause", "BSD-3-Clause": "bsd-3-clause",
                 "MIT": "mit", "CC-BY-4.0": "cc-by-4.0", "CC-BY-NC-4.0": "cc-by-nc-4.0", "CC-BY-SA-4.0": "cc-by-sa-4.0"}


def card_license(license_: str | None) -> dict[str, str]:
    """The card metadata for a zoo licence: ``{"license": hub id}``, or ``license: other`` plus
    ``license_name`` for licences the Hub has no id for (``bvlc-unrestricted``, ``unknown``...)."""
    if license_ in _HUB_LICENSES:
        return {"license": _HUB_LICENSES[license_]}
    return {"license": "other", "license_name": (license_ or "unknown").lower()}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _metrics(summary: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for part in ("val", "test"):
        report = summary.get(part)
        if not report:
            continue
        rows = [{"label": label, "precision": f"{c['precision']:.3f}", "recall": f"{c['recall']:.3f}",
                 "support": c["support"]} for label, c in ((lb, report["per_class"][lb]) for lb in report["labels"])]
        out.append({"part": part, "n": report["n"], "accuracy": _pct(report["accuracy"]),
                    "macro_precision": _pct(report["macro_precision"]),
                    "macro_recall": _pct(report["macro_recall"]), "rows": rows})
    return out


def _what_trains(record: dict[str, Any]) -> str:
    cfg, plan = record["config"], record.get("plan") or {}
    if record["kind"] == "scratch":
        recipe, chosen = record["base"].get("recipe"), sorted(record.get("chosen") or {})
        # A trial or a run with flags sets some settings itself: name only those the run chose.
        parts = []
        if recipe:
            parts.append(f"recipe: {recipe}")
        if chosen:
            parts.append(f"chosen from the data: {', '.join(chosen)} (`chosen` in config.json)")
        return "; ".join(parts or ["every setting as given"]) + "; every layer trains from random weights"
    text = f"strategy: {cfg['strategy']}"
    text += f", cut at `{cfg['cut']}`" if cfg.get("cut") else ""
    text += f", unfrozen from `{plan['unfreeze_from']}`" if plan.get("unfreeze_from") else ""
    text += f"; head: {cfg['head']}"
    text += f" (hidden {cfg['hidden']}, dropout {cfg['dropout']})" if cfg["head"] == "mlp" else ""
    total = plan.get("trainable_params", 0) + plan.get("frozen_params", 0)
    text += f"; trainable parameters {plan.get('trainable_params', 0):,} of {total:,}"
    head = record.get("head_phase")
    if head:
        text += (f"; first the new head alone on cached features ({head['epochs']} epochs, lr {head['lr']:.3g}), "
                 "then the whole network")
    chosen = record.get("chosen") or {}
    if chosen:
        text += "; chosen by the run: " + "; ".join(f"{k} {v['value']:g} ({v['why']})" if isinstance(v["value"], float)
                                                    else f"{k} {v['value']} ({v['why']})" for k, v in chosen.items())
    return text


def _data_text(run_dir: RunDir, data: dict[str, Any], split: Split | None) -> tuple[str, str]:
    if split is None:
        sizes = ", ".join(f"{part} {n}" for part, n in data.get("sizes", {}).items())
        indices = f", classes {data['class_indices']} of the data set" if data.get("class_indices") else ""
        text = (f"Built-in data set `{data['name']}`{indices} ({sizes} images); content digest per part in "
                f"`{run_dir.config.name}`.")
        return text, "\n".join(f"{i:>3}  {c}" for i, c in enumerate(data["classes"]))
    held = f", {100 * split.valid_pct:.0f}% of each class held out for validation" if split.valid_pct else ""
    text = (f"Folder `{data['root']}`, layout `{split.layout}`, split seed {split.seed}{held}. {len(split.skipped)} "
            f"file(s) skipped (see `{run_dir.skipped.name}`). Every file, its class and sha256 are in "
            f"`{run_dir.split.name}`.")
    return text, balance_table(split)


def _weights_text(run_dir: RunDir, summary: dict[str, Any], monitor: str) -> str:
    best, epoch, n = summary.get("best_epoch") or {}, summary.get("weights_epoch"), summary.get("epochs_run")
    plots = [p.name for p in run_dir.plots()]
    files = f"per-epoch figures in `{run_dir.history.name}`" + (
        f", curves in `{plots[0]}`, confusion in `{plots[-1]}`." if len(plots) == 2 else ".")
    if summary.get("weights") == "last":
        return (f"The saved weights are the last epoch's ({epoch} of {n}): with no validation part, no epoch is "
                f"chosen by a held-out figure; {files}")
    monitored = next((k for k in (monitor, "val_loss", "train_loss") if k in best), "")
    tie = (f", ties broken by the lower {monitored.removesuffix('acc')}loss".replace("_", " ")
           if monitored.endswith("acc") else "")
    value = f"{monitored.replace('_', ' ')} ({best.get(monitored, float('nan')):.4f}{tie})"
    if epoch == 0:
        return (f"The saved weights are epoch 0's: the pretrained body as it was, under the new head trained "
                f"alone on its cached features; none of the {n} epochs that trained the body beat it on {value}; "
                f"{files}")
    return f"The saved weights are epoch {epoch}'s of {n}, the best by {value}; {files}"


def write_card(run_dir: RunDir, record: dict[str, Any], summary: dict[str, Any], split: Split | None) -> Path:
    """Render ``README.md`` for a finished run: base model (or architecture) and licence, data and class
    balance, metrics per part, which epoch's weights were saved, the command, and how to load it.

    Returns:
        The card's path.
    """
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    base, data, cfg = record["base"], record["data"], record["config"]
    name = run_dir.path.name
    evals = [EvalResult(task_type="image-classification", dataset_type=data["kind"], dataset_name=data["name"],
                        dataset_split="validation" if part == "val" else "test", metric_type="accuracy",
                        metric_value=round(summary[part]["accuracy"], 4))
             for part in ("val", "test") if summary.get(part)]
    card_data = ModelCardData(
        model_name=name, library_name="zoo", pipeline_tag="image-classification",
        base_model=base["name"] if base["pretrained"] else None,
        tags=["image-classification", "zoo", "fine-tuned" if record["kind"] == "finetune" else "from-scratch"],
        eval_results=evals or None, **(card_license(base["license"]) if base["pretrained"] else {}))
    how = (f"fine-tuned with strategy **{cfg['strategy']}**" if record["kind"] == "finetune"
           else "trained from random weights")
    data_text, data_table = _data_text(run_dir, data, split)
    template = resources.files("zoo.finetune").joinpath(*TEMPLATE).read_text("utf-8")
    card = ModelCard.from_template(
        card_data, template_str=template, name=name,
        headline=f"`{base['name']}` {how} on `{data['name']}` ({len(data['classes'])} classes).",
        pretrained=base["pretrained"], base_name=base["name"], base_license=base["license"],
        base_origin=base.get("origin"), what_trains=_what_trains(record), data_text=data_text,
        data_table=data_table, metrics=_metrics(summary),
        weights_text=_weights_text(run_dir, summary, cfg.get("train", {}).get("monitor", "val_loss")),
        command=record["command"], options=_options_text(cfg), record_file=run_dir.config.name, path=str(run_dir.path),
        path_repr=repr(str(run_dir.path)))
    with atomic_write(run_dir.card, "w") as fh:
        fh.write(str(card))
    return run_dir.card


def _options_text(cfg: dict[str, Any]) -> str:
    """The options that differ from ``FinetuneConfig()``'s (every option is in the record)."""
    from .config import FinetuneConfig

    default = FinetuneConfig().to_dict()
    shown = [f"{k}={v}" for k, v in cfg.items() if k != "train" and v != default.get(k)]
    shown += [f"{k}={v}" for k, v in cfg.get("train", {}).items() if v != default["train"].get(k)]
    return ", ".join(shown) or "the defaults"
