"""Typed model configuration shared by every family.

A family subclasses :class:`ModelConfig`, adding its own fields; each field's docstring is its help text
(``use_attribute_docstrings``), so ``aepipe zoo`` and config errors can show it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aecore.nets import Corruption


class ModelConfig(BaseModel):
    """Fields every autoencoder family has."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, frozen=True)

    name: str = "dense"
    """Registry name of the family (see ``aepipe zoo``)."""

    input_shape: tuple[int, ...] = Field(default=(784,))
    """Shape of one sample without the batch dimension, e.g. (784,), (1, 28, 28) or (64, 3)."""

    latent_dim: int = Field(default=32, ge=1)
    """Size of the code vector."""

    reconstruction: Literal["mse", "bce"] = "mse"
    """Reconstruction likelihood: mse (Gaussian) or bce (Bernoulli, inputs in [0, 1])."""

    output_activation: Literal["identity", "sigmoid"] = "identity"
    """Activation on the decoder output; sigmoid suits inputs scaled to [0, 1]."""

    corruption: Corruption = "none"
    """Input corruption while training (any family becomes denoising; the clean input is the target
    and scoring always sees the clean input): none, gaussian, masking or salt_pepper."""

    corruption_rate: float = Field(default=0.25, ge=0.0, le=1.0)
    """Fraction of input entries corrupted when ``corruption`` is not none."""

    noise_std: float = Field(default=0.1, ge=0.0)
    """Standard deviation of the noise added by ``gaussian`` corruption."""

    seed: int = 0
    """Seed for the fixed draws of stochastic scores, and for parameter initialisation when the builder is given
    no seed of its own (the trainer gives train.seed)."""
