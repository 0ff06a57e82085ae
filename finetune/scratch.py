"""From-scratch training of the reference architectures: the library function behind ``zoo train``.

Owns: ``train_scratch(arch, data, *, out, ...)``: build ``<arch>.scratch`` (``zoo.archs``) for the data's
channels, size and classes, train it with the shared loop and the architecture's recipe, test it, and
write a run folder that ``zoo.load(out)`` reads (``model.safetensors`` + ``model.json``, plus the loop's
``checkpoint.pt`` and ``metrics.jsonl``). Under ``torchrun`` the loop runs DDP; rank 0 writes.

May import ``zoo``, ``zoo.registry`` and ``zoo.finetune``; never ``zoo.cli``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from zoo.errors import DataError
from zoo.registry import catalog
from zoo.registry.schema import Preprocessing

from .datasets import BUILTIN, TensorImageDataset, load_dataset
from .loop import TrainConfig, TrainResult, evaluate, train
from .recipes import recipe_for
from zoo.registry import env

__all__ = ["train_scratch", "ScratchResult", "build_scratch_model", "train_flops_per_sample", "FLAT_BUILDERS"]

FLAT_BUILDERS = ("softmax", "mlp_sigmoid", "mlp_relu")  # these need the input size
SMALL_STEM_BUILDERS = ("googlenet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


@dataclass
class ScratchResult:
    """A finished from-scratch run: the folder, the model, per-epoch ``history``, the ``test`` metrics
    (loss, accuracy, n), the ``config`` used and the training wall time in seconds."""

    run_dir: Path | None
    model: Any
    history: list[dict[str, Any]]
    test: dict[str, Any]
    config: TrainConfig
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)


def _builder_and_kwargs(arch: str) -> tuple[str, dict[str, Any], str]:
    """(builder, entry kwargs, base entry name) for ``lenet``, ``lenet.scratch`` or a bare builder."""
    name = arch if "." in arch else f"{arch}.scratch"
    cat = catalog()
    if name in cat:
        entry = cat.get(name)
        if entry.architecture.library != "zoo":
            raise DataError(f"{name} is a {entry.architecture.library} entry; `zoo train` builds the zoo's "
                            "reference architectures (`zoo list --source zoo`)")
        return entry.architecture.builder, dict(entry.architecture.kwargs), entry.name
    from zoo.archs import BUILDERS, build

    if arch in BUILDERS:
        return arch, {}, ""
    build(arch, in_chans=1, num_classes=2)  # raises RegistryError naming the valid builders
    raise AssertionError("unreachable")


def build_scratch_model(arch: str, *, in_chans: int, num_classes: int, image_size: int,
                        preprocessing: Preprocessing, labels: list[str] | None = None, name: str = ""):
    """A randomly initialised ``ZooModel`` of ``arch`` for inputs of ``in_chans`` x ``image_size``.

    Flat networks get ``image_size``; GoogLeNet and ResNets get the small-input stem for inputs up to
    64 px. The model carries a build spec so ``zoo.factory.save_model`` / ``zoo.load`` round-trip it.
    """
    from zoo import archs
    from zoo.model import BuildSpec, ZooModel, split_classifier

    builder, kwargs, base = _builder_and_kwargs(arch)
    if builder in FLAT_BUILDERS:
        kwargs["image_size"] = image_size
    if builder in SMALL_STEM_BUILDERS and "small_input" not in kwargs:
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


def _preprocessing(ds: TensorImageDataset) -> Preprocessing:
    c, h, w = ds.input_size
    return Preprocessing(input_size=(c, h, w), resize=max(h, w), interpolation="bilinear",
                         mean=tuple(float(m) for m in ds.mean.flatten()), std=tuple(float(s) for s in ds.std.flatten()),
                         channel_order="L" if c == 1 else "RGB")


def train_scratch(arch: str, data: str | Path, *, out: str | Path | None, epochs: int | None = None,
                  batch_size: int | None = None, lr: float | None = None, classes: Any = None, seed: int = 0,
                  device: str = "auto", amp: Any = "auto", compile: bool = False, channels_last: bool | None = None,
                  resume: bool = False, progress: bool = True, augment: str | None = None,
                  overrides: dict[str, Any] | None = None, data_root: str | Path | None = None,
                  flops_per_sample: float | None = None,
                  callbacks: dict[str, list] | None = None) -> ScratchResult:
    """Train a reference architecture from random weights and save a loadable run.

    Args:
        arch: ``lenet``, ``lenet.scratch``, ``resnet18`` ... (``zoo list --source zoo``).
        data: ``fashion-mnist``, ``mnist``, ``cifar10`` or a folder of class folders.
        out: the run folder (``model.safetensors``, ``model.json``, ``checkpoint.pt``, ``metrics.jsonl``),
            or None to write nothing.
        epochs, batch_size, lr: override the recipe (``zoo.finetune.recipes``).
        classes: keep only these class indices (``"0,1,2,3,4"`` or a list).
        seed: seeds the weights, the shuffle and the augmentation.
        device, amp, compile, channels_last: as ``TrainConfig``; channels_last defaults to on for
            convnets on a GPU.
        resume: continue the run in ``out`` from its checkpoint.
        progress: the progress bar and per-epoch lines.
        augment: override the recipe's augmentation (``none``, ``flip``, ``crop``, ``crop_flip``).
        overrides: any other ``TrainConfig`` fields.
        data_root: where the built-in data sets live.
        flops_per_sample: training FLOPs per image, for the MFU figure on GPUs.
        callbacks: passed to the loop (``zoo.finetune.loop.train``), e.g. a time budget that raises
            ``StopTraining``.

    Returns:
        ScratchResult with the test metrics of the final weights.

    Raises:
        DataError: the data cannot be found or used; RegistryError: an unknown architecture.

    Example:
        >>> r = train_scratch("lenet", "fashion-mnist", out="runs/lenet", epochs=1)   # doctest: +SKIP
        >>> r.test["accuracy"]                                                      # doctest: +SKIP
    """
    builder, _, _ = _builder_and_kwargs(arch)  # an unknown arch fails here, before any data is read
    recipe = recipe_for(builder)
    augmentation = augment or recipe.augment
    train_ds = load_dataset(data, "train", classes=classes, augment=augmentation, root=data_root, seed=seed,
                            input_size=_folder_input_size(arch, data))
    test_split = "test" if str(data).lower() in BUILTIN else "val"
    train_stats = (train_ds.mean.flatten().tolist(), train_ds.std.flatten().tolist())
    test_ds = load_dataset(data, test_split, classes=classes, root=data_root, seed=seed,
                           input_size=train_ds.input_size, stats=train_stats)  # one normalisation for both
    c, h, _ = train_ds.input_size

    torch.manual_seed(seed)  # the weights are part of the run: seed them too
    model = build_scratch_model(arch, in_chans=c, num_classes=len(train_ds.classes), image_size=h,
                                preprocessing=_preprocessing(train_ds), labels=list(train_ds.classes))
    settings: dict[str, Any] = dict(recipe.config)
    settings.update(overrides or {})
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value is not None:
            settings[key] = value
    on_gpu = torch.cuda.is_available() and device != "cpu"
    settings.update(seed=seed, device=device, amp=amp, compile=compile,
                    channels_last=(on_gpu and builder not in FLAT_BUILDERS) if channels_last is None else channels_last)
    if flops_per_sample is None and on_gpu:
        flops_per_sample = train_flops_per_sample(model, train_ds.input_size)  # for the MFU in the log
    if flops_per_sample:
        settings["flops_per_sample"] = flops_per_sample
    config = TrainConfig.from_dict(settings)

    start = time.perf_counter()
    result: TrainResult = train(model, train_ds, test_ds, config, run_dir=out, resume=resume, progress=progress,
                                callbacks=callbacks)
    seconds = time.perf_counter() - start
    test = evaluate(result.model, test_ds, batch_size=config.eval_batch_size, device=device, amp=amp,
                    predictions=False)
    place = env.distributed()
    master = place.rank == 0
    run_dir = Path(out) if out is not None else None
    if run_dir is not None and master:
        from zoo.factory import save_model

        model.cpu().eval()
        save_model(model, run_dir, extra={"training": {
            "arch": arch, "data": str(data), "classes": list(train_ds.classes), "class_indices": _indices(classes),
            "recipe": recipe.name, "augment": augmentation, "config": config.to_dict(),
            "test_accuracy": test["accuracy"], "test_loss": test["loss"], "epochs_run": len(result.history),
            "train_seconds": seconds, "world_size": place.world,
        }})
    return ScratchResult(run_dir=run_dir, model=model, history=result.history, test=test, config=config,
                         seconds=seconds)


def _indices(classes: Any) -> list[int] | None:
    if classes is None:
        return None
    if isinstance(classes, str):
        return [int(c) for c in classes.split(",") if c.strip()]
    return list(classes)


def _folder_input_size(arch: str, data: str | Path) -> tuple[int, int, int] | None:
    """For an image folder: the ``.scratch`` entry's input size (the built-ins bring their own)."""
    if str(data).lower() in BUILTIN:
        return None
    name = arch if "." in arch else f"{arch}.scratch"
    cat = catalog()
    return tuple(cat.get(name).preprocessing.input_size) if name in cat else None
