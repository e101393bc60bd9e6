"""Convolutional autoencoder for images of any size and channel count, and the convolutional VAE."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from aecore.base import Autoencoder
from aecore.models.dense import MLPConfig
from aecore.models.vae import GaussianLatent, GaussianLatentConfig
from aecore.nets import activation, norm2d, numel
from aecore.registry import register


class ConvConfig(MLPConfig):
    """Configuration of the convolutional autoencoder; ``input_shape`` is (C, H, W) or (H, W)."""

    input_shape: tuple[int, ...] = (1, 28, 28)
    """Image shape (C, H, W), or (H, W) for one channel; any size, not only multiples of 2^k."""

    channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    """Channels of the stride-2 conv stages, outermost first; the decoder mirrors them."""

    kernel_size: int = Field(default=3, ge=1)
    """Odd kernel size of every convolution."""

    @model_validator(mode="after")
    def _image_shape(self) -> ConvConfig:
        if len(self.input_shape) not in (2, 3):
            raise ValueError(f"conv families need input_shape (C, H, W) or (H, W), got {self.input_shape}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        return self


def crop_or_pad(y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Crop (or zero-pad) the bottom/right of ``[B, C, h, w]`` to ``[B, C, height, width]``."""
    return F.pad(y, (0, width - y.shape[-1], 0, height - y.shape[-2]))


@register("conv")
class ConvAutoencoder(Autoencoder):
    """Convolutional autoencoder: stride-2 conv encoder to a code vector, transposed-conv decoder, any image size."""

    config_cls = ConvConfig
    config: ConvConfig

    def __init__(self, config: ConvConfig):
        super().__init__(config)
        shape = tuple(config.input_shape)
        self.image_shape = (1, *shape) if len(shape) == 2 else shape
        c, h, w = self.image_shape
        k, chans = config.kernel_size, list(config.channels)
        act, norm = config.activation, config.norm

        enc: list[nn.Module] = []
        for c_in, c_out in itertools.pairwise([c, *chans]):
            enc += [nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2), norm2d(norm, c_out), activation(act)]
            h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1  # ceil(h / 2) for odd k with padding k // 2
        self.feature_shape = (chans[-1], h, w)
        flat = numel(self.feature_shape)
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(flat, self.code_width()))

        dec: list[nn.Module] = [
            nn.Linear(config.latent_dim, flat),
            activation(act),
            nn.Unflatten(1, self.feature_shape),
        ]
        rev = chans[::-1]
        for c_in, c_out in zip(rev, rev[1:] + rev[-1:], strict=True):
            dec += [
                nn.ConvTranspose2d(c_in, c_out, k, stride=2, padding=k // 2, output_padding=1),
                norm2d(norm, c_out),
                activation(act),
            ]
        dec += [nn.Conv2d(chans[0], c, k, padding=k // 2)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, *input_shape] -> [B, code_width]``."""
        code: torch.Tensor = self.encoder(x.reshape(x.shape[0], *self.image_shape))
        return code

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, latent_dim] -> [B, *input_shape]``; the upsampled map is cropped back to (H, W)."""
        _, h, w = self.image_shape
        image = crop_or_pad(self.decoder(z), h, w)
        return image.reshape(z.shape[0], *self.config.input_shape)


class ConvVAEConfig(GaussianLatentConfig, ConvConfig):
    """Configuration of the convolutional variational autoencoder."""


@register("conv_vae")
class ConvVAE(GaussianLatent, ConvAutoencoder):
    """Convolutional VAE: the conv encoder/decoder with a Gaussian latent, ELBO training and prior sampling."""

    config_cls = ConvVAEConfig
    config: ConvVAEConfig
