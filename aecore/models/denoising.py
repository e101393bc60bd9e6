"""Denoising autoencoder: the dense autoencoder trained to undo input corruption.

Corruption is a field of every family's config (see :class:`aecore.config.ModelConfig`), so this family
is only the dense autoencoder with corruption switched on by default.
"""

from __future__ import annotations

from pydantic import Field

from aecore.models.dense import DenseAutoencoder, DenseConfig
from aecore.nets import Corruption
from aecore.registry import register


class DenoisingConfig(DenseConfig):
    """Configuration of the denoising autoencoder: a dense one with corruption on by default."""

    corruption: Corruption = "gaussian"
    """Input corruption while training: gaussian, masking or salt_pepper (none makes it a plain dense AE)."""

    corruption_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    """Fraction of input entries corrupted (gaussian noise on all entries by default)."""

    noise_std: float = Field(default=0.3, ge=0.0)
    """Standard deviation of the noise added by ``gaussian`` corruption."""


@register("denoising")
class DenoisingAutoencoder(DenseAutoencoder):
    """Dense autoencoder that reconstructs the clean input from a corrupted one (noise, masking, salt-and-pepper)."""

    config_cls = DenoisingConfig
    config: DenoisingConfig
