"""Linear autoencoder: the PCA-equivalent baseline."""

from __future__ import annotations

from typing import Literal

from torch import nn

from aecore.config import ModelConfig
from aecore.models.dense import FlatAutoencoder
from aecore.registry import register


class LinearConfig(ModelConfig):
    """Configuration of the linear autoencoder (no hidden layers, no activations)."""

    output_activation: Literal["identity"] = "identity"
    """Always identity: a linear autoencoder has no activation anywhere."""


@register("linear")
class LinearAutoencoder(FlatAutoencoder):
    """Linear encoder and decoder, no activations: with MSE it spans the top principal subspace (PCA)."""

    config_cls = LinearConfig
    config: LinearConfig

    def build_networks(self, d: int) -> tuple[nn.Module, nn.Module]:
        """``Linear(d, latent_dim)`` and ``Linear(latent_dim, d)``."""
        return nn.Linear(d, self.config.latent_dim), nn.Linear(self.config.latent_dim, d)
