"""Sparse autoencoder: an L1 or KL(rho || rho_hat) sparsity penalty on the code."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from aecore.models.dense import DenseAutoencoder, DenseConfig
from aecore.registry import register


class SparseConfig(DenseConfig):
    """Configuration of the sparse autoencoder."""

    sparsity: Literal["l1", "kl"] = "l1"
    """Penalty: l1 (mean over the batch of sum |z|) or kl (sum over units of KL(rho || mean activation));
    with kl the code passes through a sigmoid so activations lie in (0, 1)."""

    sparsity_weight: float = Field(default=1e-3, ge=0.0)
    """Weight of the sparsity penalty in the loss."""

    target_rho: float = Field(default=0.05, gt=0.0, lt=1.0)
    """Target mean activation rho of each code unit for the kl penalty."""


def bernoulli_kl(rho: float, rho_hat: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``KL(Bernoulli(rho) || Bernoulli(rho_hat))`` elementwise."""
    rho_hat = rho_hat.clamp(eps, 1 - eps)
    return rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))


@register("sparse")
class SparseAutoencoder(DenseAutoencoder):
    """Dense autoencoder with a sparsity penalty on the code: L1, or KL divergence to a target activation rho."""

    config_cls = SparseConfig
    config: SparseConfig

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        z = super().encode(x)
        return torch.sigmoid(z) if self.config.sparsity == "kl" else z

    def sparsity_penalty(self, z: torch.Tensor) -> torch.Tensor:
        """Unweighted penalty of a code batch ``[B, L]`` (scalar)."""
        if self.config.sparsity == "l1":
            return z.abs().sum(dim=1).mean()
        return bernoulli_kl(self.config.target_rho, z.mean(dim=0)).sum()

    def penalties(self, x_in: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"sparsity": self.config.sparsity_weight * self.sparsity_penalty(z)}
