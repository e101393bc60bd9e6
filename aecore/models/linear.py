"""Linear autoencoder: the PCA-equivalent baseline, which can start at the principal subspace itself."""

from __future__ import annotations

from typing import Literal

import torch
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
    principal_start = True

    def build_networks(self, d: int) -> tuple[nn.Module, nn.Module]:
        """``Linear(d, latent_dim)`` and ``Linear(latent_dim, d)``."""
        return nn.Linear(d, self.config.latent_dim), nn.Linear(self.config.latent_dim, d)

    @torch.no_grad()
    def start_at_principal_subspace(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        """Encoder ``z = V (x - mean)``, decoder ``x' = V^T z + mean`` for ``V`` = ``components``
        ``[latent_dim, D]``: the PCA reconstruction, the optimum of a linear autoencoder's squared error."""
        encoder, decoder = self.encoder, self.decoder
        assert isinstance(encoder, nn.Linear) and isinstance(decoder, nn.Linear)
        expected = (self.config.latent_dim, encoder.in_features)
        if tuple(components.shape) != expected or tuple(mean.shape) != expected[1:]:
            raise ValueError(f"components {tuple(components.shape)} and mean {tuple(mean.shape)} for a code of "
                             f"{expected[0]} over {expected[1]} values")  # fmt: skip
        v, m = components.to(encoder.weight), mean.to(encoder.weight)
        encoder.weight.copy_(v)
        encoder.bias.copy_(-(v @ m))
        decoder.weight.copy_(v.T)
        decoder.bias.copy_(m)
