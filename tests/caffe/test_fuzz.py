"""Bad files never crash, hang or allocate wildly: only ``CaffeError`` (or a successful parse) comes out.

A deterministic fuzz loop mutates valid small files written by the independent writer (truncations,
byte flips, inserted and deleted runs, varint-breaking 0xFF runs, duplicated and swapped chunks, random
bytes) and feeds each to the reader and, when it parses, to the converter; a hypothesis test adds
random byte strings, and a text fuzz does the same for ``.prototxt``. The case counts are printed.
"""

from __future__ import annotations

import resource

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zoo.caffe.graph import plan_graph
from zoo.caffe.proto import parse_binaryproto, parse_caffemodel
from zoo.caffe.prototxt import parse_prototxt
from zoo.errors import CaffeError

CASES = 10_000


def _mutate(rng: np.random.Generator, data: bytes) -> bytes:
    b = bytearray(data)
    kind = int(rng.integers(0, 9))
    n = len(b)
    if kind == 0:  # truncate
        return bytes(b[: int(rng.integers(0, n))])
    if kind == 1:  # flip a few bytes
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(0, n))] = int(rng.integers(0, 256))
        return bytes(b)
    if kind == 2:  # insert random bytes
        at = int(rng.integers(0, n))
        return bytes(b[:at] + rng.bytes(int(rng.integers(1, 16))) + b[at:])
    if kind == 3:  # delete a run
        at = int(rng.integers(0, n))
        return bytes(b[:at] + b[at + int(rng.integers(1, 32)):])
    if kind == 4:  # a run of 0xFF: endless-looking varints and huge lengths
        at = int(rng.integers(0, n))
        return bytes(b[:at] + b"\xff" * int(rng.integers(1, 12)) + b[at:])
    if kind == 5:  # duplicate a chunk
        at, ln = int(rng.integers(0, n)), int(rng.integers(1, 64))
        return bytes(b[:at] + b[at:at + ln] * 2 + b[at + ln:])
    if kind == 6:  # swap two chunks
        i, j = sorted(int(v) for v in rng.integers(0, n, 2))
        ln = int(rng.integers(1, 16))
        return bytes(b[:i] + b[j:j + ln] + b[i + ln:j] + b[i:i + ln] + b[j + ln:])
    if kind == 7:  # change a wire type: flip the low bits of a byte
        at = int(rng.integers(0, n))
        b[at] ^= int(rng.integers(1, 8))
        return bytes(b)
    return rng.bytes(int(rng.integers(0, 256)))  # random bytes


def _check(data: bytes, input_shape) -> str:
    try:
        net = parse_caffemodel(data, "fuzz.caffemodel")
        plan_graph(net, input_shape=input_shape)
    except CaffeError as err:
        assert "fuzz.caffemodel" in str(err) or "net" in str(err), str(err)
        return "error"
    return "ok"


def test_fuzz_caffemodel_only_caffe_errors(write_net, capsys):
    bases = []
    for name, shape in (("misc", (3, 21, 21)), ("vgg_v1", (3, 32, 32)), ("googlenet", (3, 64, 64))):
        _deploy, model = write_net(name)
        bases.append((model.read_bytes(), shape))
    for data, shape in bases:
        assert _check(data, shape) == "ok"  # the unmutated files convert
    rng = np.random.default_rng(20240611)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcomes = {"ok": 0, "error": 0}
    for i in range(CASES):
        data, shape = bases[i % len(bases)]
        mutated = _mutate(rng, data)
        for _ in range(int(rng.integers(0, 3))):  # sometimes several mutations
            mutated = _mutate(rng, mutated) if mutated else mutated
        outcomes[_check(mutated, shape)] += 1
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    with capsys.disabled():
        print(f"\ncaffemodel fuzz: {CASES} cases, {outcomes['ok']} parsed and converted, "
              f"{outcomes['error']} CaffeError; peak RSS grew {grown_mb:.0f} MB")
    assert sum(outcomes.values()) == CASES
    assert grown_mb < 200  # no enormous allocation from an absurd length or shape


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=512))
def test_random_bytes_only_caffe_errors(data):
    for parse in (lambda d: parse_caffemodel(d, "random.caffemodel"), lambda d: parse_binaryproto(d, "r.binaryproto")):
        try:
            parse(data)
        except CaffeError:
            pass


def test_fuzz_prototxt_only_caffe_errors(write_net, capsys):
    deploy, model = write_net("googlenet")
    weights = parse_caffemodel(model.read_bytes(), str(model))
    text = deploy.read_text()
    assert parse_prototxt(text, "fuzz.prototxt").layers
    rng = np.random.default_rng(7)
    alphabet = list('{}:"\'#<>[],;\\\n 0123456789.-eE_abcXYZ')
    n = 2000
    errors = 0
    for _ in range(n):
        chars = list(text)
        for _ in range(int(rng.integers(1, 6))):
            at = int(rng.integers(0, len(chars)))
            op = int(rng.integers(0, 3))
            if op == 0:
                chars[at] = alphabet[int(rng.integers(0, len(alphabet)))]
            elif op == 1:
                del chars[at:at + int(rng.integers(1, 20))]
            else:
                chars.insert(at, alphabet[int(rng.integers(0, len(alphabet)))])
        try:
            net = parse_prototxt("".join(chars), "fuzz.prototxt")
            plan_graph(net, weights=weights)
        except CaffeError:
            errors += 1
    with capsys.disabled():
        print(f"\nprototxt fuzz: {n} cases, {errors} CaffeError")


@pytest.mark.parametrize("blob", [
    b"\x3a\x06\x0a\x04\xff\xff\xff\x0f",  # shape dim 2**32-1 with no data
    b"\x3a\x0b\x0a\x09\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # dim 2**63-1
    b"\x08\xff\xff\xff\xff\x07\x10\xff\xff\xff\xff\x07",  # legacy num/channels = 2**31-1
    b"\x2a\xff\xff\xff\xff\x0f",  # packed data claiming 4 GiB
])
def test_absurd_shapes_and_lengths_are_refused_without_allocating(blob):
    with pytest.raises(CaffeError, match="mean file|shape|claims|remain"):
        parse_binaryproto(blob, "absurd.binaryproto")
