"""Caffe: read ``.caffemodel``/``.prototxt``/``.binaryproto`` files and turn them into PyTorch networks.

Owns the Caffe Model Zoo path of ``zoo.load`` and ``zoo import-caffe``: a protobuf wire-format reader
written from the field numbers (``wire``, ``fields``, ``proto``), a text-format parser (``prototxt``),
the graph converter (``graph``, with one rule per layer type in ``rules``), Caffe's input conventions
(``conventions``), conversion with its cache (``convert``) and imported model folders (``importer``).
Imports torch; never ``zoo.finetune`` or ``zoo.cli``.

Example:
    >>> import zoo.caffe
    >>> zoo.caffe.import_caffe("net.caffemodel", "deploy.prototxt", out_dir="mynet")   # doctest: +SKIP
    >>> model = zoo.load("mynet")                                                        # doctest: +SKIP
"""

from .conventions import Conventions, read_conventions
from .convert import build_entry, convert, load_entry, materialize, model_from_plan
from .graph import CaffeGraph, GraphPlan, build_graph, plan_graph
from .importer import build_saved, import_caffe, load_dir
from .proto import NetSpec, read_binaryproto, read_caffemodel
from .prototxt import parse_prototxt, read_prototxt
from .rules import RULES, SUPPORTED_TYPES

__all__ = [
    "RULES",
    "SUPPORTED_TYPES",
    "CaffeGraph",
    "Conventions",
    "GraphPlan",
    "NetSpec",
    "build_entry",
    "build_graph",
    "build_saved",
    "convert",
    "import_caffe",
    "load_dir",
    "load_entry",
    "materialize",
    "model_from_plan",
    "parse_prototxt",
    "plan_graph",
    "read_binaryproto",
    "read_caffemodel",
    "read_conventions",
    "read_prototxt",
]
