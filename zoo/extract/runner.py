"""Where the network runs: a preprocessed batch in, the raw outputs of the asked layers out.

Owns: ``TorchRunner`` (eager PyTorch in inference mode, NHWC memory format, bfloat16 autocast, and on
the CPU the pooled-features path as a frozen TorchScript graph). Decoding, batching, normalisation and
pooling are the Extractor's; a runner only runs the network, so another runtime is another class with
the same call, ``runner(x) -> {layer: tensor}``. Imports torch and ``zoo.model``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..model import POOL, ZooModel

__all__ = ["TorchRunner"]


class TorchRunner:
    """Runs a ``ZooModel`` on batches that are already preprocessed (float N, C, H, W, normalised).

    Args:
        model: the network, in eval mode on ``device``; put into NHWC memory format here (in place)
            when ``channels_last``.
        layers: the layer names to return (``pool``, ``logits``, module paths, aliases).
        device: where the model is.
        channels_last: run in NHWC memory format (oneDNN and cuDNN convolutions are faster in it;
            results differ from NCHW only by float rounding).
        amp: bfloat16 autocast.
        freeze: run the ``pool`` path as a frozen TorchScript graph (BatchNorm folded into the
            convolutions, oneDNN fusions), traced on the first batch; only when ``layers`` is
            ``["pool"]``. A model that cannot be traced runs eagerly, with a warning that says why.
    """

    def __init__(self, model: ZooModel, layers: list[str], *, device: torch.device, channels_last: bool,
                 amp: bool, freeze: bool):
        self.model = model
        self.layers = list(layers)
        self.device = device
        self.channels_last = channels_last
        self.amp = amp
        self.freeze = bool(freeze and self.layers == [POOL])
        self._frozen: Any = None  # the traced body and the batch shape it was traced at
        if channels_last:
            model.to(memory_format=torch.channels_last)

    @property
    def traced_shape(self) -> tuple[int, ...] | None:
        """The batch shape the frozen graph was traced at (None until the first batch, or when eager);
        batches of another shape (a short last batch) run eagerly."""
        return None if self._frozen is None else self._frozen[1]

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each asked layer's output for the batch ``x`` (on ``device``), as inference-mode tensors."""
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            if self.layers == [POOL]:
                return {POOL: self._body(x)}
            return self.model.forward_layers(x, self.layers)

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features, through the frozen graph when it is on and fits this batch's shape."""
        if not self.freeze:
            return self.model.body(x)
        if self._frozen is None:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # TorchScript's own deprecation chatter
                    graph = torch.jit.optimize_for_inference(torch.jit.freeze(
                        torch.jit.trace(self.model.body.eval(), x, check_trace=False)))
                    graph(x)
            except Exception as err:  # noqa: BLE001 (any tracing failure means: run eagerly)
                warnings.warn(f"{self.model.name or 'the model'} could not be frozen for faster CPU inference "
                              f"({type(err).__name__}: {err}); running it eagerly (same results).", stacklevel=4)
                self.freeze = False
                return self.model.body(x)
            self._frozen = (graph, tuple(x.shape))
        graph, shape = self._frozen
        # The trace is specialised to its input shape; a short last batch runs eagerly.
        return graph(x) if tuple(x.shape) == shape else self.model.body(x)
