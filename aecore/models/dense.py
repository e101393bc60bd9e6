"""Dense (MLP) autoencoder: the undercomplete baseline most families build on.

:class:`FlatAutoencoder` is what the dense, linear and residual families share: networks on the flattened
sample, chosen by :meth:`~FlatAutoencoder.build_networks`.
"""

from __future__ import annotations

from functools import partial

import torch
from pydantic import Field
from torch import nn

from aecore.base import Autoencoder
from aecore.config import ModelConfig
from aecore.nets import Activation, Norm, mlp, numel
from aecore.registry import register


class MLPConfig(ModelConfig):
    """Layer options shared by the families built from linear layers (and the conv family)."""

    activation: Activation = "relu"
    """Activation between hidden layers."""

    norm: Norm = "none"
    """Normalisation after each hidden linear layer: none, batch or layer."""

    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout probability after each hidden activation."""


class DenseConfig(MLPConfig):
    """Configuration of the dense autoencoder."""

    hidden: list[int] = Field(default_factory=lambda: [256, 128])
    """Widths of the encoder's hidden layers, outermost first; the decoder mirrors them."""


class FlatAutoencoder(Autoencoder):
    """Encoder and decoder acting on the flattened sample ``[B, d]``; a family supplies :meth:`build_networks`."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.encoder, self.decoder = self.build_networks(numel(config.input_shape))

    def build_networks(self, d: int) -> tuple[nn.Module, nn.Module]:
        """Encoder ``[B, d] -> [B, code_width]`` and decoder ``[B, latent_dim] -> [B, d]`` (without the output
        activation, which :meth:`decode` applies)."""
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        code: torch.Tensor = self.encoder(x.flatten(1))
        return code

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        flat: torch.Tensor = self.decoder(z)
        return flat.view(z.shape[0], *self.config.input_shape)


@register("dense")
class DenseAutoencoder(FlatAutoencoder):
    """Undercomplete MLP autoencoder with configurable depth, widths, activation, norm and dropout."""

    config_cls = DenseConfig
    config: DenseConfig

    def build_networks(self, d: int) -> tuple[nn.Module, nn.Module]:
        """MLP encoder ``[B, d] -> [B, code_width]`` and mirrored decoder ``[B, latent_dim] -> [B, d]``."""
        cfg = self.config
        layers = partial(mlp, act=cfg.activation, norm=cfg.norm, dropout=cfg.dropout)
        encoder = layers([d, *cfg.hidden, self.code_width()])
        decoder = layers([cfg.latent_dim, *reversed(cfg.hidden), d])
        return encoder, decoder
