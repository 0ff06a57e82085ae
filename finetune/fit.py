"""``fit``: fine-tune a pretrained model on a folder of images and leave a complete run directory.

Owns: the fine-tuning recipe from folder to run: scan and split the data (or reuse the run's
manifest on resume), prepare the model per strategy, build the datasets (cached features for
``linear``; augmented images otherwise), hand them to the one training loop
(``zoo.finetune.loop.train``), then save the model, the final metrics, the plots and the model card.
The same options as ``zoo finetune``. May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import json
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from zoo._io import atomic_write, write_json
from zoo.errors import RunError
from zoo.model import ZooModel

from .data import SPLIT_FILE, Split, load_split, scan, skipped_tsv
from .loop import TrainConfig, evaluate, resolve_device, train
from .strategies import Plan, prepare

__all__ = ["fit", "setup", "Setup", "DEFAULTS", "CONFIG_FILE"]

CONFIG_FILE = "config.json"
# Per-strategy defaults where the user gives none: a head alone learns fast at a larger LR; when
# body layers train, a smaller LR keeps the pretrained features (the head's groups get lr x 1).
DEFAULTS: dict[str, dict[str, Any]] = {
    "linear": {"epochs": 20, "lr": 3e-3, "warmup_epochs": 0.0},
    "partial": {"epochs": 10, "lr": 1e-3, "warmup_epochs": 1.0},
    "full": {"epochs": 10, "lr": 1e-3, "warmup_epochs": 1.0},
}


@dataclass
class Setup:
    """A model ready to train and the data for it (what ``fit`` and ``lr_find`` share).

    ``target`` is what the loop trains: the whole model, or only its head when ``linear`` runs on
    cached features (then ``train_data``/``val_data`` are TensorDatasets of features).
    """

    model: ZooModel
    plan: Plan
    split: Split
    target: torch.nn.Module
    train_data: Dataset
    val_data: Dataset
    features: dict[str, Any] | None = None


def _resolve_model(model: str | Path | ZooModel, *, pretrained: bool) -> ZooModel:
    if isinstance(model, ZooModel):
        return model
    from zoo.factory import load

    return load(model, pretrained=pretrained)


def setup(model: str | Path | ZooModel, split: Split, *, strategy: str = "linear", cut: str | None = None,
          unfreeze_from: str | None = None, head: str = "linear", hidden: int = 256, dropout: float = 0.0,
          augment: bool = True, cache_features: bool = True, pretrained: bool = True, seed: int = 0,
          batch_size: int = 64, device: str = "auto", num_workers: int = 0, progress: bool = False) -> Setup:
    """Load and prepare the model per strategy and build the training and validation data.

    ``linear`` with ``cache_features`` computes the body's features once (or reads them from the
    cache) and trains the head on them; no augmentation then, since the images are seen once.

    Raises:
        UnknownLayerError: ``cut`` or ``unfreeze_from`` names no layer.
        DataError: a scanned file became unreadable.
    """
    from zoo.preprocess import train_transform

    from .features import LabelledImages, cached_features, model_key

    # Random initial weights (a new head; the whole network with pretrained=False) come from the
    # global RNG: seed it so a run repeats.
    torch.manual_seed(seed)
    net = _resolve_model(model, pretrained=pretrained)
    plan = prepare(net, strategy, num_classes=split.num_classes, cut=cut, unfreeze_from=unfreeze_from, head=head,
                   hidden=hidden, dropout=dropout, discriminative=pretrained)
    labels = {part: torch.tensor(split.labels(part), dtype=torch.long) for part in split.parts}
    if strategy == "linear" and cache_features:
        dev = resolve_device(device)
        feats: dict[str, Any] = {}
        data: dict[str, Dataset] = {}
        key = model_key(net)
        for part in split.parts:
            x, hit, path = cached_features(net, split.paths(part), split.hashes(part), batch_size=batch_size,
                                           device=dev, num_workers=num_workers, progress=progress, key=key)
            feats[part] = {"cache": str(path), "hit": hit, "count": int(x.shape[0])}
            data[part] = TensorDataset(x, labels[part])
        net.to("cpu")
        return Setup(net, plan, split, net.head, data["train"], data["val"], features=feats)
    pre = net.preprocessing
    mode = net.image_mode
    train_tf = train_transform(pre, mean_image=net.mean_image) if augment else net.transforms
    train_data = LabelledImages(split.paths("train"), split.labels("train"), train_tf, mode=mode)
    val_data = LabelledImages(split.paths("val"), split.labels("val"), net.transforms, mode=mode)
    return Setup(net, plan, split, net, train_data, val_data)


def _default_out(data_dir: Path) -> Path:
    base = Path("runs") / (data_dir.resolve().name or "run")
    out, i = base, 2
    while out.exists():
        out, i = base.with_name(f"{base.name}-{i}"), i + 1
    return out


def _python_command(model: Any, data_dir: Any, options: dict[str, Any]) -> str:
    shown = ", ".join(f"{k}={v!r}" for k, v in options.items())
    name = model.name if isinstance(model, ZooModel) else str(model)
    return f"zoo.finetune.fit({name!r}, {str(data_dir)!r}{', ' + shown if shown else ''})"


def fit(model: str | Path | ZooModel, data_dir: str | Path, *, out: str | Path | None = None,
        strategy: str = "linear", cut: str | None = None, unfreeze_from: str | None = None, head: str = "linear",
        hidden: int = 256, dropout: float = 0.0, epochs: int | None = None, lr: float | None = None,
        batch_size: int = 64, optimizer: str = "adamw", weight_decay: float = 0.05, schedule: str = "cosine",
        warmup_epochs: float | None = None, label_smoothing: float = 0.0, valid_pct: float = 0.2, seed: int = 0,
        augment: bool = True, cache_features: bool = True, early_stopping: int | None = None, resume: bool = False,
        pretrained: bool = True, device: str = "auto", num_workers: int = 0, progress: bool = True,
        command: str | None = None, callbacks: dict[str, list[Callable]] | None = None,
        on_setup: Callable[[Setup], None] | None = None):
    """Fine-tune ``model`` on the images in ``data_dir`` and return the run.

    Args:
        model: a registry name (``resnet18``), a saved model or run folder, or a ``ZooModel``.
        data_dir: a folder of class folders, or ``train/`` and ``val/`` (and ``test/``) folders of them.
        out: the run folder (default ``runs/<data folder name>``, numbered if taken).
        strategy: ``linear`` (frozen body, cached features), ``partial`` (train from ``unfreeze_from``
            on) or ``full`` (everything, smaller learning rates for earlier layers).
        cut: keep the network up to this layer and put the new head after it.
        unfreeze_from: ``partial``: the first layer that trains (default: the last third of the body).
        head: ``linear`` or ``mlp``; ``hidden`` and ``dropout`` shape it.
        epochs, lr, warmup_epochs: default per strategy (``DEFAULTS``).
        batch_size, optimizer, weight_decay, schedule, label_smoothing, early_stopping: the loop's
            options (see ``zoo.finetune.loop.TrainConfig``).
        valid_pct, seed: the stratified split (ignored when the folder has ``val/``); the seed also
            seeds training, so a CPU run repeats.
        augment: random resized crops and flips for strategies that run the body while training.
        cache_features: ``linear``: train the head on cached features (False runs the frozen body
            every epoch, with augmentation).
        resume: continue the interrupted run in ``out`` with its stored options, split and checkpoint.
        pretrained: start from the entry's weights (False: the same network from random weights, and
            every layer at the same learning rate).
        device, num_workers, progress: where and how to run.
        command: the command line to record (the CLI passes its own).
        callbacks: passed to the loop (events ``on_step_end``, ``on_epoch_end``, ``on_checkpoint``).
        on_setup: called with the ``Setup`` before training (tests and tools use it to look inside).

    Returns:
        The ``Run``: ``run.model`` loads the fine-tuned model, ``run.summary`` holds the final metrics.

    Raises:
        DataError: the folder cannot be used (the message says why and what to do).
        UnknownLayerError: ``cut``/``unfreeze_from`` names no layer (valid names listed).
        RunError: ``out`` already holds a run (pass ``resume=True`` or another ``out``), or resume finds
            nothing to resume.
        KeyboardInterrupt: after the loop saved a checkpoint; ``resume=True`` continues.

    Example:
        >>> run = zoo.finetune.fit("resnet18", "photos/", strategy="linear", epochs=10)  # doctest: +SKIP
        >>> run.summary["val"]["accuracy"]                                              # doctest: +SKIP
        >>> model = zoo.load(run.path)                                                  # doctest: +SKIP
    """
    from zoo.factory import save_model

    from .run import Run, write_plots, write_card

    data_dir = Path(data_dir).expanduser()
    # The options that describe the run (stored in config.json and reused on resume); where to run it
    # (device, workers, progress bars) may change between the interrupted run and its resumption.
    given = dict(
        strategy=strategy, cut=cut, unfreeze_from=unfreeze_from, head=head, hidden=hidden, dropout=dropout,
        epochs=epochs, lr=lr, batch_size=batch_size, optimizer=optimizer, weight_decay=weight_decay,
        schedule=schedule, warmup_epochs=warmup_epochs, label_smoothing=label_smoothing, valid_pct=valid_pct,
        seed=seed, augment=augment, cache_features=cache_features, early_stopping=early_stopping,
        pretrained=pretrained)
    if strategy not in DEFAULTS:
        raise ValueError(f"strategy must be one of {', '.join(DEFAULTS)}, got {strategy!r}")
    if out is None:
        if resume:
            raise RunError("resume needs the run folder: pass out=... (--out RUN_DIR) of the interrupted run.")
        out = _default_out(data_dir)
    out = Path(out).expanduser()

    if resume:
        config = _read_config(out)
        opts = dict(config["options"])
        split = load_split(out, verify=True)
        model_ref: Any = model if isinstance(model, ZooModel) else (config.get("model") or config["base"])
        started = config.get("created")
        command_line = config.get("command")
    else:
        if (out / CONFIG_FILE).exists() or (out / "checkpoint.pt").exists():
            raise RunError(f"{out} already holds a run. Continue it with --resume (resume=True), or pass "
                           "another --out to start a new one.")
        opts = dict(given)
        for key, value in DEFAULTS[strategy].items():
            if opts.get(key) is None:
                opts[key] = value
        split = scan(data_dir, valid_pct=valid_pct, seed=seed)
        model_ref = model
        started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        defaults = inspect.signature(fit).parameters
        changed = {k: v for k, v in given.items() if v != defaults[k].default}
        command_line = command or _python_command(model, data_dir, changed)

    s = setup(model_ref, split, strategy=opts["strategy"], cut=opts["cut"], unfreeze_from=opts["unfreeze_from"],
              head=opts["head"], hidden=opts["hidden"], dropout=opts["dropout"], augment=opts["augment"],
              cache_features=opts["cache_features"], pretrained=opts["pretrained"], seed=opts["seed"],
              batch_size=opts["batch_size"], device=device, num_workers=num_workers, progress=progress)
    if on_setup is not None:
        on_setup(s)
    cfg = TrainConfig(epochs=opts["epochs"], batch_size=opts["batch_size"], optimizer=opts["optimizer"],
                      lr=opts["lr"], weight_decay=opts["weight_decay"], schedule=opts["schedule"],
                      warmup_epochs=opts["warmup_epochs"], label_smoothing=opts["label_smoothing"],
                      seed=opts["seed"], early_stopping=opts["early_stopping"], device=device,
                      num_workers=num_workers, monitor="val_loss")
    net = s.model
    entry = getattr(net, "entry", None)
    config = {
        "format": "zoo-run",
        "version": 1,
        "command": command_line,
        "created": started,
        "model": None if isinstance(model_ref, ZooModel) else str(model_ref),
        "base": net.base or net.name,
        "base_license": getattr(entry, "license", None) or "unknown",
        "base_origin": getattr(entry, "origin", "") or "",
        "base_preprocessing": _asdict(net.preprocessing),
        "data_dir": str(split.root),
        "classes": split.classes,
        "options": opts,
        "train_config": cfg.to_dict(),
        "plan": s.plan.describe(),
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "device": str(resolve_device(device))},
    }
    out.mkdir(parents=True, exist_ok=True)
    if not resume:
        split.save(out / SPLIT_FILE)
        with atomic_write(out / "skipped.tsv", "w") as fh:
            fh.write(skipped_tsv(split.skipped))
    write_json(out / CONFIG_FILE, config)

    result = train(s.target, s.train_data, s.val_data, cfg, run_dir=out, param_groups=s.plan.param_groups,
                   resume=resume, progress=progress, callbacks=callbacks)

    # -- the record: model, final metrics, plots, card --------------------------------------------
    net.to("cpu").eval()
    summary = _final_metrics(s, cfg)
    summary.update({"epochs_run": len(result.history), "best_epoch": result.best, "stopped_early": result.stopped_early,
                    "last_epoch": result.history[-1] if result.history else None, "features": s.features,
                    "skipped": len(split.skipped), "counts": split.counts()})
    save_model(net, out, name=out.name, labels=split.classes, extra={"run": {"data_dir": str(split.root), "strategy": opts["strategy"]}})
    write_json(out / "metrics.json", summary)
    write_plots(out, result.history, summary)
    write_card(out, config, summary, split)
    return Run(out)


def _asdict(pre: Any) -> dict[str, Any] | None:
    from dataclasses import asdict

    return asdict(pre) if pre is not None else None


def _read_config(out: Path) -> dict[str, Any]:
    path = out / CONFIG_FILE
    if not path.is_file():
        raise RunError(f"cannot resume: {out} holds no {CONFIG_FILE} (no run was started there). Start it "
                       "without --resume.")
    try:
        config = json.loads(path.read_text("utf-8"))
        config["options"]
    except (ValueError, KeyError) as err:
        raise RunError(f"{path} is damaged ({err}); start a new run in another folder.") from err
    if not (out / "checkpoint.pt").is_file():
        raise RunError(f"cannot resume: {out} has no checkpoint.pt (the run stopped before its first "
                       "checkpoint). Remove the folder and start again.")
    return config


def _final_metrics(s: Setup, cfg: TrainConfig) -> dict[str, Any]:
    """Per-part reports (val, and test when the folder has one) from the trained model."""
    from .metrics import classification_report

    out: dict[str, Any] = {}
    parts = [p for p in ("val", "test") if s.split.parts.get(p)]
    for part in parts:
        if s.features is not None:
            data = s.val_data if part == "val" else _feature_part(s, part)
            target = s.model.head
        else:
            from .features import LabelledImages

            data = s.val_data if part == "val" else LabelledImages(
                s.split.paths(part), s.split.labels(part), s.model.transforms, mode=s.model.image_mode)
            target = s.model
        ev = evaluate(target, data, batch_size=cfg.eval_batch_size, device=cfg.device)
        target.to("cpu")
        report = classification_report(ev["targets"].tolist(), ev["predictions"].tolist(), s.split.classes)
        report["loss"] = ev["loss"]
        out[part] = report
    return out


def _feature_part(s: Setup, part: str) -> Dataset:
    from safetensors.torch import load_file

    feats = load_file(s.features[part]["cache"])["features"]
    return TensorDataset(feats, torch.tensor(s.split.labels(part), dtype=torch.long))
