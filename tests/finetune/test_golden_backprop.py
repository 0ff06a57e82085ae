"""The lecture's worked backpropagation example, run through the zoo's own training loop.

A 2-2-2 network with sigmoid hidden and output units, weights w1..w8 = 0.15, 0.20, 0.25, 0.30, 0.40,
0.45, 0.50, 0.55, fixed biases b1 = 0.35 (hidden layer) and b2 = 0.60 (output layer), input (0.05, 0.10),
target (0.01, 0.99), SGD with learning rate 0.5 and the halved squared error. The lecture's figures:
total error 0.298371109 before the first step, 0.291027924 after it, about 0.000035085 after 10,000.

Two of those figures carry slips of the slide, which the test pins down rather than papers over:
- 0.291027924: the lecture's own updated weights (w1 = 0.149780716 ... w8 = 0.561370121) give
  0.2910277737 when the error is recomputed exactly; exact backprop gives the same. We assert the exact
  value and that it lies within 2e-7 of the slide's.
- 0.000035085: the source of the example (Mazur, "A Step by Step Backpropagation Example") gives
  0.0000351085, the error measured at the 10,000th iteration, before its update; the slide lost a
  digit. Our loop reports 0.00003510855 there.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from zoo.finetune.loop import TrainConfig, evaluate, train


class OneSample(Dataset):
    """The same (input, target) pair ``n`` times: 10,000 steps of batch 1 are one epoch."""

    def __init__(self, n: int):
        self.n = n
        self.x = torch.tensor([[0.05, 0.10]], dtype=torch.float64)
        self.y = torch.tensor([[0.01, 0.99]], dtype=torch.float64)

    def __len__(self) -> int:
        return self.n

    def get_batch(self, indices: torch.Tensor):
        return self.x.expand(len(indices), 2), self.y.expand(len(indices), 2)


class SharedBias(nn.Module):
    """Linear layer with one bias shared by every unit, as in the worked example."""

    def __init__(self, weight: list[list[float]], bias: float):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weight, dtype=torch.float64))
        self.bias = nn.Parameter(torch.tensor(bias, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T + self.bias


def network() -> nn.Module:
    # Rows are units: h1 = w1*i1 + w2*i2 + b1, h2 = w3*i1 + w4*i2 + b1, o1 = w5*h1 + w6*h2 + b2, ...
    net = nn.Sequential(SharedBias([[0.15, 0.20], [0.25, 0.30]], 0.35), nn.Sigmoid(),
                        SharedBias([[0.40, 0.45], [0.50, 0.55]], 0.60), nn.Sigmoid())
    # The worked example updates w1..w8 only; the biases stay fixed (frozen params leave the optimizer).
    net[0].bias.requires_grad_(False)
    net[2].bias.requires_grad_(False)
    return net


def half_squared_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((target - out) ** 2).sum()


CONFIG = dict(batch_size=1, optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0, schedule="constant",
              warmup_epochs=0, device="cpu", amp=False, epochs=1)


def test_worked_example_first_step_and_ten_thousand_steps():
    losses = []
    net = network()
    result = train(net, OneSample(10_000), None, TrainConfig(**CONFIG), loss_fn=half_squared_error,
                   callbacks={"on_step_end": [lambda info: losses.append(info["loss"])]}, progress=False)
    # The loss a step reports is the error before that step's update.
    assert round(float(losses[0]), 9) == 0.298371109
    assert round(float(losses[1]), 10) == 0.2910277737
    assert abs(float(losses[1]) - 0.291027924) < 2e-7
    assert result.steps == len(losses) == 10_000
    assert round(float(losses[-1]), 10) == 0.0000351085
    assert abs(float(losses[-1]) - 0.000035085) < 3e-8
    final = evaluate(result.model, OneSample(1), device="cpu", loss_fn=half_squared_error)["loss"]
    assert final < float(losses[-1])  # and the last update lowers it once more
    # The lecture's updated weights after the first step (w5 = 0.35891648, w1 = 0.149780716).
    first = network()
    train(first, OneSample(1), None, TrainConfig(**CONFIG), loss_fn=half_squared_error, progress=False)
    assert round(first[2].weight[0, 0].item(), 8) == 0.35891648
    assert round(first[0].weight[0, 0].item(), 9) == 0.149780716
    assert round(first[2].weight[1, 1].item(), 9) == 0.561370121
    assert float(first[0].bias) == 0.35 and float(first[2].bias) == 0.60
