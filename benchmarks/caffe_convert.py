"""Conversion time and peak memory for a VGG-16-sized ``.caffemodel`` (138M parameters).

The file is written by the test writer, caffe-onnx's generated ``caffe_pb2`` (its schema loaded into
protobuf's default C backend, so writing 138M floats takes seconds rather than Python-loop minutes),
in VGG-16's own format: V1 ``layers`` with enum types and legacy 4-D blob dims. Each measurement runs in
a fresh process: the resident-set peak (which counts numpy/torch buffers and touched file pages alike)
after imports is the baseline; the figure is the peak above it during the conversion.

Peak resident set comes from ``VmHWM`` in /proc/self/status (reset by exec, unlike ``ru_maxrss``).
Measured: (1) ``convert`` + ``materialize`` + write ``model.safetensors``/``graph.json`` + assemble the
``ZooModel`` (what ``zoo.caffe.load_entry`` does on first use); (2) loading that converted folder again
(every later use). Target: peak during (1) at most about twice the weights.

Usage::

    .venv/bin/python benchmarks/caffe_convert.py [--keep DIR]

Needs ``pip install --no-deps caffe-onnx`` and ~3 GB of free memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

VGG16 = [(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]


def _descriptor_bytes() -> bytes:
    """caffe_pb2's schema as a serialized FileDescriptorProto (it only imports under the python backend)."""
    code = ("import os, sys, warnings; os.environ['PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION'] = 'python'; "
            "warnings.simplefilter('ignore'); from proto import caffe_pb2; "
            "sys.stdout.buffer.write(caffe_pb2.DESCRIPTOR.serialized_pb)")
    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True).stdout


def write_vgg16(path: Path, seed: int = 0) -> int:
    """Write a VGG-16-sized caffemodel; returns the parameter count."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(_descriptor_bytes()))
    NetParameter = message_factory.GetMessageClass(pool.FindMessageTypeByName("caffe.NetParameter"))
    V1 = pool.FindEnumTypeByName("caffe.V1LayerParameter.LayerType").values_by_name
    rng = np.random.default_rng(seed)
    net = NetParameter(name="VGG_ILSVRC_16_layers")
    net.input.append("data")
    net.input_dim.extend([10, 3, 224, 224])
    count = 0

    def layer(name, kind, bottom, top):
        lay = net.layers.add(name=name, type=V1[kind].number)
        lay.bottom.append(bottom)
        lay.top.append(top)
        return lay

    def blob(lay, shape):
        nonlocal count
        b = lay.blobs.add()
        dims = [1] * (4 - len(shape)) + list(shape)
        b.num, b.channels, b.height, b.width = dims
        values = rng.standard_normal(int(np.prod(shape)), dtype=np.float32) * 0.01
        b.data.extend(values)
        count += values.size

    x, cin, size = "data", 3, 224
    for i, (c, n) in enumerate(VGG16, 1):
        for j in range(1, n + 1):
            name = f"conv{i}_{j}"
            conv = layer(name, "CONVOLUTION", x, name)
            conv.convolution_param.num_output = c
            conv.convolution_param.pad.append(1)
            conv.convolution_param.kernel_size.append(3)
            blob(conv, (c, cin, 3, 3))
            blob(conv, (c,))
            layer(f"relu{i}_{j}", "RELU", name, name)
            x, cin = name, c
        pool_ = layer(f"pool{i}", "POOLING", x, f"pool{i}")
        pool_.pooling_param.pool = 0
        pool_.pooling_param.kernel_size = 2
        pool_.pooling_param.stride = 2
        x, size = f"pool{i}", size // 2
    k = cin * size * size
    for name, n in (("fc6", 4096), ("fc7", 4096), ("fc8", 1000)):
        fc = layer(name, "INNER_PRODUCT", x, name)
        fc.inner_product_param.num_output = n
        blob(fc, (n, k))
        blob(fc, (n,))
        x, k = name, n
        if name != "fc8":
            layer(f"relu{name[2:]}", "RELU", x, x)
            drop = layer(f"drop{name[2:]}", "DROPOUT", x, x)
            drop.dropout_param.dropout_ratio = 0.5
    layer("prob", "SOFTMAX", x, "prob")
    path.write_bytes(net.SerializeToString())
    return count


def _rss_mb() -> float:
    """Peak resident set of this process in MiB: VmHWM (per address space, so reset by exec, unlike
    ru_maxrss which a child inherits from the process that forked it); ru_maxrss where /proc is absent."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(weights: Path, out: Path, mode: str) -> dict:
    """Run in a fresh process: convert (or load the converted folder) and report time and peak RSS."""
    import torch

    torch.set_num_threads(2)
    from zoo.caffe.convert import convert, load_converted, materialize, model_from_plan, save_converted

    base = _rss_mb()
    t0 = time.perf_counter()
    if mode == "convert":
        plan = convert(weights, input_shape=(3, 224, 224), classifier="fc8")
        state = materialize(plan)
        save_converted(plan, state, out)
    else:
        plan, state, _ = load_converted(out)
    model = model_from_plan(plan, state, name="vgg16")
    seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():  # touches every weight (a lazily mapped file is read in here)
        logits = model(torch.zeros(1, 3, 224, 224))
    peak = _rss_mb()
    return {"mode": mode, "seconds": round(seconds, 2), "baseline_rss_mb": round(base, 1),
            "peak_rss_mb": round(peak, 1), "peak_above_baseline_mb": round(peak - base, 1), "params": params,
            "logits": list(logits.shape)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    parser.add_argument("--measure", nargs=3, metavar=("WEIGHTS", "OUT", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write:
        print(write_vgg16(args.write))
        return
    if args.measure:
        print(json.dumps(measure(Path(args.measure[0]), Path(args.measure[1]), args.measure[2])))
        return
    work = args.keep or Path(tempfile.mkdtemp(prefix="caffe_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    weights = work / "VGG_ILSVRC_16_layers.caffemodel"
    t0 = time.perf_counter()
    # Written in a child process, so that this one stays small (the measuring children are its children).
    count = int(subprocess.run([sys.executable, __file__, "--write", str(weights)], check=True, capture_output=True,
                               text=True).stdout.strip().splitlines()[-1])
    write_s = time.perf_counter() - t0
    size_mb = weights.stat().st_size / 2**20
    print(f"wrote {weights.name}: {count / 1e6:.1f}M parameters, {size_mb:.0f} MiB, in {write_s:.1f} s (caffe_pb2)")
    results = []
    for mode in ("convert", "load-converted"):
        run = subprocess.run([sys.executable, __file__, "--measure", str(weights), str(work / "converted"), mode],
                             check=True, capture_output=True, text=True, env=dict(os.environ))
        r = json.loads(run.stdout.strip().splitlines()[-1])
        r["weights_mb"] = round(size_mb, 1)
        r["peak_over_weights"] = round(r["peak_above_baseline_mb"] / size_mb, 2)
        results.append(r)
        print(f"{mode:15s} {r['seconds']:6.2f} s   peak RSS +{r['peak_above_baseline_mb']:.0f} MiB above "
              f"baseline ({r['peak_over_weights']:.2f} x the {size_mb:.0f} MiB weights)")
    print(json.dumps(results, indent=1))
    if not args.keep:
        for p in sorted(work.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        work.rmdir()


if __name__ == "__main__":
    main()
