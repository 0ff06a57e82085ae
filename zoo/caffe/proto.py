"""Caffe's messages, decoded from the wire format by field number (no caffe.proto, no generated code).

Owns: the schema of the Caffe messages the converter reads (``NetParameter``, ``LayerParameter``,
``V1LayerParameter``, ``BlobProto``, ``BlobShape``, the per-layer parameter messages), the generic
decoder that turns bytes into ``Message`` objects, the normalised network description (``NetSpec``
and ``Layer``, the same whatever the file's era: V2 ``layer``, legacy V1 ``layers`` with enum types,
legacy ``input``/``input_dim``/``input_shape``), and the readers ``read_caffemodel`` (mmap, blob data
stays a view of the file until the converter copies it once) and ``read_binaryproto``.

Field numbers come from /work/shared/reference/caffe.md §3. Imports numpy and ``zoo.errors``; must not
import torch.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CaffeError
from . import wire
from .wire import I32, I64, LEN, VARINT, WireError

__all__ = ["Message", "Blob", "Layer", "NetSpec", "SCHEMA", "ENUMS", "V1_TYPES", "decode_message",
           "read_caffemodel", "parse_caffemodel", "read_binaryproto", "parse_binaryproto",
           "net_from_message"]

# -- schema --------------------------------------------------------------------------------------
# message -> {field number: (name, kind, repeated, message-or-enum name)}.
# kinds: string, int32, uint32, int64, bool, enum, float, double, message. Fields not listed are
# skipped, as protobuf requires (forks add their own).
_R, _S = True, False

SCHEMA: dict[str, dict[int, tuple[str, str, bool, str | None]]] = {
    "NetParameter": {
        1: ("name", "string", _S, None), 3: ("input", "string", _R, None),
        8: ("input_shape", "message", _R, "BlobShape"), 4: ("input_dim", "int32", _R, None),
        6: ("state", "message", _S, "NetState"), 100: ("layer", "message", _R, "LayerParameter"),
        2: ("layers", "message", _R, "V1LayerParameter"),
    },
    "NetState": {1: ("phase", "enum", _S, "Phase"), 2: ("level", "int32", _S, None),
                 3: ("stage", "string", _R, None)},
    "NetStateRule": {1: ("phase", "enum", _S, "Phase"), 2: ("min_level", "int32", _S, None),
                     3: ("max_level", "int32", _S, None), 4: ("stage", "string", _R, None),
                     5: ("not_stage", "string", _R, None)},
    "BlobShape": {1: ("dim", "int64", _R, None)},
    # BlobProto's data fields are handled by _decode_blob (views into the file, never Python lists).
    "BlobProto": {7: ("shape", "message", _S, "BlobShape"), 1: ("num", "int32", _S, None),
                  2: ("channels", "int32", _S, None), 3: ("height", "int32", _S, None),
                  4: ("width", "int32", _S, None)},
    "LayerParameter": {
        1: ("name", "string", _S, None), 2: ("type", "string", _S, None),
        3: ("bottom", "string", _R, None), 4: ("top", "string", _R, None),
        10: ("phase", "enum", _S, "Phase"), 7: ("blobs", "message", _R, "BlobProto"),
        8: ("include", "message", _R, "NetStateRule"), 9: ("exclude", "message", _R, "NetStateRule"),
        100: ("transform_param", "message", _S, "TransformationParameter"),
        104: ("concat_param", "message", _S, "ConcatParameter"),
        106: ("convolution_param", "message", _S, "ConvolutionParameter"),
        108: ("dropout_param", "message", _S, "DropoutParameter"),
        110: ("eltwise_param", "message", _S, "EltwiseParameter"),
        135: ("flatten_param", "message", _S, "FlattenParameter"),
        117: ("inner_product_param", "message", _S, "InnerProductParameter"),
        143: ("input_param", "message", _S, "InputParameter"),
        118: ("lrn_param", "message", _S, "LRNParameter"),
        121: ("pooling_param", "message", _S, "PoolingParameter"),
        123: ("relu_param", "message", _S, "ReLUParameter"),
        142: ("scale_param", "message", _S, "ScaleParameter"),
        125: ("softmax_param", "message", _S, "SoftmaxParameter"),
        139: ("batch_norm_param", "message", _S, "BatchNormParameter"),
        107: ("data_param", "message", _S, "DataParameter"),
    },
    "V1LayerParameter": {
        2: ("bottom", "string", _R, None), 3: ("top", "string", _R, None), 4: ("name", "string", _S, None),
        32: ("include", "message", _R, "NetStateRule"), 33: ("exclude", "message", _R, "NetStateRule"),
        5: ("type", "enum", _S, "V1LayerType"), 6: ("blobs", "message", _R, "BlobProto"),
        1: ("layer", "bytes", _S, None),  # V0 (pre-2014) layers: detected and refused
        9: ("concat_param", "message", _S, "ConcatParameter"),
        10: ("convolution_param", "message", _S, "ConvolutionParameter"),
        12: ("dropout_param", "message", _S, "DropoutParameter"),
        24: ("eltwise_param", "message", _S, "EltwiseParameter"),
        17: ("inner_product_param", "message", _S, "InnerProductParameter"),
        18: ("lrn_param", "message", _S, "LRNParameter"),
        19: ("pooling_param", "message", _S, "PoolingParameter"),
        30: ("relu_param", "message", _S, "ReLUParameter"),
        39: ("softmax_param", "message", _S, "SoftmaxParameter"),
        36: ("transform_param", "message", _S, "TransformationParameter"),
        11: ("data_param", "message", _S, "DataParameter"),
    },
    "ConvolutionParameter": {
        1: ("num_output", "uint32", _S, None), 2: ("bias_term", "bool", _S, None),
        3: ("pad", "uint32", _R, None), 4: ("kernel_size", "uint32", _R, None),
        5: ("group", "uint32", _S, None), 6: ("stride", "uint32", _R, None),
        9: ("pad_h", "uint32", _S, None), 10: ("pad_w", "uint32", _S, None),
        11: ("kernel_h", "uint32", _S, None), 12: ("kernel_w", "uint32", _S, None),
        13: ("stride_h", "uint32", _S, None), 14: ("stride_w", "uint32", _S, None),
        15: ("engine", "enum", _S, None), 16: ("axis", "int32", _S, None),
        17: ("force_nd_im2col", "bool", _S, None), 18: ("dilation", "uint32", _R, None),
    },
    "PoolingParameter": {
        1: ("pool", "enum", _S, "PoolMethod"), 2: ("kernel_size", "uint32", _S, None),
        3: ("stride", "uint32", _S, None), 4: ("pad", "uint32", _S, None),
        5: ("kernel_h", "uint32", _S, None), 6: ("kernel_w", "uint32", _S, None),
        7: ("stride_h", "uint32", _S, None), 8: ("stride_w", "uint32", _S, None),
        9: ("pad_h", "uint32", _S, None), 10: ("pad_w", "uint32", _S, None),
        11: ("engine", "enum", _S, None), 12: ("global_pooling", "bool", _S, None),
        13: ("round_mode", "enum", _S, "RoundMode"),
    },
    "InnerProductParameter": {1: ("num_output", "uint32", _S, None), 2: ("bias_term", "bool", _S, None),
                              5: ("axis", "int32", _S, None), 6: ("transpose", "bool", _S, None)},
    "LRNParameter": {1: ("local_size", "uint32", _S, None), 2: ("alpha", "float", _S, None),
                     3: ("beta", "float", _S, None), 4: ("norm_region", "enum", _S, "NormRegion"),
                     5: ("k", "float", _S, None), 6: ("engine", "enum", _S, None)},
    "BatchNormParameter": {1: ("use_global_stats", "bool", _S, None),
                           2: ("moving_average_fraction", "float", _S, None), 3: ("eps", "float", _S, None)},
    "ScaleParameter": {1: ("axis", "int32", _S, None), 2: ("num_axes", "int32", _S, None),
                       4: ("bias_term", "bool", _S, None)},
    "EltwiseParameter": {1: ("operation", "enum", _S, "EltwiseOp"), 2: ("coeff", "float", _R, None),
                         3: ("stable_prod_grad", "bool", _S, None)},
    "ConcatParameter": {1: ("concat_dim", "uint32", _S, None), 2: ("axis", "int32", _S, None)},
    "DropoutParameter": {1: ("dropout_ratio", "float", _S, None)},
    "ReLUParameter": {1: ("negative_slope", "float", _S, None), 2: ("engine", "enum", _S, None)},
    "SoftmaxParameter": {1: ("engine", "enum", _S, None), 2: ("axis", "int32", _S, None)},
    "InputParameter": {1: ("shape", "message", _R, "BlobShape")},
    "FlattenParameter": {1: ("axis", "int32", _S, None), 2: ("end_axis", "int32", _S, None)},
    "TransformationParameter": {1: ("scale", "float", _S, None), 2: ("mirror", "bool", _S, None),
                                3: ("crop_size", "uint32", _S, None), 4: ("mean_file", "string", _S, None),
                                5: ("mean_value", "float", _R, None)},
    "DataParameter": {1: ("source", "string", _S, None), 2: ("scale", "float", _S, None),
                      3: ("mean_file", "string", _S, None), 5: ("crop_size", "uint32", _S, None)},
}

ENUMS: dict[str, dict[str, int]] = {
    "Phase": {"TRAIN": 0, "TEST": 1},
    "PoolMethod": {"MAX": 0, "AVE": 1, "STOCHASTIC": 2},
    "RoundMode": {"CEIL": 0, "FLOOR": 1},
    "NormRegion": {"ACROSS_CHANNELS": 0, "WITHIN_CHANNEL": 1},
    "EltwiseOp": {"PROD": 0, "SUM": 1, "MAX": 2},
    "Engine": {"DEFAULT": 0, "CAFFE": 1, "CUDNN": 2},
}

# V1LayerParameter.LayerType -> the V2 type string (UpgradeV1LayerType).
V1_TYPES: dict[int, str] = {
    0: "", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 11: "Im2col", 12: "ImageData",
    13: "InfogainLoss", 14: "InnerProduct", 15: "LRN", 16: "MultinomialLogisticLoss", 17: "Pooling",
    18: "ReLU", 19: "Sigmoid", 20: "Softmax", 21: "SoftmaxWithLoss", 22: "Split", 23: "TanH",
    24: "WindowData", 25: "Eltwise", 26: "Power", 27: "SigmoidCrossEntropyLoss", 28: "HingeLoss",
    29: "MemoryData", 30: "ArgMax", 31: "Threshold", 32: "DummyData", 33: "Slice", 34: "MVN",
    35: "AbsVal", 36: "Silence", 37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}
# The text format spells V1 types by their enum names.
ENUMS["V1LayerType"] = {
    "NONE": 0, "ACCURACY": 1, "BNLL": 2, "CONCAT": 3, "CONVOLUTION": 4, "DATA": 5, "DROPOUT": 6,
    "EUCLIDEAN_LOSS": 7, "FLATTEN": 8, "HDF5_DATA": 9, "HDF5_OUTPUT": 10, "IM2COL": 11, "IMAGE_DATA": 12,
    "INFOGAIN_LOSS": 13, "INNER_PRODUCT": 14, "LRN": 15, "MULTINOMIAL_LOGISTIC_LOSS": 16, "POOLING": 17,
    "RELU": 18, "SIGMOID": 19, "SOFTMAX": 20, "SOFTMAX_LOSS": 21, "SPLIT": 22, "TANH": 23,
    "WINDOW_DATA": 24, "ELTWISE": 25, "POWER": 26, "SIGMOID_CROSS_ENTROPY_LOSS": 27, "HINGE_LOSS": 28,
    "MEMORY_DATA": 29, "ARGMAX": 30, "THRESHOLD": 31, "DUMMY_DATA": 32, "SLICE": 33, "MVN": 34,
    "ABSVAL": 35, "SILENCE": 36, "CONTRASTIVE_LOSS": 37, "EXP": 38, "DECONVOLUTION": 39,
}

_EXPECTED_WIRE = {"string": LEN, "bytes": LEN, "message": LEN, "int32": VARINT, "uint32": VARINT,
                  "int64": VARINT, "bool": VARINT, "enum": VARINT, "float": I32, "double": I64}
# Blob data larger than this many values is refused: 2**31 floats is 8 GiB, beyond Caffe's own
# 2 GiB protobuf limit, so a larger claim can only come from a corrupt shape.
MAX_BLOB_VALUES = 1 << 31


# -- decoded values ------------------------------------------------------------------------------
class Message:
    """A decoded message: ``fields`` maps a field name to the list of its values, in file order."""

    __slots__ = ("type", "fields")

    def __init__(self, type_: str, fields: dict[str, list[Any]] | None = None):
        self.type = type_
        self.fields = fields if fields is not None else {}

    def has(self, name: str) -> bool:
        return bool(self.fields.get(name))

    def get(self, name: str, default: Any = None) -> Any:
        """The value of a singular field (the last one wins, as in protobuf), or ``default``."""
        values = self.fields.get(name)
        return values[-1] if values else default

    def all(self, name: str) -> list[Any]:
        """Every value of a repeated field."""
        return list(self.fields.get(name, ()))

    def msg(self, name: str) -> Message:
        """A sub-message, or an empty one of the right type when absent (all defaults)."""
        value = self.get(name)
        if value is None:
            return Message(_sub_type(self.type, name) or "")
        return value

    def add(self, name: str, value: Any) -> None:
        self.fields.setdefault(name, []).append(value)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able) for the graph description; blobs are left out."""
        out: dict[str, Any] = {}
        for name, values in self.fields.items():
            conv = [v.to_dict() if isinstance(v, Message) else v for v in values if not isinstance(v, Blob)]
            if conv:
                out[name] = conv
        return out

    def __repr__(self) -> str:
        return f"Message({self.type}, {self.fields!r})"


def _sub_type(msg_type: str, name: str) -> str | None:
    for fname, kind, _rep, sub in SCHEMA.get(msg_type, {}).values():
        if fname == name and kind == "message":
            return sub
    return None


@dataclass
class Blob:
    """A parameter blob: its shape and its values (a float32/float64 view of the file until copied)."""

    shape: tuple[int, ...]
    data: np.ndarray

    @property
    def count(self) -> int:
        return int(self.data.size)


@dataclass
class Layer:
    """One layer of a network, normalised across file eras (types are V2 strings)."""

    name: str
    type: str
    bottoms: list[str]
    tops: list[str]
    params: Message  # the LayerParameter / V1LayerParameter message (per-type parameters inside)
    blobs: list[Blob] = field(default_factory=list)
    index: int = 0

    def param(self, name: str) -> Message:
        return self.params.msg(name)


@dataclass
class NetSpec:
    """A whole network: its layers in file order and its legacy inputs ``(blob, shape or None)``."""

    name: str
    layers: list[Layer]
    inputs: list[tuple[str, tuple[int, ...] | None]]
    path: str = ""
    era: str = "V2"  # "V2" (layer) or "V1" (layers)


# -- decoding ------------------------------------------------------------------------------------
def _scalar(kind: str, buf, a: int) -> Any:
    """One scalar: ``a`` is a varint's value, or the byte offset of a 32/64-bit value."""
    if kind in ("int32", "enum"):  # negative int32/enum values are 10-byte two's-complement varints
        return wire.to_signed(a, 64)
    if kind == "int64":
        return wire.to_signed(a, 64)
    if kind == "uint32":
        return a & 0xFFFFFFFF
    if kind == "bool":
        return a != 0
    if kind == "float":
        return wire.read_f32(buf, a)
    if kind == "double":
        return wire.read_f64(buf, a)
    raise AssertionError(kind)


def _packed(kind: str, buf, a: int, b: int) -> list[Any]:
    if kind == "float":
        return [float(v) for v in wire.floats_packed(buf, a, b)]
    if kind == "double":
        return [float(v) for v in wire.doubles_packed(buf, a, b)]
    return [_scalar(kind, buf, v) for v in wire.varints_packed(buf, a, b)]


def decode_message(buf, a: int, b: int, type_: str, depth: int = 0) -> Message:
    """Decode ``buf[a:b]`` as message ``type_`` of the schema.

    Raises:
        WireError: malformed bytes or a field with the wrong wire type.
    """
    if type_ == "BlobProto":
        return _decode_blob(buf, a, b)
    if depth > 16:  # the schema nests 4 deep; anything deeper is a corrupt file
        raise WireError("messages nested too deeply")
    schema = SCHEMA[type_]
    msg = Message(type_)
    for number, wt, x, y in wire.iter_fields(buf, a, b):
        spec = schema.get(number)
        if spec is None:
            continue
        name, kind, repeated, sub = spec
        want = _EXPECTED_WIRE[kind]
        if wt != want and not (repeated and wt == LEN and kind not in ("string", "bytes", "message")):
            raise WireError(f"{type_}.{name} (field {number}) has wire type {wire.WIRE_NAMES.get(wt, wt)}, "
                            f"expected {wire.WIRE_NAMES[want]}")
        if kind == "message":
            msg.add(name, decode_message(buf, x, y, sub, depth + 1))
        elif kind == "string":
            try:
                msg.add(name, bytes(buf[x:y]).decode("utf-8"))
            except UnicodeDecodeError:
                raise WireError(f"{type_}.{name} is not valid UTF-8 text") from None
        elif kind == "bytes":
            msg.add(name, (x, y))
        elif wt == LEN:  # a packed repeated scalar
            msg.fields.setdefault(name, []).extend(_packed(kind, buf, x, y))
        else:
            msg.add(name, _scalar(kind, buf, x))
    return msg


def _decode_blob(buf, a: int, b: int) -> Message:
    """BlobProto: shape (or legacy num/channels/height/width) and the data as a view of ``buf``."""
    chunks: list[np.ndarray] = []
    dchunks: list[np.ndarray] = []
    shape: list[int] | None = None
    legacy: dict[str, int] = {}
    pos = a
    fields = wire.iter_fields(buf, a, b)
    while True:
        # iter_fields cannot jump over an unpacked float run fast, so walk it by hand when one starts.
        try:
            number, wt, x, y = next(fields)
        except StopIteration:
            break
        if number in (5, 8):  # data (float) / double_data
            width = 4 if number == 5 else 8
            target = chunks if number == 5 else dchunks
            if wt == LEN:
                target.append(wire.floats_packed(buf, x, y) if width == 4 else wire.doubles_packed(buf, x, y))
            elif wt == (I32 if width == 4 else I64):
                # x is the payload start; the one-byte tag sits just before it.
                values, pos = wire.floats_unpacked_run(buf, x - 1, b, (number << 3) | wt, width)
                target.append(values)
                fields = wire.iter_fields(buf, pos, b)
            else:
                raise WireError(f"BlobProto.{'data' if number == 5 else 'double_data'} has wire type "
                                f"{wire.WIRE_NAMES.get(wt, wt)}")
        elif number in (6, 9):  # diff / double_diff: training state, ignored
            if wt not in (LEN, I32, I64):
                raise WireError(f"BlobProto diff field {number} has wire type {wire.WIRE_NAMES.get(wt, wt)}")
        elif number == 7:
            if wt != LEN:
                raise WireError("BlobProto.shape is not a message")
            dims = decode_message(buf, x, y, "BlobShape").all("dim")
            shape = dims
        elif number in (1, 2, 3, 4):
            if wt != VARINT:
                raise WireError(f"BlobProto legacy dimension field {number} is not a varint")
            legacy[("num", "channels", "height", "width")[number - 1]] = wire.to_signed(x, 32)
    pieces = dchunks if dchunks else chunks
    if not pieces:
        data = np.zeros(0, np.float32)
    elif len(pieces) == 1:
        data = pieces[0]
    else:  # several packed records for one field: legal, concatenated (the one copy we make here)
        data = np.concatenate(pieces)
    if shape is None and legacy:
        shape = [legacy.get(k, 0) for k in ("num", "channels", "height", "width")]
    if shape is None:
        shape = [int(data.size)]
    if any(d < 0 for d in shape):
        raise WireError(f"blob shape {tuple(shape)} has a negative dimension")
    if len(shape) > 32:
        raise WireError(f"blob shape has {len(shape)} dimensions (Caffe allows 32)")
    count = 1
    for d in shape:
        count *= d
    if count > MAX_BLOB_VALUES:
        raise WireError(f"blob shape {tuple(shape)} claims {count} values, more than any Caffe file can hold")
    if count != data.size:
        raise WireError(f"blob shape {tuple(shape)} needs {count} values but the blob holds {data.size}")
    m = Message("BlobProto")
    m.add("blob", Blob(tuple(int(d) for d in shape), data))
    return m


# -- normalisation -------------------------------------------------------------------------------
def _blob_of(m: Message) -> Blob:
    return m.get("blob")


def net_from_message(msg: Message, path: str) -> NetSpec:
    """Normalise a decoded (or text-parsed) ``NetParameter`` into a ``NetSpec``.

    Raises:
        CaffeError: for pre-V1 (V0) files and a net that has both ``layer`` and ``layers``.
    """
    layers: list[Layer] = []
    v2, v1 = msg.all("layer"), msg.all("layers")
    if v2 and v1:
        raise CaffeError(f"{path}: has both 'layer' (current) and 'layers' (legacy V1) lists; Caffe "
                         "refuses such files too. Re-save it with Caffe's upgrade_net_proto tools.")
    for i, lp in enumerate(v2):
        layers.append(Layer(name=lp.get("name", ""), type=lp.get("type", ""), bottoms=lp.all("bottom"),
                            tops=lp.all("top"), params=lp, blobs=[_blob_of(b) for b in lp.all("blobs")],
                            index=i))
    for i, lp in enumerate(v1):
        name = lp.get("name", "")
        if lp.has("layer"):
            raise CaffeError(f"{path}: layer #{i} {name!r} is in the pre-2014 V0 format; convert it with "
                             "Caffe's upgrade_net_proto_binary first.")
        code = lp.get("type", 0)
        if code not in V1_TYPES:
            raise CaffeError(f"{path}: layer #{i} {name!r} has unknown legacy (V1) type number {code}.")
        layers.append(Layer(name=name, type=V1_TYPES[code], bottoms=lp.all("bottom"), tops=lp.all("top"),
                            params=lp, blobs=[_blob_of(b) for b in lp.all("blobs")], index=i))
    inputs: list[tuple[str, tuple[int, ...] | None]] = []
    names = msg.all("input")
    shapes = msg.all("input_shape")
    dims = msg.all("input_dim")
    for j, name in enumerate(names):
        if j < len(shapes):
            inputs.append((name, tuple(shapes[j].all("dim"))))
        elif len(dims) >= 4 * (j + 1):
            inputs.append((name, tuple(dims[4 * j:4 * j + 4])))
        else:
            inputs.append((name, None))  # caffemodels may name their inputs without a shape
    return NetSpec(name=msg.get("name", ""), layers=layers, inputs=inputs, path=path,
                   era="V1" if v1 else "V2")


def _open_buffer(path: str | Path):
    path = Path(path)
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise CaffeError(f"{path}: cannot be opened ({err.strerror}). Check the path.") from err
    with fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise CaffeError(f"{path}: is empty (0 bytes); the download or copy did not finish.")
        # A read-only mapping: blob data are views of the page cache until the converter copies them.
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


def _describe_failure(buf, path: str, err: WireError) -> CaffeError:
    """Name the layer the fault is in: re-walk the top level tolerantly to find it."""
    where = ""
    pos, n, index, last = 0, len(buf), 0, ""
    try:
        while pos < n:
            tag, p = wire.read_varint(buf, pos, n)
            number, wt = tag >> 3, tag & 7
            if wt == VARINT:
                pos = wire.read_varint(buf, p, n)[1]
                continue
            if wt in (I32, I64):
                pos = p + (4 if wt == I32 else 8)
                continue
            if wt != LEN:
                break
            length, a = wire.read_varint(buf, p, n)
            end = a + length
            if number in (100, 2):
                index += 1
                name = _layer_name_tolerant(buf, a, min(end, n), 1 if number == 100 else 4)
                label = f"layer #{index} {name!r}" if name else f"layer #{index} (at byte {a})"
                if end > n:
                    where = f" in {label}, which is cut off"
                    break
                try:
                    decode_message(buf, a, end, "LayerParameter" if number == 100 else "V1LayerParameter")
                except WireError:
                    where = f" in {label}"
                    break
                last = name
            pos = end
    except WireError:
        pass
    if not where and last:
        where = f" after layer {last!r}"
    return CaffeError(f"{path}: is not a valid Caffe model{where}: {err}. The file may be truncated or "
                      "corrupt: download it again (zoo download --force) or re-save it with Caffe.")


def _layer_name_tolerant(buf, a: int, b: int, name_field: int) -> str:
    try:
        for number, wt, x, y in wire.iter_fields(buf, a, b):
            if number == name_field and wt == LEN:
                return bytes(buf[x:y]).decode("utf-8", "replace")
    except WireError:
        pass
    return ""


def parse_caffemodel(buf, path: str = "<bytes>") -> NetSpec:
    """Decode a binary ``NetParameter`` held in ``buf`` (bytes or mmap).

    Raises:
        CaffeError: naming ``path``, the layer and what is wrong.
    """
    try:
        msg = decode_message(buf, 0, len(buf), "NetParameter")
    except WireError as err:
        raise _describe_failure(buf, path, err) from None
    net = net_from_message(msg, path)
    if not net.layers:
        raise CaffeError(f"{path}: holds no layers; it is not a Caffe model (or an empty net).")
    return net


def read_caffemodel(path: str | Path) -> NetSpec:
    """Read a ``.caffemodel`` through a read-only memory map; blob data stay views of the file.

    Example:
        >>> net = read_caffemodel("bvlc_googlenet.caffemodel")   # doctest: +SKIP
        >>> [l.name for l in net.layers][:3]                      # doctest: +SKIP

    Raises:
        CaffeError: for an unreadable, empty, truncated or corrupt file (naming file and layer).
    """
    return parse_caffemodel(_open_buffer(path), str(path))


def parse_binaryproto(buf, path: str = "<bytes>") -> np.ndarray:
    """Decode a mean ``BlobProto`` into a float32 array (C, H, W).

    Raises:
        CaffeError: for a malformed blob or one that is not an image (N must be 1).
    """
    try:
        blob = _blob_of(_decode_blob(buf, 0, len(buf)))
    except WireError as err:
        raise CaffeError(f"{path}: is not a valid Caffe mean file (.binaryproto): {err}.") from None
    shape = list(blob.shape)
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 3 or blob.count == 0:
        raise CaffeError(f"{path}: holds a blob of shape {blob.shape}; a mean image must be "
                         "(1, C, H, W) or (C, H, W).")
    return np.array(blob.data, dtype=np.float32).reshape(shape)


def read_binaryproto(path: str | Path) -> np.ndarray:
    """Read a Caffe mean file (``.binaryproto``) as a float32 array (C, H, W), channels in BGR order.

    Raises:
        CaffeError: naming the file and what is wrong.
    """
    buf = _open_buffer(path)
    return parse_binaryproto(buf, str(path))
