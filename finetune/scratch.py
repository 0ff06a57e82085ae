"""From-scratch training of the reference architectures: the library function behind ``zoo train``.

Owns: ``scratch_config`` (an architecture's recipe as a ``FinetuneConfig``), ``train_scratch`` (build
``<arch>.scratch`` from random weights for the data's channels, size and classes, train it with the
shared loop, and leave the same run folder as ``fit``: ``config.json`` with the exact command and the
data's identity, the split for a folder, metrics, card, plots, the model) and ``build_scratch_model``.
A folder trains at the size and colour its images suggest, up to the recipe's ``max_side`` (or
``input_size``/``grey``); the built-in data sets bring their own. A recipe's schedule and augmentation
are for its own data set (tens of thousands of images): on a folder, what the caller leaves out of the
schedule, the learning rate and the augmentation is chosen from the data as fine-tuning chooses it
(``zoo.finetune.defaults``), and recorded with the reason; with the learning rate left to the sweep,
the optimizer settings are fine-tuning's too (AdamW, cosine), not the recipe's. ``folder_config`` is that
starting point as a config (a search's trials on a folder start from it). Under ``torchrun`` the
loop runs DDP; rank 0 writes.

May import ``zoo``, ``zoo.registry`` and ``zoo.finetune``; never ``zoo.cli``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ConfigError, DataError, RunError
from zoo.registry import catalog, env
from zoo.registry.schema import Preprocessing

from .augment import choose_augmentation
from .config import MONITOR, SCHEDULE_FIELDS, FinetuneConfig
from .data import Split, scan
from .datasets import (BUILTIN, MAX_INPUT_SIDE, TensorImageDataset, infer_input, load_dataset, split_tensors,
                       tensor_digest)
from .defaults import Choice, choose_lr, choose_schedule, skip_image_sweep
from .loop import TrainConfig, TrainResult, train
from .recipes import recipe_for
from .record import BestWeights, finish_run, folder_identity, new_record, open_resumed, part_reports, restore_best
from .run import Run
from .rundir import RunDir

__all__ = ["train_scratch", "scratch_config", "folder_config", "default_out", "build_scratch_model",
           "train_flops_per_sample", "FLAT_BUILDERS"]

FLAT_BUILDERS = ("softmax", "mlp_sigmoid", "mlp_relu")  # these need the input size
SMALL_STEM_BUILDERS = ("googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
# A recipe is a fixed schedule: no early stopping, no head-alone phase (no pretrained features). A caller's
# config on a built-in data set gets the loop's defaults for what it leaves None, never a strategy's.
STRATEGY_FREE = {**{k: getattr(TrainConfig(), k) for k in SCHEDULE_FIELDS}, "early_stopping": 0, "head_epochs": 0}
# On a folder, these come from the data unless given, and the optimizer settings are fine-tuning's: a
# recipe's epochs, batch, rate and optimizer are sized for a built-in data set of tens of thousands of
# images, and its flips are for clothes, not digits. lenet on 400 real MNIST digits scored 78.4% with its
# recipe, resnet18 on 96 photos 16.7% (chance); see BENCHMARKS.md, "zoo train on a folder".
FROM_DATA = (*SCHEDULE_FIELDS, "augment")


def _architecture(arch: str) -> tuple[str, dict[str, Any], str, Any]:
    """(builder, entry kwargs, entry name, entry) for ``lenet``, ``lenet.scratch`` or a bare builder.

    Raises:
        ConfigError: ``arch`` names pretrained weights (fine-tuning starts from those).
        DataError: the entry is not one of the zoo's reference architectures.
        RegistryError: no such architecture (the valid builders named).
    """
    name = arch if "." in arch else f"{arch}.scratch"
    cat = catalog()
    if name in cat:
        entry = cat.get(name)
        if entry.architecture.library != "zoo":
            raise DataError(f"{name} is a {entry.architecture.library} entry; `zoo train` builds the zoo's "
                            "reference architectures (`zoo list --source zoo`)")
        if entry.files:
            # One meaning per command: `zoo train` starts from random weights; starting from trained
            # weights is fine-tuning, with its own strategies and learning rates (a recipe's from-scratch
            # learning rate would wreck pretrained features).
            raise ConfigError(f"{entry.name} holds pretrained weights, and `zoo train` trains from random weights. "
                              f"To start from those weights, fine-tune them: `zoo finetune {entry.name} DATA_DIR "
                              f"--strategy full`; to train the architecture from scratch: `zoo train "
                              f"{entry.architecture.builder}`.", option="arch")
        return entry.architecture.builder, dict(entry.architecture.kwargs), entry.name, entry
    from zoo.archs import BUILDERS, build

    if arch in BUILDERS:
        return arch, {}, "", None
    build(arch, in_chans=1, num_classes=2)  # raises RegistryError naming the valid builders
    raise AssertionError("unreachable")


def scratch_config(arch: str, **options: Any) -> FinetuneConfig:
    """The config ``train_scratch`` uses for ``arch`` by default: its recipe (``zoo.finetune.recipes``)
    as a ``FinetuneConfig`` (every layer trains, from random weights), with ``options`` applied.

    Example:
        >>> scratch_config("lenet", epochs=2).train.optimizer
        'adamw'
    """
    builder = _architecture(arch)[0]
    recipe = recipe_for(builder)
    loop = {"monitor": MONITOR, **{k: v for k, v in recipe.config.items() if k not in SCHEDULE_FIELDS}}
    schedule = {k: recipe.config.get(k, getattr(TrainConfig(), k)) for k in SCHEDULE_FIELDS}
    config = FinetuneConfig(strategy="full", pretrained=False, augment=recipe.augment, train=TrainConfig(**loop),
                            **schedule).with_options(**options)
    if "channels_last" not in options:  # NHWC pays off for convnets on a GPU only
        on_gpu = torch.cuda.is_available() and config.train.device != "cpu"
        config = config.with_options(channels_last=on_gpu and builder not in FLAT_BUILDERS)
    return config


def build_scratch_model(arch: str, *, in_chans: int, num_classes: int, image_size: int,
                        preprocessing: Preprocessing, labels: list[str] | None = None, name: str = "",
                        options: dict[str, Any] | None = None):
    """A randomly initialised ``ZooModel`` of ``arch`` for inputs of ``in_chans`` x ``image_size``,
    built with the entry's builder options and ``options`` over them (``FinetuneConfig.arch_options``).

    Flat networks get ``image_size``; GoogLeNet and ResNets get the small-input stem for inputs up to
    64 px (larger inputs get the ImageNet stem). The model carries a build spec so
    ``zoo.factory.save_model`` / ``zoo.load`` round-trip it.
    """
    from zoo import archs
    from zoo.model import BuildSpec, ZooModel, split_classifier

    builder, kwargs, base, _ = _architecture(arch)
    kwargs.update(options or {})
    if builder in FLAT_BUILDERS:
        kwargs["image_size"] = image_size
    if builder in SMALL_STEM_BUILDERS:
        kwargs["small_input"] = image_size <= 64
    network, path = archs.build(builder, in_chans=in_chans, num_classes=num_classes, **kwargs)
    body, head = split_classifier(network, path)
    return ZooModel(body, head, num_features=head.in_features, name=name or base or builder, labels=labels,
                    preprocessing=preprocessing, base=base or builder,
                    build=BuildSpec(library="zoo", builder=builder, kwargs=kwargs, in_chans=in_chans,
                                    num_classes=num_classes))


def train_flops_per_sample(model: torch.nn.Module, input_size: tuple[int, int, int]) -> float:
    """Training FLOPs per sample, taken as 3x the forward FLOPs that torch's FlopCounterMode counts
    (backward costs about twice the forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_size, device=device))
    model.train(was_training)
    return 3.0 * counter.get_total_flops()


@dataclass
class _Data:
    """The in-memory data of a run: ``val`` is None for a built-in data set (its test split is the
    per-epoch evaluation, so no epoch is chosen by it); ``split`` is a folder's."""

    train: TensorImageDataset
    val: TensorImageDataset | None
    test: TensorImageDataset | None
    identity: dict[str, Any]
    split: Split | None = None
    choices: dict[str, Choice] = field(default_factory=dict)  # what was chosen from the data, and why

    @property
    def monitor(self) -> TensorImageDataset:
        return self.val if self.val is not None else self.test


def _augment(config: FinetuneConfig, recipe_augment: str | None) -> str | None:
    return recipe_augment if config.augment is True else "none" if config.augment is False else config.augment


def _builtin(data: str, config: FinetuneConfig, augment: str, root: Any) -> _Data:
    if config.input_size is not None or config.grey is not None:
        raise ConfigError(f"{data} brings its own input size and colour; input_size and grey apply to image "
                          "folders.", option="input_size" if config.input_size is not None else "grey")
    train_ds = load_dataset(data, "train", classes=config.classes, augment=augment, root=root, seed=config.seed)
    identity = {"kind": "dataset", "name": data.lower(), "classes": list(train_ds.classes),
                "class_indices": list(config.classes) if config.classes else None}
    if config.hold_out:  # validation from the training split; the test split is not even loaded
        val_ds, train_part = _hold_out(train_ds, config.valid_pct, config.seed)
        identity.update(sizes={"train": len(train_part), "val": len(val_ds)},
                        held_out={"valid_pct": config.valid_pct, "seed": config.seed},
                        sha256={"train": tensor_digest(train_ds.images, train_ds.labels),
                                "val": tensor_digest(val_ds.images, val_ds.labels)})
        return _Data(train_part, val_ds, None, identity)
    stats = (train_ds.mean.flatten().tolist(), train_ds.std.flatten().tolist())
    test_ds = load_dataset(data, "test", classes=config.classes, root=root, stats=stats)
    identity.update(sizes={"train": len(train_ds), "test": len(test_ds)},
                    sha256={part: tensor_digest(ds.images, ds.labels) for part, ds in (("train", train_ds),
                                                                                     ("test", test_ds))})
    return _Data(train_ds, None, test_ds, identity)


def _hold_out(data: TensorImageDataset, valid_pct: float, seed: int) -> tuple[TensorImageDataset, ...]:
    """(validation, training) parts of ``data``: ``valid_pct`` of each class (at least one image), drawn by
    ``seed``; the validation part is not augmented."""
    generator = torch.Generator().manual_seed(seed)
    val = []
    for label in torch.unique(data.labels).tolist():
        members = torch.nonzero(data.labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        val.append(members[:max(1, round(valid_pct * len(members)))])
    held = torch.zeros(len(data.labels), dtype=torch.bool)
    held[torch.cat(val)] = True
    stats = {"mean": data.mean.flatten().tolist(), "std": data.std.flatten().tolist(), "name": data.name}
    return (TensorImageDataset(data.images[held], data.labels[held], data.classes, **stats),
            TensorImageDataset(data.images[~held], data.labels[~held], data.classes, augment=data.augment, **stats))


def _folder(split: Split, config: FinetuneConfig, augment: str | None,
            max_side: int | None = None) -> tuple[_Data, FinetuneConfig]:
    """A folder's parts in memory, at the size and colour chosen (recorded in the config); ``augment``
    None: chosen from the input size and the number of images (recorded in the config too)."""
    if config.classes is not None:
        raise ConfigError("classes picks classes of a built-in data set; for a folder, keep only the class "
                          "folders you want.", option="classes")
    side, grey, why = infer_input(split.paths("train"), max_side=max_side or MAX_INPUT_SIDE)
    if max_side and side == max_side < MAX_INPUT_SIDE:
        why += " (the architecture is built for small inputs)"
    chosen = {"input_size": config.input_size or side, "grey": grey if config.grey is None else config.grey}
    given = [k for k in chosen if getattr(config, k) is not None]
    config = replace(config, **chosen)
    choices, pad = {}, 2
    if augment is None:
        choices["augment"], pad = _augment_from_data(config.input_size, len(split.train) / len(split.classes))
        augment = choices["augment"].value
        config = replace(config, augment=augment)
    size = (1 if config.grey else 3, config.input_size, config.input_size)
    images, labels = split_tensors(split, "train", size)
    from .datasets import dataset_stats

    mean, std = dataset_stats(images)
    std = tuple(max(s, 1e-3) for s in std)

    def part(name: str, aug: str = "none") -> TensorImageDataset:
        x, y = (images, labels) if name == "train" else split_tensors(split, name, size)
        return TensorImageDataset(x, y, split.classes, mean=mean, std=std, augment=aug, pad=pad, name=str(split.root))

    identity = folder_identity(split)
    identity["input"] = {"size": list(size), "from": "options" if len(given) == 2 else
                         f"the images ({why})" + (f"; {', '.join(given)} given" if given else "")}
    test = part("test") if split.test else None
    return _Data(part("train", augment), part("val"), test, identity, split, choices), config


def _augment_from_data(side: int, per_class: float) -> tuple[Choice, int]:
    """Fine-tuning's augmentation policy (``choose_augmentation``) for in-memory images already at the
    input size: none, or shifts (padding by an eighth of the side) and flips."""
    policy = choose_augmentation(side, side, per_class)
    if policy.kind == "none":
        return Choice("none", policy.why), 2
    if policy.kind == "shift_flip":
        return Choice("crop_flip", policy.why), policy.pad
    pad = side // 8  # photo-sized: no resized crops on tensors, so shifts by an eighth, as for small inputs
    return Choice("crop_flip", f"{side} px images held in memory at the input size: shifts of up to {pad} px and "
                               "flips"), pad


def _preprocessing(ds: TensorImageDataset) -> Preprocessing:
    c, h, w = ds.input_size
    return Preprocessing(input_size=(c, h, w), resize=max(h, w), interpolation="bilinear",
                         mean=tuple(float(m) for m in ds.mean.flatten()), std=tuple(float(s) for s in ds.std.flatten()),
                         channel_order="L" if c == 1 else "RGB")


def train_scratch(arch: str, data: str | Path, config: FinetuneConfig | None = None, *,
                  out: str | Path | None = None, resume: bool = False, progress: bool | None = None,
                  command: str | None = None, data_root: str | Path | None = None,
                  callbacks: dict[str, list[Callable]] | None = None,
                  on_start: Callable[[dict[str, Any]], None] | None = None, split: Split | None = None,
                  **options: Any) -> Run:
    """Train a reference architecture from random weights and leave a run folder like ``fit``'s.

    Args:
        arch: ``lenet``, ``lenet.scratch``, ``resnet18`` ... (``zoo list --source zoo``). A name with
            pretrained weights (``lenet.fmnist5``) is refused: fine-tune it instead.
        data: ``fashion-mnist``, ``mnist``, ``cifar10``, or a folder of class folders (its validation
            part chooses the epoch whose weights are kept; a built-in data set keeps the last epoch's).
        config: the options; default ``scratch_config(arch)`` (the recipe), on a folder with what the
            caller leaves out chosen from the data (``folder_config``). On a folder, a config's schedule
            fields left None and its augmentation left True are chosen from the data too.
        out: the run folder (default ``runs/<arch>-<data name>``, numbered if taken).
        resume: continue the interrupted run in ``out`` with its stored config.
        progress: default (None): the loop's progress bar only when stderr is a terminal (so a log file
            gets no carriage-return frames) and its summary line per epoch always; False: neither (the
            CLI then prints its own lines, or nothing).
        command: the command line to record (the CLI passes its own).
        data_root: where the built-in data sets live.
        callbacks: passed to the loop, e.g. a time budget that raises ``StopTraining``.
        on_start: called with the run's record (data identity, chosen input) before training.
        split: a folder: this split of it (``zoo.finetune.data.Split``) instead of scanning it (a study
            scans once and runs every trial on the same split).
        **options: fields of ``FinetuneConfig`` or of the loop, over ``config`` (with ``resume``: over
            the stored config, e.g. ``epochs=`` to extend the run).

    Returns:
        The ``Run`` (``run.summary["test"]`` for a built-in data set's test split).

    Raises:
        DataError: the data cannot be found or used; RegistryError: an unknown architecture;
        ConfigError: pretrained weights named, a bad option; RunError: ``out`` holds a run, or nothing
        to resume.

    Example:
        >>> run = train_scratch("lenet", "fashion-mnist", epochs=1)      # doctest: +SKIP
        >>> run.summary["test"]["accuracy"]                              # doctest: +SKIP
    """
    builder, _, _, entry = _architecture(arch)  # an unknown arch fails here, before any data is read
    recipe = recipe_for(builder)
    auto = _from_data(data, config, options, resume)
    own = config is not None  # a caller's own config keeps its optimizer settings
    run_dir, config, record = _open(arch, data, config, options, out=out, resume=resume)
    config = _leave_to_data(config, auto, {} if own else recipe.config, options)
    augment = None if "augment" in auto else recipe.augment
    loaded, config = _load(data, config, augment, data_root, run_dir if resume else None, split, recipe.max_side)
    if auto:
        config, chosen = choose_schedule(config, len(loaded.train))
        loaded.choices.update(chosen)
    if record is not None and record["data"].get("sha256") != loaded.identity["sha256"]:
        raise DataError(f"cannot resume {run_dir.path}: the data changed since the run started (its digest differs "
                        f"from {run_dir.config.name}); restore the data or start a new run.")
    model, config = _model(arch, loaded, config)
    if config.lr is None:
        config = _find_lr(model, loaded, config)
    if record is None:
        shown = "".join(f", {k}={v!r}" for k, v in options.items())
        command = command or f"zoo.finetune.train_scratch({arch!r}, {str(data)!r}{shown})"
        follows = all(getattr(config.train, k) == v for k, v in recipe.config.items() if k in ("optimizer", "schedule"))
        used = recipe.name if follows and "lr" not in auto else None  # the card names the recipe it trained with
        record = _new_record(arch, builder, entry, used, model, loaded, config, command)
    master = env.distributed().rank == 0
    if on_start is not None:
        on_start(record)
    if master:
        run_dir.write_record(record)
        if loaded.split is not None and not resume:
            run_dir.write_split(loaded.split)
    result = _train(model, loaded, config, run_dir, resume=resume, progress=progress is not False,
                    callbacks=callbacks)
    if master:
        _finish(model, loaded, config, run_dir, record, result)
    _barrier()
    return Run(run_dir.path)


def _model(arch: str, data: _Data, config: FinetuneConfig) -> tuple[Any, FinetuneConfig]:
    """The run's randomly initialised model for ``data`` (seeded by the run), and ``config`` with the
    training FLOPs per sample on a GPU (the loop's utilisation figure)."""
    torch.manual_seed(config.seed)  # the weights are part of the run: seed them too
    c, h, _ = data.train.input_size
    model = build_scratch_model(arch, in_chans=c, num_classes=len(data.train.classes), image_size=h,
                                preprocessing=_preprocessing(data.train), labels=list(data.train.classes),
                                options=config.arch_options)
    if config.train.flops_per_sample is None and torch.cuda.is_available() and config.train.device != "cpu":
        config = config.with_options(flops_per_sample=train_flops_per_sample(model, data.train.input_size))
    return model, config


def folder_config(arch: str, **options: Any) -> FinetuneConfig:
    """The config a run of ``arch`` on a folder starts from when the caller gives none: the recipe's, with
    what ``options`` leave out of ``FROM_DATA`` left to the data (None; augmentation True) and, when the
    rate is left to the data, fine-tuning's optimizer settings. A search on a folder starts its trials
    from it, so a trial differs from a run with no flags only by what the trial sets.

    Example:
        >>> folder_config("resnet18").train.optimizer, folder_config("resnet18").lr
        ('adamw', None)
    """
    auto = tuple(f for f in FROM_DATA if f not in options)
    return _leave_to_data(scratch_config(arch, **options), auto, recipe_for(_architecture(arch)[0]).config, options)


def _from_data(data: str | Path, config: FinetuneConfig | None, options: dict[str, Any],
               resume: bool) -> tuple[str, ...]:
    """The fields of ``FROM_DATA`` a new run on a folder chooses from the data: those the caller did not
    give, or, with a config of the caller's own (a search's trial, say), those it leaves None (and the
    augmentation when it is True, the run's default). None for a built-in data set (its recipe is for
    it), a resumed run (its stored config) and under torchrun (every rank must agree without a sweep)."""
    if resume or str(data).lower() in BUILTIN or env.distributed().world > 1:
        return ()
    if config is None:
        return tuple(f for f in FROM_DATA if f not in options)
    own = config.with_options(**options)  # what it leaves None (the augmentation: True) is the data's
    return tuple(f for f in FROM_DATA if (own.augment is True if f == "augment" else getattr(own, f) is None))


def _leave_to_data(config: FinetuneConfig, auto: tuple[str, ...], recipe: dict[str, Any],
                   options: dict[str, Any]) -> FinetuneConfig:
    """``config`` with the fields in ``auto`` left to the data: None (schedule), True (augmentation: the
    run's default); with the rate swept, fine-tuning's optimizer settings for those the recipe sets and
    the caller did not give (the recipes' SGD rates suit batches of 128 and more, not a swept rate)."""
    config = replace(config, **{f: None if f in SCHEDULE_FIELDS else True for f in auto})
    if "lr" in auto:
        loop = {k: getattr(TrainConfig(), k) for k in recipe if k not in SCHEDULE_FIELDS and k not in options}
        config = replace(config, train=replace(config.train, **loop))
    return config


def _find_lr(model: torch.nn.Module, data: _Data, config: FinetuneConfig) -> FinetuneConfig:
    """``config`` with the learning rate from the LR sweep on the training images; the choice is kept
    in ``data.choices``."""
    from .lr_find import sweep_for_run

    what = f"the {sum(p.numel() for p in model.parameters()):,} parameters ({len(data.train)} images)"
    data.choices["lr"] = (skip_image_sweep(config, len(data.train))
                          or choose_lr(sweep_for_run(model, data.train, config), what=what))
    return replace(config, lr=data.choices["lr"].value)


def default_out(arch: str, data: str | Path) -> Path:
    """Where a run goes when no folder is given: ``runs/<arch>-<data name>``, numbered when taken."""
    name = str(data).lower() if str(data).lower() in BUILTIN else Path(data).expanduser().resolve().name
    return RunDir.fresh(f"{arch.split('.')[0]}-{name}").path


def _open(arch: str, data: str | Path, config: FinetuneConfig | None, options: dict[str, Any], *,
          out: str | Path | None, resume: bool) -> tuple[RunDir, FinetuneConfig, dict[str, Any] | None]:
    """The folder and config of a new run, or of the interrupted run in ``out`` (with its record)."""
    if resume:
        return open_resumed(out, config, options)
    config = (config or scratch_config(arch)).with_options(**options)
    place = env.distributed()
    if out is None and place.world > 1:
        raise RunError("under torchrun every process must write to the same run folder: pass out=... (--out).")
    run_dir = RunDir(out if out is not None else default_out(arch, data))
    # Rank 0 alone checks: it may already have started the run when another rank gets here.
    if place.rank == 0 and run_dir.holds_run():
        raise RunError(f"{run_dir.path} already holds a run. Continue it with --resume (resume=True), or pass "
                       "another --out to start a new one.")
    return run_dir, config.with_defaults(STRATEGY_FREE), None


def _load(data: str | Path, config: FinetuneConfig, recipe_augment: str | None, root: Any,
          resumed: RunDir | None, given: Split | None = None,
          max_side: int | None = None) -> tuple[_Data, FinetuneConfig]:
    augment = _augment(config, recipe_augment)
    if str(data).lower() in BUILTIN:
        if given is not None:
            raise ConfigError(f"split= applies to a folder; {data} has its own parts (hold_out=True holds "
                              "validation out of its training part).", option="split")
        return _builtin(str(data), config, augment, root), config
    folder = Path(data).expanduser()
    if not folder.is_dir():
        raise DataError(f"--data {str(data)!r} is neither a built-in data set ({', '.join(BUILTIN)}) nor a folder")
    if resumed is not None and given is not None:
        raise ConfigError("resume continues on the run's stored split; drop split=.", option="split")
    if resumed is not None:
        split = resumed.read_split(verify=True)
    else:
        split = given if given is not None else scan(folder, valid_pct=config.valid_pct, seed=config.seed)
    return _folder(split, config, augment, max_side)


def _new_record(arch: str, builder: str, entry: Any, recipe: str | None, model: torch.nn.Module, data: _Data,
                config: FinetuneConfig, command: str) -> dict[str, Any]:
    """The record of a new run from scratch: the architecture's entry (its code's licence; the weights
    inherit none) and recipe, the data's identity, the config."""
    base = {"name": entry.name if entry is not None else builder, "architecture": builder, "pretrained": False,
            "recipe": recipe,
            "license": getattr(entry, "license", "unknown"), "origin": getattr(entry, "origin", ""),
            "preprocessing": None}
    plan = {"strategy": "scratch", "trainable_params": sum(p.numel() for p in model.parameters()), "frozen_params": 0}
    record = new_record("scratch", command=command, model_ref=arch, base=base, data=data.identity, config=config,
                        plan=plan, device=config.train.device)
    if data.choices:  # what was chosen from the data, and why (as fine-tuning records it)
        record["chosen"] = {k: c.to_dict() for k, c in data.choices.items()}
    return record


def _train(model: torch.nn.Module, data: _Data, config: FinetuneConfig, run_dir: RunDir, *, resume: bool,
           progress: bool, callbacks: dict[str, list[Callable]] | None) -> TrainResult:
    cfg = config.loop_config()
    events = {k: list(v) for k, v in (callbacks or {}).items()}
    if data.val is not None:  # only a held-out validation part may choose the epoch
        events.setdefault("on_epoch_end", []).insert(
            0, BestWeights(run_dir, cfg.monitor, write=env.distributed().rank == 0))
    return train(model, data.train, data.monitor, cfg, run_dir=run_dir.path, resume=resume, progress=progress,
                 callbacks=events)


def _finish(model: Any, data: _Data, config: FinetuneConfig, run_dir: RunDir, record: dict[str, Any],
            result: TrainResult) -> None:
    cfg = config.loop_config()
    if data.val is not None:
        weights_epoch, kept = restore_best(run_dir, model, result), "best"
    else:
        weights_epoch, kept = (result.history[-1]["epoch"] if result.history else None), "last"
    parts = {name: ds for name, ds in (("val", data.val), ("test", data.test)) if ds is not None}
    reports = part_reports(model, parts, list(data.train.classes), batch_size=cfg.eval_batch_size, device=cfg.device)
    finish_run(run_dir, model, record=record, result=result, reports=reports, weights_epoch=weights_epoch,
               split=data.split, extra={"weights": kept, "world_size": env.distributed().world})


def _barrier() -> None:
    """Under torchrun: every rank waits until rank 0 has written the run."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
