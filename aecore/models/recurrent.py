"""Recurrent (LSTM/GRU) sequence autoencoder for windows of multivariate time series."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from aecore.base import Autoencoder
from aecore.config import ModelConfig
from aecore.registry import register


class RecurrentConfig(ModelConfig):
    """Configuration of the recurrent autoencoder; ``input_shape`` is (T, F): T steps of F features."""

    input_shape: tuple[int, ...] = (64, 1)
    """Window shape (T, F): time steps, features per step."""

    cell: Literal["lstm", "gru"] = "lstm"
    """Recurrent cell of encoder and decoder."""

    hidden_size: int = Field(default=64, ge=1)
    """Hidden state width of the recurrent layers."""

    num_layers: int = Field(default=1, ge=1)
    """Stacked recurrent layers in encoder and decoder."""

    @model_validator(mode="after")
    def _sequence_shape(self) -> RecurrentConfig:
        if len(self.input_shape) != 2:
            raise ValueError(f"recurrent needs input_shape (T, F), got {self.input_shape}")
        return self


@register("recurrent")
class RecurrentAutoencoder(Autoencoder):
    """LSTM/GRU sequence autoencoder: the last encoder state becomes the code, the decoder unrolls it over T steps."""

    config_cls = RecurrentConfig
    config: RecurrentConfig

    def __init__(self, config: RecurrentConfig):
        super().__init__(config)
        _, f = config.input_shape
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[config.cell]
        h, layers = config.hidden_size, config.num_layers
        self.encoder_rnn = rnn(f, h, layers, batch_first=True)
        self.to_code = nn.Linear(h, self.code_width())
        self.init_state = nn.Linear(config.latent_dim, layers * h)
        self.decoder_rnn = rnn(config.latent_dim, h, layers, batch_first=True)
        self.readout = nn.Sequential(nn.Linear(h, f))  # a Sequential so that saved weights keep their names

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, F] -> [B, latent_dim]`` from the last step of the top encoder layer."""
        out, _ = self.encoder_rnn(x)
        code: torch.Tensor = self.to_code(out[:, -1])
        return code

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, latent_dim] -> [B, T, F]``: z is both the initial state (via a linear map) and every step's input."""
        t = self.config.input_shape[0]
        layers, h = self.config.num_layers, self.config.hidden_size
        h0 = torch.tanh(self.init_state(z)).view(-1, layers, h).transpose(0, 1).contiguous()
        state = (h0, torch.zeros_like(h0)) if self.config.cell == "lstm" else h0
        out, _ = self.decoder_rnn(z.unsqueeze(1).expand(-1, t, -1), state)
        window: torch.Tensor = self.readout(out)
        return window
