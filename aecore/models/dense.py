"""Dense (MLP) autoencoder: the undercomplete baseline most families build on."""

from __future__ import annotations

import torch
from pydantic import Field

from aecore.base import Autoencoder
from aecore.config import ModelConfig
from aecore.nets import Activation, Norm, mlp, numel
from aecore.registry import register


class DenseConfig(ModelConfig):
    """Configuration of the dense autoencoder."""

    hidden: list[int] = Field(default_factory=lambda: [256, 128])
    """Widths of the encoder's hidden layers, outermost first; the decoder mirrors them."""

    activation: Activation = "relu"
    """Activation between hidden layers."""

    norm: Norm = "none"
    """Normalisation after each hidden linear layer: none, batch or layer."""

    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout probability after each hidden activation."""


@register("dense")
class DenseAutoencoder(Autoencoder):
    """Undercomplete MLP autoencoder with configurable depth, widths, activation, norm and dropout."""

    config_cls = DenseConfig

    def __init__(self, config: DenseConfig):
        super().__init__(config)
        d = numel(config.input_shape)
        enc_widths = [d, *config.hidden, self.code_width()]
        dec_widths = [config.latent_dim, *reversed(config.hidden), d]
        common = dict(act=config.activation, norm=config.norm, dropout=config.dropout)
        self.encoder = mlp(enc_widths, **common)
        self.decoder = mlp(dec_widths, final_activation=config.output_activation, **common)

    def code_width(self) -> int:
        """Width of the encoder's last layer (a VAE doubles it for mean and log-variance)."""
        return self.config.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(z.shape[0], *self.config.input_shape)
