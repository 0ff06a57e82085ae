"""int8 for CPUs through onnxruntime's quantization tools, and the accuracy of an export on a labelled
folder, measured through the runtime an application uses.

Owns: ``quantize_model`` (``dynamic``: the weights of MatMul and Gemm, onnxruntime's advice for
transformers and MLPs; ``static``: every supported operator in QDQ form, activation ranges calibrated
on images the user gives, onnxruntime's advice for CNNs), ``labelled_images`` (class folders -> the
model's label indices) and ``evaluate_export`` (what ``zoo export --quantize/--eval`` measures).

Why dynamic leaves convolutions alone: onnxruntime's dynamic ``ConvInteger`` runs slower than fp32 on
the CPU (ResNet-50 at batch 8 on the 2-core CPU: 3.1 img/s against 13.1 for fp32, static QDQ 124).

Imports numpy, onnx, onnxruntime and ``zoo.runtime``; never torch.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError, ExportError
from .export_dir import ExportDir
from .images import find_images

__all__ = ["quantize_model", "labelled_images", "evaluate_export", "top1"]

_BATCH = 8


def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", name.casefold())


def labelled_images(folder: str | os.PathLike, labels: Sequence[str]) -> list[tuple[Path, int]]:
    """Every image under ``folder``'s class sub-folders with the index of its class among ``labels``.

    A sub-folder names its class exactly, or up to case and punctuation (``T-shirt_top`` for
    ``T-shirt/top``, which cannot be a folder name).

    Raises:
        DataError: no class folders, or folders whose names match no label (listed).
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; --eval takes a folder with one sub-folder of images per class.")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class folders; --eval takes one sub-folder of images per class.")
    exact = {label: i for i, label in enumerate(labels)}
    loose = {_key(label): i for i, label in enumerate(labels)}
    unknown = [p.name for p in classes if p.name not in exact and _key(p.name) not in loose]
    if unknown:
        raise DataError(f"{root}: class folders {unknown[:10]} match none of the model's {len(labels)} labels "
                        f"(e.g. {list(labels[:5])}); rename them to the labels.")
    items = []
    for p in classes:
        index = exact.get(p.name, loose.get(_key(p.name)))
        items += [(path, index) for path in find_images(p)]
    if not items:
        raise DataError(f"{root}: the class folders hold no images.")
    return items


def quantize_model(src: Path, dst: Path, *, mode: str, calibration: Iterator[np.ndarray] | None = None) -> None:
    """Write an int8 copy of the ONNX model ``src`` at ``dst``.

    Args:
        src, dst: the fp32 model and where to write the int8 one.
        mode: ``dynamic`` or ``static``.
        calibration: ``static`` only: float32 batches (N, C, H, W) of preprocessed images.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_dynamic, quantize_static)

    prepared = dst.with_name(dst.stem + ".prepared.onnx")
    try:
        # onnxruntime's recommended first step: shape inference and graph optimisation (BatchNorm folding).
        quant_pre_process(str(src), str(prepared))
        # 7-bit weights (reduce_range): on x86 CPUs without VNNI, the u8 x s8 kernels can saturate with full
        # 8-bit weights (onnxruntime's quantization guide). On such a CPU (AVX2 only), static per-channel int8
        # of lenet.fmnist5 lost 3.0 points on 300 test images with 8-bit weights, 0.0 with 7-bit ones; the
        # exported file must be right on whatever CPU the app runs on.
        if mode == "dynamic":
            quantize_dynamic(str(prepared), str(dst), weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"], reduce_range=True)
        else:
            class Reader(CalibrationDataReader):
                def __init__(self, batches: Iterator[np.ndarray]):
                    self.batches = batches

                def get_next(self) -> dict[str, np.ndarray] | None:
                    x = next(self.batches, None)
                    return None if x is None else {"input": x}

            quantize_static(str(prepared), str(dst), Reader(iter(calibration or ())), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)
    finally:
        prepared.unlink(missing_ok=True)
    # The tools rebuild the model: carry the preprocessing, labels and licence over.
    source, target = onnx.load(str(src), load_external_data=False), onnx.load(str(dst))
    onnx.helper.set_model_props(target, {p.key: p.value for p in source.metadata_props})
    onnx.save(target, str(dst))


def top1(logits: np.ndarray, targets: np.ndarray) -> float:
    return float((logits.argmax(1) == targets).mean()) if len(targets) else float("nan")


def _batches(features: Any, paths: Sequence[Path]) -> Iterator[tuple[np.ndarray, list[int]]]:
    """Preprocessed batches of ``paths`` (unreadable files skipped) and the positions they hold."""
    for start in range(0, len(paths), _BATCH):
        chunk = paths[start:start + _BATCH]
        x, kept = features.preprocess(chunk, on_error="skip")
        if len(kept):
            yield x, [start + i for i in kept]


def evaluate_export(folder: ExportDir, *, quantize: str | None, calibration: str | os.PathLike | None,
                    evaluate: str | os.PathLike | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Quantize the folder's ``model.onnx`` in place (the fp32 graph is kept only for the comparison)
    and measure: the int8 graph against the fp32 one, and top-1 on ``evaluate`` for both.

    Returns:
        ``(quantization, accuracy)`` dicts for ``export.json``, each with a one-line ``summary``.
    """
    import onnxruntime as ort

    from .runtime import Features

    if not folder.file(ExportDir.ONNX).is_file():
        raise ExportError("--eval and --quantize need --format onnx (they run through onnxruntime).")
    fp32_path = folder.file(ExportDir.ONNX)
    reader = Features(folder.path)
    items = labelled_images(evaluate, folder.read_labels() or ()) if evaluate else []
    if evaluate and reader.spec.output_kind != "logits":
        raise ExportError("--eval measures a classifier's top-1: export the classifier (no --layer).")
    int8_path = None
    if quantize:
        int8_path = folder.file("model.int8.onnx")
        calib = None
        if quantize == "static":
            calib_paths = find_images(calibration)
            if not calib_paths:
                raise DataError(f"{calibration}: no images to calibrate on.")
            calib = (x for x, _ in _batches(reader, calib_paths))
        quantize_model(fp32_path, int8_path, mode=quantize, calibration=calib)
    sessions = {"fp32": ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])}
    if int8_path is not None:
        sessions["int8"] = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    outputs, targets = _run_all(sessions, reader, items, folder)
    quant = _quant_report(quantize, outputs, fp32_path, int8_path) if quantize else None
    accuracy = _accuracy_report(evaluate, outputs, targets) if evaluate else None
    if int8_path is not None:
        os.replace(int8_path, fp32_path)
    return quant, accuracy


def _run_all(sessions: dict[str, Any], reader: Any, items: list[tuple[Path, int]], folder: ExportDir
             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every session's outputs on the labelled images, or on sample images when there are none."""
    outputs: dict[str, list[np.ndarray]] = {k: [] for k in sessions}
    targets: list[int] = []
    if items:
        batches = _batches(reader, [p for p, _ in items])
    else:
        from PIL import Image

        rng = np.random.default_rng(0)
        _c, h, w = reader.spec.input_size
        noise = [Image.fromarray(rng.integers(0, 256, (h + 17, w + 31, 3), dtype=np.uint8)) for _ in range(16)]
        batches = iter([(reader.preprocess(noise)[0], [])])
    for x, kept in batches:
        for key, session in sessions.items():
            outputs[key].append(session.run(None, {"input": x})[0])
        targets += [items[i][1] for i in kept]
    return {k: np.concatenate(v) for k, v in outputs.items()}, np.asarray(targets, dtype=np.int64)


def _quant_report(mode: str, outputs: dict[str, np.ndarray], fp32: Path, int8: Path) -> dict[str, Any]:
    ref, got = outputs["fp32"], outputs["int8"]
    scale = float(np.abs(ref).max()) or 1.0
    rel = float(np.abs(got - ref).max()) / scale
    agree = float((got.argmax(1) == ref.argmax(1)).mean()) if ref.ndim == 2 and ref.shape[1] > 1 else None
    sizes = (fp32.stat().st_size, int8.stat().st_size)
    summary = (f"file {sizes[0] / 1e6:.1f} MB -> {sizes[1] / 1e6:.1f} MB; outputs differ from fp32 by {rel:.2e} of "
               f"their scale" + (f", same top-1 on {agree:.1%} of {len(ref)} images" if agree is not None else ""))
    return {"mode": mode, "max_rel_vs_fp32": rel, "top1_agreement": agree, "images": len(ref),
            "bytes_fp32": sizes[0], "bytes_int8": sizes[1], "summary": summary}


def _accuracy_report(folder: Any, outputs: dict[str, np.ndarray], targets: np.ndarray) -> dict[str, Any]:
    report: dict[str, Any] = {"folder": os.fspath(folder), "images": len(targets)}
    for key, logits in outputs.items():
        report[f"top1_{key}"] = top1(logits, targets)
    if "top1_int8" in report:
        change = 100 * (report["top1_int8"] - report["top1_fp32"])
        report["change_points"] = change
        report["summary"] = (f"top-1 on {len(targets)} images of {folder}: fp32 {100 * report['top1_fp32']:.2f}%, "
                             f"int8 {100 * report['top1_int8']:.2f}% ({change:+.2f} points)")
    else:
        report["summary"] = f"top-1 on {len(targets)} images of {folder}: {100 * report['top1_fp32']:.2f}%"
    return report
