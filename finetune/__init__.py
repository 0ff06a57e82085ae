"""Adapting and training: image-folder data and splits, heads, freezing and cutting, the one training
loop (fine-tuning and from-scratch), recipes, evaluation and run directories.

``fit`` and ``lr_find`` are imported at once (their modules share their names, and a submodule import
would otherwise shadow the function); that costs the torch import and nothing more. The other public
names resolve lazily::

    run = zoo.finetune.fit("resnet18", "photos/", strategy="linear")
    run = zoo.finetune.train_scratch("lenet", "fashion-mnist", epochs=2)
    run = zoo.finetune.load_run("runs/photos"); run.predict(["cat.jpg"])
    zoo.finetune.lr_find("resnet18", "photos/").suggestion
    cfg = dataclasses.replace(zoo.finetune.FinetuneConfig(strategy="full"), lr=1e-3)

May import ``zoo`` and ``zoo.registry``; never ``zoo.cli``.
"""

from __future__ import annotations

from zoo._lazy import lazy_exports

# The functions, bound over the submodules of the same name (importing a submodule sets the package
# attribute to the module; binding after the import keeps ``zoo.finetune.fit(...)`` the function).
from .fit import fit  # noqa: E402
from .lr_find import lr_find  # noqa: E402

# public name -> "module:attribute"
_LAZY = {
    "FinetuneConfig": "zoo.finetune.config:FinetuneConfig",
    "Run": "zoo.finetune.run:Run",
    "RunDir": "zoo.finetune.rundir:RunDir",
    "load_run": "zoo.finetune.run:load_run",
    "compare_runs": "zoo.finetune.run:compare_runs",
    "register_run": "zoo.finetune.register:register_run",
    "train_scratch": "zoo.finetune.scratch:train_scratch",
    "scratch_config": "zoo.finetune.scratch:scratch_config",
    "LRFindResult": "zoo.finetune.lr_find:LRFindResult",
    "scan": "zoo.finetune.data:scan",
    "load_split": "zoo.finetune.data:load_split",
    "Split": "zoo.finetune.data:Split",
    "prepare": "zoo.finetune.strategies:prepare",
    "Plan": "zoo.finetune.strategies:Plan",
    "classification_report": "zoo.finetune.metrics:classification_report",
    "TrainConfig": "zoo.finetune.loop:TrainConfig",
    "TrainResult": "zoo.finetune.loop:TrainResult",
    "train": "zoo.finetune.loop:train",
    "evaluate": "zoo.finetune.loop:evaluate",
}

__all__ = sorted([*_LAZY, "fit", "lr_find"])

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
