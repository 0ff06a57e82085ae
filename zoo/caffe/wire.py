"""The protobuf wire format, read by hand over a buffer (``bytes`` or an ``mmap``) without copying it.

Owns: varints, field iteration, and the numeric readers for packed and unpacked ``float``/``double``
runs, every one of which checks a length against the bytes that remain *before* it slices or
allocates. Errors are ``WireError`` (an internal exception carrying a plain message) so that the
message decoder can add the file and layer it was reading. Standard library and numpy only; must not
import torch or a generated protobuf module (the project ships none).

Wire facts (protobuf encoding): a field starts with a varint tag ``(number << 3) | wire_type`` where
wire type 0 is a varint, 1 a little-endian 64-bit value, 2 a length-delimited run (string, bytes,
sub-message, packed repeated scalars) and 5 a little-endian 32-bit value. Types 3/4 (groups) are
deprecated and never used by Caffe; 6/7 do not exist.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import numpy as np

__all__ = ["WireError", "VARINT", "I64", "LEN", "I32", "read_varint", "iter_fields", "to_signed",
           "floats_packed", "doubles_packed", "floats_unpacked_run", "varints_packed"]

VARINT, I64, LEN, I32 = 0, 1, 2, 5
WIRE_NAMES = {0: "varint", 1: "64-bit", 2: "length-delimited", 5: "32-bit"}

_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


class WireError(Exception):
    """Malformed bytes; the message says what, the caller says where."""


def read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """Decode one varint at ``pos``; return ``(value, new_pos)``.

    Raises:
        WireError: the varint runs past ``end`` or is longer than 10 bytes.
    """
    result = 0
    shift = 0
    # A 64-bit varint needs at most 10 bytes; more means garbage, and the bound prevents a long scan.
    for _ in range(10):
        if pos >= end:
            raise WireError(f"a varint runs past the end of its message (at byte {pos})")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
    raise WireError(f"a varint is longer than 10 bytes (at byte {pos - 10})")


def to_signed(value: int, bits: int = 64) -> int:
    """Two's-complement reinterpretation of an unsigned varint (int32/int64 fields)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def iter_fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Walk the fields of one message occupying ``buf[start:end]``.

    Yields ``(number, wire_type, a, b)``: for a varint ``a`` is the value; for 32/64-bit values and
    length-delimited runs ``(a, b)`` is the byte range ``[a, b)`` of the payload (nothing is copied).

    Raises:
        WireError: for a bad tag, an unknown wire type, or a length that does not fit.
    """
    pos = start
    while pos < end:
        tag_at = pos
        tag, pos = read_varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {tag_at} (not a protobuf message, or corrupt)")
        if wire == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield number, wire, value, 0
        elif wire == LEN:
            length, pos = read_varint(buf, pos, end)
            if length > end - pos:
                raise WireError(f"field {number} at byte {tag_at} claims {length} bytes but only "
                                f"{end - pos} remain (truncated or corrupt file)")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == I32:
            if end - pos < 4:
                raise WireError(f"field {number} at byte {tag_at}: a 32-bit value is cut off")
            yield number, wire, pos, pos + 4
            pos += 4
        elif wire == I64:
            if end - pos < 8:
                raise WireError(f"field {number} at byte {tag_at}: a 64-bit value is cut off")
            yield number, wire, pos, pos + 8
            pos += 8
        else:
            raise WireError(f"field {number} at byte {tag_at} has wire type {wire}, which Caffe files "
                            "never use (corrupt file)")


def read_f32(buf, a: int) -> float:
    return _F32.unpack_from(buf, a)[0]


def read_f64(buf, a: int) -> float:
    return _F64.unpack_from(buf, a)[0]


def floats_packed(buf, a: int, b: int) -> np.ndarray:
    """A packed ``repeated float`` payload as a read-only float32 view of ``buf`` (no copy)."""
    if (b - a) % 4:
        raise WireError(f"packed float data of {b - a} bytes is not a multiple of 4")
    return np.frombuffer(buf, dtype="<f4", count=(b - a) // 4, offset=a)


def doubles_packed(buf, a: int, b: int) -> np.ndarray:
    """A packed ``repeated double`` payload as a read-only float64 view of ``buf`` (no copy)."""
    if (b - a) % 8:
        raise WireError(f"packed double data of {b - a} bytes is not a multiple of 8")
    return np.frombuffer(buf, dtype="<f8", count=(b - a) // 8, offset=a)


def varints_packed(buf, a: int, b: int) -> list[int]:
    """A packed run of varints (e.g. ``BlobShape.dim``)."""
    out = []
    pos = a
    while pos < b:
        value, pos = read_varint(buf, pos, b)
        out.append(value)
    return out


def floats_unpacked_run(buf, tag_pos: int, end: int, tag: int, width: int) -> tuple[np.ndarray, int]:
    """Unpacked ``repeated float``/``double``: consecutive records ``<tag byte><value>``.

    A conforming reader must accept this form, and a file could hold millions of such records, so the
    run is found and decoded with numpy instead of one Python step per value. ``tag_pos`` is the
    position of the first tag byte (a one-byte tag: fields 5 and 8 of BlobProto); returns the values
    (a copy, float32 or float64) and the position after the run.
    """
    rec = 1 + width
    count = (end - tag_pos) // rec
    if count == 0:
        raise WireError(f"a {8 * width}-bit value at byte {tag_pos} is cut off")
    tags = np.frombuffer(buf, dtype=np.uint8, count=count * rec, offset=tag_pos)[::rec]
    bad = np.flatnonzero(tags != tag)
    n = int(bad[0]) if bad.size else count
    dtype = np.dtype([("t", "u1"), ("v", "<f4" if width == 4 else "<f8")])
    values = np.frombuffer(buf, dtype=dtype, count=n, offset=tag_pos)["v"].copy()
    return values, tag_pos + n * rec
