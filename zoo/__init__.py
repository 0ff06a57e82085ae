"""zoo: a pretrained model zoo and transfer-learning toolkit.

The public API, resolved lazily (module ``__getattr__``) so that ``import zoo`` and the catalogue
functions never import torch::

    import zoo
    zoo.list_models("resnet*")            # registry entries, no torch
    model = zoo.load("resnet50")          # nn.Module with pretrained weights, eval mode
    ex = zoo.Extractor("resnet50")        # images -> feature vectors
"""

from __future__ import annotations

from ._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> "module:attribute" (module relative to the zoo package)
_LAZY = {
    # catalogue (standard library only)
    "list_models": "zoo.registry:list_models",
    "get_entry": "zoo.registry:get_entry",
    "catalog": "zoo.registry:catalog",
    "Entry": "zoo.registry:Entry",
    # errors (standard library only)
    "ZooError": "zoo.errors:ZooError",
    "UnknownModelError": "zoo.errors:UnknownModelError",
    "RegistryError": "zoo.errors:RegistryError",
    "DownloadError": "zoo.errors:DownloadError",
    "ChecksumMismatchError": "zoo.errors:ChecksumMismatchError",
    "OfflineError": "zoo.errors:OfflineError",
    "MirrorError": "zoo.errors:MirrorError",
    "StorageError": "zoo.errors:StorageError",
    "WeightsError": "zoo.errors:WeightsError",
    "UnsafeWeightsError": "zoo.errors:UnsafeWeightsError",
    "UnknownLayerError": "zoo.errors:UnknownLayerError",
    "ImageError": "zoo.errors:ImageError",
    "DataError": "zoo.errors:DataError",
    "RunError": "zoo.errors:RunError",
    "CaffeError": "zoo.errors:CaffeError",
    "ExportError": "zoo.errors:ExportError",
    # fetching (no torch)
    "download": "zoo.fetch:download",
    "mirror": "zoo.mirrors:mirror",
    # models (torch)
    "load": "zoo.factory:load",
    "ZooModel": "zoo.model:ZooModel",
    "Extractor": "zoo.extract:Extractor",
    "open_image": "zoo.images:open_image",
    "export": "zoo.exporter:export",
    # the torch-free runtime for exported models (numpy, pillow, onnxruntime)
    "runtime": "zoo.runtime",
    # the fine-tuning package (torch)
    "finetune": "zoo.finetune",
}

__all__ = sorted([*_LAZY, "__version__"])

__getattr__, __dir__ = lazy_exports(__name__, globals(), _LAZY)
