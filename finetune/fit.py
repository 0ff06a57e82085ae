"""``fit``: fine-tune a pretrained model on a folder of images and leave a complete run folder.

Owns: ``setup`` (load the model, prepare it per strategy, build the training and validation data:
cached features for ``linear``, augmented images otherwise) and ``fit``, which reads in the order a
run happens: start (a new run: choose the schedule, scan and split the folder; a resumed one: the
stored config, split and checkpoint), set up, record (``config.json``), train (the one loop,
``zoo.finetune.loop.train``, keeping the best epoch's weights), finish (those weights, the reports per
part, the model, card and plots through ``zoo.finetune.record``). Every option is a field of
``FinetuneConfig``. May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, TensorDataset

from zoo.errors import ConfigError, RunError
from zoo.model import ZooModel

from .augment import NO_AUGMENTATION, Augmentation, choose_augmentation
from .callbacks import progress_bar_enabled
from .config import FinetuneConfig
from .defaults import BODY_LR_FACTOR, Choice, choose_lr, choose_schedule, head_patience, skip_image_sweep
from .data import Split, scan
from .loop import TrainResult, is_better, resolve_device, train
from .lr_find import sweep_for_run
from .record import BestWeights, base_info, finish_run, folder_identity, new_record, part_reports, restore_best
from .rundir import RunDir
from .run import Run
from .strategies import Plan, prepare

__all__ = ["fit", "setup", "Setup", "default_out", "describe_choices"]


@dataclass
class Setup:
    """A model ready to train and the data for it (what ``fit`` and ``lr_find`` share).

    ``target`` is what the loop trains: the whole model, or only its head when ``linear`` runs on
    cached features (then ``train_data``/``val_data`` are TensorDatasets of features). ``head_data``
    holds the cached features (``train``, ``val``) for the head-alone phase of ``full``/``partial``.
    ``choices`` says what the run chose for the options left None, and why.
    """

    model: ZooModel
    plan: Plan
    split: Split
    target: torch.nn.Module
    train_data: Dataset
    val_data: Dataset
    features: dict[str, Any] | None = None
    augmentation: Augmentation = NO_AUGMENTATION
    head_data: dict[str, Dataset] | None = None
    choices: dict[str, Choice] = field(default_factory=dict)
    head_phase: dict[str, Any] | None = None


def _resolve_model(model: str | Path | ZooModel, *, pretrained: bool) -> ZooModel:
    if isinstance(model, ZooModel):
        return model
    from zoo.factory import load

    return load(model, pretrained=pretrained)


def setup(model: str | Path | ZooModel, split: Split, config: FinetuneConfig, *, progress: bool = False,
          head_features: bool = False) -> Setup:
    """Load and prepare the model per ``config.strategy`` and build the training and validation data.

    ``linear`` with ``cache_features`` computes the body's features once (or reads them from the
    cache) and trains the head on them; no augmentation then, since the images are seen once.
    ``head_features`` computes the same features for the head-alone phase of ``full``/``partial``.
    Training images are augmented as ``zoo.finetune.augment.choose_augmentation`` decides for the
    model's input and the images' size (``augment=False``: not at all).

    Raises:
        UnknownLayerError: ``cut`` or ``unfreeze_from`` names no layer.
        ConfigError: ``augment`` names a kind for in-memory data (fine-tuning takes True or False).
        DataError: a scanned file became unreadable.
    """
    from .features import LabelledImages

    if isinstance(config.augment, str):
        raise ConfigError(f"augment={config.augment!r} is a kind for in-memory data sets (`zoo train`); "
                          "fine-tuning on image files takes augment=True or False.", option="augment")
    # Random initial weights (a new head; the whole network with pretrained=False) come from the
    # global RNG: seed it so a run repeats.
    torch.manual_seed(config.seed)
    net = _resolve_model(model, pretrained=config.pretrained)
    plan = prepare(net, config.strategy, num_classes=split.num_classes, cut=config.cut,
                   unfreeze_from=config.unfreeze_from, head=config.head, hidden=config.hidden,
                   dropout=config.dropout, discriminative=config.pretrained, body_lr_scale=config.body_lr_scale)
    on_features = config.strategy == "linear" and config.cache_features
    # A head on cached features is evaluated on them, test part included; the head-alone phase needs
    # only the parts it trains and selects on (the test images are later read by the trained network).
    parts = split.parts if on_features else ("train", "val")
    feats, data = (_features(net, split, config, progress, parts)
                   if on_features or (head_features and config.cache_features) else (None, None))
    if on_features:
        return Setup(net, plan, split, net.head, data["train"], data["val"], features=feats)
    augmentation = _augmentation(net, split) if config.augment else NO_AUGMENTATION
    train_data = LabelledImages(split.paths("train"), split.labels("train"), augmentation.transform(net),
                                mode=net.image_mode)
    val_data = LabelledImages(split.paths("val"), split.labels("val"), net.transforms, mode=net.image_mode)
    return Setup(net, plan, split, net, train_data, val_data, augmentation=augmentation, head_data=data)


def _features(net: ZooModel, split: Split, config: FinetuneConfig, progress: bool, parts: Any
              ) -> tuple[dict[str, Any], dict[str, Dataset]]:
    """The frozen body's features of ``parts`` (from the cache when the same model saw the same files)."""
    from .features import cached_features, model_key

    loop, key = config.train, model_key(net)
    feats: dict[str, Any] = {}
    data: dict[str, Dataset] = {}
    for part in (p for p in parts if p in split.parts):
        x, hit, path = cached_features(net, split.paths(part), split.hashes(part),  # batch: the Extractor's rule
                                       device=resolve_device(loop.device), num_workers=loop.num_workers,
                                       progress=progress, key=key)
        feats[part] = {"cache": str(path), "hit": hit, "count": int(x.shape[0])}
        data[part] = TensorDataset(x, torch.tensor(split.labels(part), dtype=torch.long))
    net.to("cpu")
    return feats, data


def _augmentation(net: ZooModel, split: Split) -> Augmentation:
    """The augmentation for this model's input and these images (their median shorter side and how many
    a class)."""
    from .datasets import infer_input

    if net.preprocessing is None:
        return NO_AUGMENTATION
    image_side = infer_input(split.paths("train"))[0] if split.train else None
    per_class = len(split.train) / max(1, split.num_classes)
    return choose_augmentation(min(net.preprocessing.crop), image_side, per_class)


def fit(model: str | Path | ZooModel, data_dir: str | Path, config: FinetuneConfig | None = None, *,
        out: str | Path | None = None, resume: bool = False, progress: bool | None = None,
        command: str | None = None, callbacks: dict[str, list[Callable]] | None = None,
        on_setup: Callable[[Setup], None] | None = None, split: Split | None = None, **options: Any) -> Run:
    """Fine-tune ``model`` on the images in ``data_dir`` and return the run.

    Args:
        model: a registry name (``resnet18``), a saved model or run folder, or a ``ZooModel``.
        data_dir: a folder of class folders, or ``train/`` and ``val/`` (and ``test/``) folders of them.
        config: every option (``FinetuneConfig``); default ``FinetuneConfig()``.
        out: the run folder (default ``runs/<data folder name>``, numbered if taken).
        resume: continue the interrupted run in ``out`` with its stored config, split and checkpoint.
        progress: default (None): progress bars only when stderr is a terminal (so a log file gets no
            carriage-return frames) and the loop's summary line per epoch always; True: bars for the
            set-up too off a terminal; False: neither (the CLI then prints its own lines, or nothing).
        command: the command line to record (the CLI passes its own).
        callbacks: passed to the loop (events ``on_step_end``, ``on_epoch_end``, ``on_checkpoint``).
        on_setup: called with the ``Setup`` before training (tests and tools use it to look inside).
        split: this split of ``data_dir`` instead of scanning it (a study scans once and runs every
            trial on the same split; without a ``test`` part, no test figure is computed).
        **options: ``FinetuneConfig`` fields, or the loop's (``batch_size``, ``seed``, ``device``...),
            applied over ``config``: ``fit(m, d, strategy="full", lr=1e-3)``. With ``resume`` they
            change the stored config (``epochs=`` to extend a run, ``device=`` to move it).

    Returns:
        The ``Run``: ``run.model`` loads the fine-tuned model (the best epoch's weights by the
        validation metric; epoch 0, the head alone on the pretrained body, when no epoch that trained
        the body beat it), ``run.summary`` holds the final metrics.

    Raises:
        DataError: the folder cannot be used (the message says why and what to do).
        UnknownLayerError: ``cut``/``unfreeze_from`` names no layer (valid names listed).
        ConfigError: an unknown option or a bad value (valid choices named).
        RunError: ``out`` already holds a run (pass ``resume=True`` or another ``out``), or resume finds
            nothing to resume.
        KeyboardInterrupt: after the loop saved a checkpoint; ``resume=True`` continues.

    Example:
        >>> run = zoo.finetune.fit("resnet18", "photos/", strategy="linear", epochs=10)  # doctest: +SKIP
        >>> run.summary["val"]["accuracy"]                                              # doctest: +SKIP
        >>> model = zoo.load(run.path)                                                  # doctest: +SKIP
    """
    data_dir = Path(data_dir).expanduser()
    bars = progress_bar_enabled() if progress is None else progress
    if resume and split is not None:
        raise ConfigError("resume continues on the run's stored split; drop split=.", option="split")
    if resume:
        run_dir, config, record, split, model = _resume(model, out, config, options, command)
        s = setup(model, split, config, progress=bars)
    else:
        run_dir, config, split, command = _start(model, data_dir, config, options, out, command, split)
        s, config = _choose(model, split, config, progress=bars)
        record = new_record("finetune", command=command, model_ref=None if isinstance(model, ZooModel) else str(model),
                            base=base_info(s.model, pretrained=config.pretrained), data=folder_identity(split),
                            config=config, plan=s.plan.describe(), device=str(resolve_device(config.train.device)))
        record["chosen"] = {k: c.to_dict() for k, c in s.choices.items()}
        record["augmentation"] = s.augmentation.to_dict()
        record["head_phase"] = s.head_phase
        run_dir.write_split(split)
        if progress is None:  # library use: say what was chosen, as the loop says each epoch (the CLI prints its own)
            for line in describe_choices(s):
                print(line, file=sys.stderr, flush=True)
    if on_setup is not None:
        on_setup(s)
    run_dir.write_record(record)
    baseline = _head_baseline(record.get("head_phase"), config.train.monitor)
    if baseline and not resume and _writes():
        run_dir.save_best(s.target, 0)  # the candidate to beat: the pretrained body under the trained head
    result = _train(s, config, run_dir, resume=resume, progress=progress is not False, callbacks=callbacks,
                    baseline=baseline)
    return _finish(s, config, run_dir, record, result, baseline)


def _choose(model: Any, split: Split, config: FinetuneConfig, *, progress: bool) -> tuple[Setup, FinetuneConfig]:
    """A new run's set-up with every option left None chosen from the data and the model: the schedule
    from the number of images, the augmentation from the image and input sizes (in ``setup``), the
    learning rate by the LR finder; for ``full``/``partial`` from pretrained weights, the new head first
    trains alone on cached features (fastai's ``fine_tune``: frozen, then unfrozen)."""
    config, choices = choose_schedule(config, len(split.train))
    head_first = config.head_epochs > 0
    # From pretrained weights, the learning rate comes from the head's sweep on cached features, which
    # costs next to nothing; a sweep over the images would cost as much as several epochs.
    head_sweep = config.lr is None and (head_first or (config.strategy != "linear" and config.pretrained))
    s = setup(model, split, config, progress=progress, head_features=head_first or head_sweep)
    s.choices = choices
    what = "the new head (cached features)"
    found = sweep_for_run(s.model.head, s.head_data["train"], config) if head_sweep else None
    if head_first:  # a rate given is the head's too, as fastai's fine_tune(base_lr) trains its frozen phase at it
        s.head_phase = _train_head(s, config, choose_lr(found, what=what) if found is not None else
                                   Choice(config.lr, "the learning rate given, as for the whole network after"))
    if found is not None:
        choices["lr"] = choose_lr(found, what=what, factor=BODY_LR_FACTOR)
    elif config.lr is None:
        what = ("the head (cached features)" if s.features is not None else
                f"the {s.plan.trainable:,} trainable parameters ({len(split.train)} images)")
        standard = None if s.features is not None else skip_image_sweep(config, len(split.train))
        choices["lr"] = standard or choose_lr(sweep_for_run(s.target, s.train_data, config, s.plan.param_groups),
                                              what=what)
    if "lr" in choices:
        config = dataclasses.replace(config, lr=choices["lr"].value)
    return s, config


def _train_head(s: Setup, config: FinetuneConfig, lr: Choice) -> dict[str, Any]:
    """The new head alone on the frozen body's cached features, its best epoch kept (in memory): the
    body then starts training under a head that already fits, not a random one."""
    cfg = dataclasses.replace(dataclasses.replace(config, lr=lr.value).loop_config(), epochs=config.head_epochs,
                              warmup_epochs=0.0,
                              early_stopping=head_patience(config.head_epochs), checkpoint_interval=0.0)
    best = _BestInMemory(cfg.monitor)
    result = train(s.model.head, s.head_data["train"], s.head_data["val"], cfg, progress=False,
                   callbacks={"on_epoch_end": [best]})
    s.model.head.load_state_dict(best.state)
    s.model.to("cpu")
    row = best.row
    return {"epochs": len(result.history), "planned": config.head_epochs, "lr": lr.value, "lr_why": lr.why,
            "best_epoch": row.get("epoch"), "val_acc": row.get("val_acc"), "val_loss": row.get("val_loss")}


class _BestInMemory:
    """``on_epoch_end``: a copy of the weights of the best epoch so far (the loop's rule)."""

    def __init__(self, monitor: str):
        self.monitor, self.row, self.state = monitor, {}, None

    def __call__(self, info: dict[str, Any]) -> None:
        if self.state is None or is_better(info["row"], self.row, self.monitor):
            self.row, self.state = dict(info["row"]), copy.deepcopy(info["model"].state_dict())


def describe_choices(s: Setup) -> list[str]:
    """What the run chose and why, one line each (``zoo finetune`` prints them; ``fit`` does when
    called from Python)."""
    lines = [c.line(name) for name, c in s.choices.items()]
    lines.append(f"augmentation: {s.augmentation.describe()}" + (f" ({s.augmentation.why})" if s.augmentation.why
                                                                 else ""))
    h = s.head_phase
    if h:
        lines.append(f"head alone on cached features: {h['epochs']} epochs at lr {h['lr']:.3g}, best epoch "
                     f"{h['best_epoch']} (val_acc {h['val_acc']:.4f}); now the whole network trains")
    return lines


def default_out(data_dir: str | Path) -> Path:
    """Where a run on ``data_dir`` goes when no folder is given: ``runs/<data folder name>``, numbered
    (``-2``, ``-3``...) when taken."""
    return RunDir.fresh(Path(data_dir).expanduser().resolve().name).path


def _start(model: Any, data_dir: Path, config: FinetuneConfig | None, options: dict[str, Any],
           out: str | Path | None, command: str | None,
           split: Split | None = None) -> tuple[RunDir, FinetuneConfig, Split, str]:
    """A new run: the config (schedule chosen per strategy), a free folder, the split, the command."""
    given = (config or FinetuneConfig()).with_options(**options)
    run_dir = RunDir(out if out is not None else default_out(data_dir))
    if run_dir.holds_run():
        raise RunError(f"{run_dir.path} already holds a run. Continue it with --resume (resume=True), or pass "
                       "another --out to start a new one.")
    split = split if split is not None else scan(data_dir, valid_pct=given.valid_pct, seed=given.seed)
    return run_dir, given, split, command or _python_command(model, data_dir, given)


def _resume(model: Any, out: str | Path | None, config: FinetuneConfig | None, changes: dict[str, Any],
            command: str | None) -> tuple[RunDir, FinetuneConfig, dict[str, Any], Split, Any]:
    """An interrupted run: its stored config with ``changes``, its record, split (re-verified) and model."""
    from .record import open_resumed

    run_dir, config, record = open_resumed(out, config, changes, command)
    split = run_dir.read_split(verify=True)
    model_ref = model if isinstance(model, ZooModel) else (record.get("model") or record["base"]["name"])
    return run_dir, config, record, split, model_ref


def _python_command(model: Any, data_dir: Path, config: FinetuneConfig) -> str:
    """``zoo.finetune.fit(...)`` with the options that differ from the defaults, for the record."""
    default, mine = FinetuneConfig().to_dict(), config.to_dict()
    changed = {k: v for k, v in mine.items() if k != "train" and v != default[k]}
    changed.update({k: v for k, v in mine["train"].items() if v != default["train"][k]})
    shown = "".join(f", {k}={v!r}" for k, v in changed.items())
    name = model.name if isinstance(model, ZooModel) else str(model)
    return f"zoo.finetune.fit({name!r}, {str(data_dir)!r}{shown})"


def _head_baseline(head_phase: dict[str, Any] | None, monitor: str) -> dict[str, Any] | None:
    """The head-alone phase as epoch 0 of the run (its validation figures are the whole network's with
    the body as pretrained, so the epochs that train the body must beat it to be kept), or None when
    there was no such phase or it has no figure for ``monitor``."""
    if not head_phase or head_phase.get(monitor) is None:
        return None
    return {"epoch": 0, "val_acc": head_phase.get("val_acc"), "val_loss": head_phase.get("val_loss"),
            "phase": "head alone"}


def _writes() -> bool:
    from zoo.registry import env

    return env.distributed().rank == 0


def _train(s: Setup, config: FinetuneConfig, run_dir: RunDir, *, resume: bool, progress: bool,
           callbacks: dict[str, list[Callable]] | None, baseline: dict[str, Any] | None = None) -> TrainResult:
    """The loop over ``s.target``, with the best epoch's weights kept in the run folder (``baseline``:
    an epoch 0 to beat, the head-alone phase's)."""
    cfg = config.loop_config()
    events = {k: list(v) for k, v in (callbacks or {}).items()}
    # First, so a caller's callback that stops the run cannot skip it.
    events.setdefault("on_epoch_end", []).insert(0, BestWeights(run_dir, cfg.monitor, write=_writes(),
                                                                baseline=baseline))
    return train(s.target, s.train_data, s.val_data, cfg, run_dir=run_dir.path, param_groups=s.plan.param_groups,
                 resume=resume, progress=progress, callbacks=events)


def _finish(s: Setup, config: FinetuneConfig, run_dir: RunDir, record: dict[str, Any], result: TrainResult,
            baseline: dict[str, Any] | None = None) -> Run:
    """The best epoch's weights back in place (epoch 0: the head alone, when no epoch beat it), the
    reports per part, and the finished folder."""
    weights_epoch = restore_best(run_dir, s.target, result)
    if weights_epoch == 0 and baseline:
        result = dataclasses.replace(result, best=baseline)
    cfg = config.loop_config()
    reports = part_reports(s.target, _eval_parts(s), s.split.classes, batch_size=cfg.eval_batch_size,
                           device=cfg.device)
    finish_run(run_dir, s.model, record=record, result=result, reports=reports, weights_epoch=weights_epoch,
               split=s.split, extra={"weights": "best", "features": s.features, "skipped": len(s.split.skipped),
                                     "counts": s.split.counts()})
    return Run(run_dir.path)


def _eval_parts(s: Setup) -> dict[str, Dataset]:
    """``val``, and ``test`` when the folder has one, in the form the target takes."""
    parts: dict[str, Dataset] = {"val": s.val_data}
    if s.split.parts.get("test"):
        if s.features is not None:
            from safetensors.torch import load_file

            feats = load_file(s.features["test"]["cache"])["features"]
            parts["test"] = TensorDataset(feats, torch.tensor(s.split.labels("test"), dtype=torch.long))
        else:
            from .features import LabelledImages

            parts["test"] = LabelledImages(s.split.paths("test"), s.split.labels("test"), s.model.transforms,
                                           mode=s.model.image_mode)
    return parts
