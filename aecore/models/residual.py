"""Residual autoencoder: dense encoder/decoder made of pre-activation residual blocks for deeper stacks."""

from __future__ import annotations

from functools import partial

from pydantic import Field
from torch import nn

from aecore.models.dense import FlatAutoencoder, MLPConfig
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
class ResidualAutoencoder(FlatAutoencoder):
    """Deep MLP autoencoder built from residual (skip-connection) blocks, trainable at depth."""

    config_cls = ResidualConfig
    config: ResidualConfig

    def build_networks(self, d: int) -> tuple[nn.Module, nn.Module]:
        """``[B, d] -> [B, code_width]`` and ``[B, latent_dim] -> [B, d]`` residual stacks."""
        cfg = self.config
        stack = partial(residual_mlp, act=cfg.activation, norm=cfg.norm, dropout=cfg.dropout)
        encoder = stack(d, cfg.width, cfg.blocks, self.code_width())
        decoder = stack(cfg.latent_dim, cfg.width, cfg.blocks, d)
        return encoder, decoder
