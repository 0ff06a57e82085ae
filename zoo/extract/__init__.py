"""Image features from any zoo model: in an application (``Extractor``), for whole folders on disk
(``extract_folder``, behind ``zoo extract``), and nearest-neighbour search over the result
(``similar``, behind ``zoo similar``).

Where things are:

- ``extractor``: the ``Extractor`` (preprocessing, batching with decoding workers, pooling) and
  ``Features``, what ``Extractor.extract`` returns.
- ``runner``: where the network runs (``TorchRunner``: eager, channels_last, bf16, frozen TorchScript).
- ``inputs``: what a call is given, as a flat list of images; the inputs of a folder job.
- ``folder``: ``extract_folder``: chunks, resume, torchrun shards, the merge.
- ``identity``: digests of what made a row (weights, preprocessing) and of the input files.
- ``fileformat``: the features file (``.npz`` + ``.csv`` index), ``load_features``, name escaping.
- ``search``: ``similar``.

Imports torch, numpy, ``zoo.images``, ``zoo.model`` and ``zoo.factory``; never ``zoo.finetune`` or
``zoo.cli``.
"""

from __future__ import annotations

from .extractor import Extractor, Features
from .fileformat import FORMAT, escape_path, load_features, unescape_path
from .folder import ExtractSummary, extract_folder
from .inputs import collect_inputs
from .search import similar

__all__ = ["Extractor", "Features", "extract_folder", "ExtractSummary", "load_features", "similar",
           "collect_inputs", "escape_path", "unescape_path", "FORMAT"]
