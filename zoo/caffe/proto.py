"""Caffe's messages, decoded from the wire format by field number (no caffe.proto, no generated code).

Owns: the schema of the Caffe messages the converter reads (``NetParameter``, ``LayerParameter``,
``V1LayerParameter``, ``BlobProto``, ``BlobShape``, the per-layer parameter messages), the generic
decoder that turns bytes into ``Message`` objects, the normalised network description (``NetSpec``
and ``Layer``, the same whatever the file's era: V2 ``layer``, legacy V1 ``layers`` with enum types,
legacy ``input``/``input_dim``/``input_shape``), and the readers ``read_caffemodel`` (mmap, blob data
stays a view of the file until the converter copies it once) and ``read_binaryproto``.

The field numbers live in ``fields`` (BVLC Caffe's ``caffe.proto``, as data). Imports numpy and
``zoo.errors``; must not import torch.
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
from .fields import ENUMS, SCHEMA, TEXT_ONLY, V1_TYPES
from .wire import I32, I64, LEN, VARINT, WireError

__all__ = ["Message", "Blob", "Layer", "NetSpec", "SCHEMA", "TEXT_ONLY", "ENUMS", "V1_TYPES", "decode_message",
           "read_caffemodel", "parse_caffemodel", "read_binaryproto", "parse_binaryproto",
           "net_from_message"]

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
    specs = [*SCHEMA.get(msg_type, {}).values(), *TEXT_ONLY.get(msg_type, {}).values()]
    for fname, kind, _rep, sub in specs:
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
