"""Caffe: read ``.caffemodel``/``.prototxt``/``.binaryproto`` files and turn them into PyTorch networks.

Owns the Caffe Model Zoo path of ``zoo.load`` and ``zoo import-caffe``: a protobuf wire-format reader
written from the field numbers (``wire``, ``proto``), a text-format parser (``prototxt``), the graph
converter (``graph``, ``layers``) and conversion with its cache (``convert``). Imports torch; never
``zoo.finetune`` or ``zoo.cli``.

Example:
    >>> import zoo.caffe
    >>> zoo.caffe.import_caffe("net.caffemodel", "deploy.prototxt", out_dir="mynet")   # doctest: +SKIP
    >>> model = zoo.caffe.load_dir("mynet")                                              # doctest: +SKIP
"""

from .convert import convert, import_caffe, load_dir, load_entry, materialize, model_from_plan
from .graph import CaffeGraph, GraphPlan, build_graph, plan_graph
from .proto import NetSpec, read_binaryproto, read_caffemodel
from .prototxt import parse_prototxt, read_prototxt

__all__ = [
    "CaffeGraph",
    "NetSpec",
    "GraphPlan",
    "build_graph",
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
    "read_prototxt",
]
