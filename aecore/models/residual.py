"""Residual autoencoder: dense encoder/decoder made of pre-activation residual blocks for deeper stacks."""

from __future__ import annotations

from pydantic import Field
from torch import nn

from aecore.models.dense import DenseAutoencoder, MLPConfig
from aecore.nets import Norm, residual_mlp
from aecore.registry import register


class ResidualConfig(MLPConfig):
    """Configuration of the residual autoencoder."""

    width: int = Field(default=256, ge=1)
    """Width of the residual stream in encoder and decoder."""

    blocks: int = Field(default=3, ge=0)
    """Residual blocks in the encoder (the decoder has as many)."""

    norm: Norm = "layer"
    """Normalisation inside each residual block: none, batch or layer."""


@register("residual")
class ResidualAutoencoder(DenseAutoencoder):
    """Deep MLP autoencoder built from residual (skip-connection) blocks, trainable at depth."""

    config_cls = ResidualConfig

    def build_networks(self, d: int) -> tuple[nn.Module, nn.Module]:
        """``[B, d] -> [B, code_width]`` and ``[B, latent_dim] -> [B, d]`` residual stacks."""
        cfg = self.config
        common = {"act": cfg.activation, "norm": cfg.norm, "dropout": cfg.dropout}
        encoder = residual_mlp(d, cfg.width, cfg.blocks, self.code_width(), **common)
        decoder = residual_mlp(
            cfg.latent_dim, cfg.width, cfg.blocks, d, final_activation=cfg.output_activation, **common
        )
        return encoder, decoder
