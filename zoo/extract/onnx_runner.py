"""The network as an exported ONNX graph in onnxruntime, behind the Extractor's runner call.

Owns: ``OnnxRunner`` (``Extractor(..., backend="onnxruntime")``, ``zoo extract --backend
onnxruntime``): the asked layers are exported once, when the runner is made, through the same
``torch.export`` path and parity check as ``zoo export``, then every batch runs in onnxruntime. The
Extractor's decoding, preprocessing, batching and pooling are unchanged, so the features file is the
same (to float rounding). Imports torch, ``zoo.model`` and ``zoo.tracing``; onnx and onnxruntime inside
the functions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ExportError
from ..export_dir import require
from ..model import ZooModel
from ..tracing import LayersModule, check_parity, sample_batch, to_onnx

__all__ = ["OnnxRunner", "TOLERANCE"]

TOLERANCE = 1e-4  # as for `zoo export`: relative to each output's scale


class OnnxRunner:
    """Runs a ``ZooModel``'s asked layers as one ONNX graph in onnxruntime, on the CPU.

    Args:
        model: the network, in eval mode on the CPU (it is not changed).
        layers: the layer names to return (``pool``, ``logits``, module paths, aliases).
        threads: onnxruntime's intra-op threads (None: one per physical core).

    Raises:
        ExportError: the graph cannot be exported, or its outputs differ from the model's beyond
            ``TOLERANCE`` (the Extractor never silently computes other features).
    """

    amp = False
    channels_last = False
    freeze = False

    def __init__(self, model: ZooModel, layers: list[str], *, threads: int | None = None):
        require(("onnx", "onnxscript", "onnxruntime"), purpose="backend='onnxruntime'", extra="export")
        import onnxruntime as ort

        self.layers = list(layers)
        module = LayersModule(model, self.layers).eval()
        name = model.name or "the model"
        self._folder = tempfile.TemporaryDirectory(prefix="zoo-onnx-runner-")
        path = Path(self._folder.name) / "model.onnx"
        outputs = [f"output{i}" for i in range(len(self.layers))]  # layer names need not be valid identifiers
        to_onnx(module, sample_batch(model, 2), path, name=name, metadata={"zoo.layers": ",".join(self.layers)},
                output_names=outputs)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        parity = check_parity(module, self._run, [sample_batch(model, n, seed=10 + n) for n in (1, 3)],
                              runtime="onnxruntime", tolerance=TOLERANCE, logits=False)
        if not parity.passed:
            raise ExportError(f"{name}: the ONNX graph of layers {self.layers} does not match the model "
                              f"({parity.describe()}); use backend='torch'.")
        self.parity = parity

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {"input": np.ascontiguousarray(x, dtype=np.float32)})

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each asked layer's output for the preprocessed batch ``x`` (float N, C, H, W)."""
        outs: list[Any] = self._run(x.detach().cpu().float().numpy())
        return {name: torch.from_numpy(out) for name, out in zip(self.layers, outs, strict=True)}
