"""Building blocks shared by the families: MLP and residual stacks, activations, reconstruction errors,
input corruption and Gaussian densities."""

from __future__ import annotations

import itertools
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


Corruption = Literal["none", "gaussian", "masking", "salt_pepper"]


def _norm(kind: str, width: int) -> nn.Module:
    return (
        {"none": nn.Identity, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}[kind](width)
        if kind != "none"
        else nn.Identity()
    )


def norm2d(kind: str, channels: int) -> nn.Module:
    """Normalisation for ``[B, C, H, W]`` maps: none, batch (BatchNorm2d) or layer (GroupNorm with 1 group)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(1, channels) if kind == "layer" else nn.Identity()


def mlp(
    widths: list[int],
    act: str = "relu",
    norm: str = "none",
    dropout: float = 0.0,
    final_activation: str = "identity",
) -> nn.Sequential:
    """Linear layers through ``widths`` ([in, h1, ..., out]); act/norm/dropout between hidden layers."""
    layers: list[nn.Module] = []
    for i, (w_in, w_out) in enumerate(itertools.pairwise(widths)):
        layers.append(nn.Linear(w_in, w_out))
        if i < len(widths) - 2:
            layers += [_norm(norm, w_out), activation(act)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    layers.append(activation(final_activation))
    return nn.Sequential(*layers)


class ResidualBlock(nn.Module):
    """Pre-activation residual block ``x + W2 act(norm(W1 act(norm(x))))`` on ``[B, width]``."""

    def __init__(self, width: int, act: str = "relu", norm: str = "none", dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            _norm(norm, width),
            activation(act),
            nn.Linear(width, width),
            _norm(norm, width),
            activation(act),
            nn.Dropout(dropout),
            nn.Linear(width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual: torch.Tensor = self.body(x)
        return x + residual


def residual_mlp(
    d_in: int,
    width: int,
    blocks: int,
    d_out: int,
    act: str = "relu",
    norm: str = "none",
    dropout: float = 0.0,
    final_activation: str = "identity",
) -> nn.Sequential:
    """``Linear(d_in, width)``, ``blocks`` residual blocks, then norm/act and ``Linear(width, d_out)``."""
    return nn.Sequential(
        nn.Linear(d_in, width),
        *(ResidualBlock(width, act, norm, dropout) for _ in range(blocks)),
        _norm(norm, width),
        activation(act),
        nn.Linear(width, d_out),
        activation(final_activation),
    )


def numel(shape: tuple[int, ...]) -> int:
    """Number of features in one sample of ``shape``."""
    return int(math.prod(shape))


def output(out: torch.Tensor, output_activation: str) -> torch.Tensor:
    """The reconstruction from the decoder's output before its activation: ``output_activation(out)``."""
    return out if output_activation == "identity" else activation(output_activation)(out)


def elementwise_error(
    out: torch.Tensor, x: torch.Tensor, kind: str, output_activation: str = "identity"
) -> torch.Tensor:
    """Reconstruction error per entry, same shape as ``x``: squared error or BCE.

    ``out`` is the decoder's output before ``output_activation``: logits when that is a sigmoid (BCE is then
    computed from the logits, stable, and allowed under CUDA autocast), the reconstruction itself when it is
    identity. ``x`` for ``bce`` is a probability target, clamped into [0, 1].
    """
    if kind == "mse":
        return (output(out, output_activation) - x).pow(2)
    if kind == "bce":
        target = x.clamp(0, 1)
        if output_activation == "sigmoid":
            return F.binary_cross_entropy_with_logits(out, target.to(out.dtype), reduction="none")
        # a decoder without a sigmoid gives probabilities directly: clamp them into (0, 1), in fp32 and outside
        # autocast, which refuses binary_cross_entropy on CUDA
        with torch.autocast(out.device.type, enabled=False):
            p = output(out.float(), output_activation).clamp(1e-6, 1 - 1e-6)
            return F.binary_cross_entropy(p, target.float(), reduction="none")
    raise ValueError(f"unknown reconstruction {kind!r}; known: mse, bce")


def reconstruction_error(
    out: torch.Tensor, x: torch.Tensor, kind: str, output_activation: str = "identity"
) -> torch.Tensor:
    """Per-sample reconstruction error, shape [B]: mean squared error or mean BCE over features.

    ``out`` as in :func:`elementwise_error`. Averaged over features so the number does not depend on the input size.
    """
    return elementwise_error(out, x, kind, output_activation).flatten(1).mean(dim=1)


def reconstruction_nll(
    out: torch.Tensor, x: torch.Tensor, kind: str, output_activation: str = "identity"
) -> torch.Tensor:
    """Per-sample negative log-likelihood summed over features, shape [B] (for ELBOs); ``out`` as in
    :func:`elementwise_error`.

    ``mse`` is a unit-variance Gaussian: 0.5 * ||x - x_hat||^2 + 0.5 * D * log(2 pi).
    """
    d = x[0].numel()
    if kind == "mse":
        x_hat = output(out, output_activation)
        return 0.5 * (x_hat - x).pow(2).flatten(1).sum(1) + 0.5 * d * math.log(2 * math.pi)
    return reconstruction_error(out, x, kind, output_activation) * d


def corrupt(
    x: torch.Tensor,
    kind: str,
    rate: float,
    noise_std: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A corrupted copy of ``x`` (any shape) for denoising training; ``rate`` is the corrupted fraction.

    ``gaussian`` adds N(0, noise_std^2) to a ``rate`` fraction of entries; ``masking`` sets that fraction
    to 0; ``salt_pepper`` sets it to the batch minimum or maximum with equal odds; ``none`` returns ``x``.
    """
    if kind == "none" or rate <= 0:
        return x
    if kind not in ("gaussian", "masking", "salt_pepper"):
        raise ValueError(f"unknown corruption {kind!r}; known: none, gaussian, masking, salt_pepper")
    hit = torch.rand(x.shape, generator=generator, device=x.device) < rate
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype) * noise_std
        return x + noise * hit
    if kind == "masking":
        return x.masked_fill(hit, 0.0)
    salt = torch.rand(x.shape, generator=generator, device=x.device) < 0.5
    lo, hi = x.detach().amin(), x.detach().amax()
    return torch.where(hit, torch.where(salt, hi, lo), x)


LOG_2PI = math.log(2 * math.pi)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Closed-form ``KL(N(mu, exp(logvar)) || N(0, I))`` per sample: ``[B, L] -> [B]``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=-1)


def gaussian_log_prob(
    z: torch.Tensor, mu: torch.Tensor | float = 0.0, logvar: torch.Tensor | float = 0.0
) -> torch.Tensor:
    """``log N(z; mu, diag(exp(logvar)))`` summed over the last dimension: ``[..., L] -> [...]``."""
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * ((z - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI).sum(dim=-1)
