"""Building blocks shared by the families: MLP stacks, activations, reconstruction errors."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Activation = Literal["relu", "gelu", "tanh", "sigmoid", "elu", "leaky_relu", "identity"]
Norm = Literal["none", "batch", "layer"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    """A fresh activation module by name."""
    return _ACTIVATIONS[name]()


def _norm(kind: str, width: int) -> nn.Module:
    return {"none": nn.Identity, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}[kind](width) if kind != "none" else nn.Identity()


def mlp(
    widths: list[int],
    act: str = "relu",
    norm: str = "none",
    dropout: float = 0.0,
    final_activation: str = "identity",
) -> nn.Sequential:
    """Linear layers through ``widths`` ([in, h1, ..., out]); act/norm/dropout between hidden layers."""
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(w_in, w_out))
        if i < len(widths) - 2:
            layers += [_norm(norm, w_out), activation(act)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    layers.append(activation(final_activation))
    return nn.Sequential(*layers)


def numel(shape: tuple[int, ...]) -> int:
    """Number of features in one sample of ``shape``."""
    return int(math.prod(shape))


def reconstruction_error(x_hat: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample reconstruction error, shape [B]: mean squared error or summed-then-averaged BCE.

    ``x_hat`` for ``bce`` is a probability in [0, 1] (the decoder ends in a sigmoid) and ``x`` in [0, 1].
    Both are averaged over features so the number does not depend on the input size.
    """
    if kind == "mse":
        err = (x_hat - x).pow(2)
    elif kind == "bce":
        err = F.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), x.clamp(0, 1), reduction="none")
    else:
        raise ValueError(f"unknown reconstruction {kind!r}; known: mse, bce")
    return err.flatten(1).mean(dim=1)


def reconstruction_nll(x_hat: torch.Tensor, x: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample negative log-likelihood summed over features, shape [B] (for ELBOs).

    ``mse`` is a unit-variance Gaussian: 0.5 * ||x - x_hat||^2 + 0.5 * D * log(2 pi).
    """
    d = x[0].numel()
    if kind == "mse":
        return 0.5 * (x_hat - x).pow(2).flatten(1).sum(1) + 0.5 * d * math.log(2 * math.pi)
    return reconstruction_error(x_hat, x, kind) * d
