"""Adversarial autoencoder (Makhzani et al. 2015): a discriminator matches the code distribution to N(0, I)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.func import functional_call

from aecore.base import UpdatePhase
from aecore.models.dense import DenseAutoencoder, DenseConfig
from aecore.nets import mlp
from aecore.registry import register


class AdversarialConfig(DenseConfig):
    """Configuration of the adversarial autoencoder."""

    disc_hidden: list[int] = Field(default_factory=lambda: [64, 64])
    """Hidden widths of the code discriminator (code -> real/fake logit)."""

    adversarial_weight: float = Field(default=1.0, ge=0.0)
    """Weight of the generator (encoder-fools-discriminator) loss."""


@register("adversarial")
class AdversarialAutoencoder(DenseAutoencoder):
    """Adversarial autoencoder: a discriminator pushes the code distribution towards the N(0, I) prior.

    One iteration has three phases, each stepping its own optimizer: ``reconstruction`` (encoder +
    decoder), ``discriminator`` (prior draws vs codes) and ``generator`` (the encoder fools the
    discriminator). Each phase's loss only reaches its own optimizer's parameters.
    """

    config_cls = AdversarialConfig
    config: AdversarialConfig
    generative = True

    def __init__(self, config: AdversarialConfig):
        super().__init__(config)
        self.discriminator = mlp([config.latent_dim, *config.disc_hidden, 1], act="leaky_relu")

    def _logits(self, z: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """Discriminator logits ``[B]``; ``frozen`` runs it with detached weights (no gradient to D)."""
        if not frozen:
            logits: torch.Tensor = self.discriminator(z)
        else:
            params = {k: v.detach() for k, v in self.discriminator.named_parameters()}
            logits = functional_call(self.discriminator, params, (z,))
        return logits.squeeze(-1)

    def discriminator_terms(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Discriminator BCE (prior draws = real, codes = fake, codes detached) and its accuracy."""
        z = z.detach()
        real, fake = self._logits(torch.randn_like(z)), self._logits(z)
        loss = 0.5 * (
            F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
            + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        )
        acc = 0.5 * ((real > 0).float().mean() + (fake < 0).float().mean())
        return {"discriminator": loss, "disc_accuracy": acc.detach()}

    def generator_terms(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted encoder loss for making codes look like prior draws (the discriminator is frozen)."""
        fake = self._logits(z, frozen=True)
        return {
            "generator": self.config.adversarial_weight
            * F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
        }

    def update_phases(self) -> list[UpdatePhase]:
        return [
            UpdatePhase("reconstruction", "autoencoder"),
            UpdatePhase("discriminator", "discriminator"),
            UpdatePhase("generator", "generator"),
        ]

    def optimizer_params(self) -> dict[str, list[nn.Parameter]]:
        enc, dec = list(self.encoder.parameters()), list(self.decoder.parameters())
        return {"autoencoder": enc + dec, "discriminator": list(self.discriminator.parameters()), "generator": enc}

    def phase_loss(self, x: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
        if phase == "reconstruction":
            return super().loss(x)
        if phase not in ("discriminator", "generator"):
            raise ValueError(f"unknown phase {phase!r}; phases: reconstruction, discriminator, generator")
        z = self.encode(self.corrupt(x))
        terms = self.discriminator_terms(z) if phase == "discriminator" else self.generator_terms(z)
        return {"loss": terms[phase], **terms}

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """All terms at once; ``loss`` = reconstruction + generator + discriminator is a simultaneous
        update of both players (each term only reaches its own player's parameters)."""
        x_in = self.corrupt(x)
        z = self.encode(x_in)
        rec = self.reconstruction_loss(self.decode_logits(z), x)
        terms = {"reconstruction": rec, **self.generator_terms(z), **self.discriminator_terms(z)}
        return {"loss": rec + terms["generator"] + terms["discriminator"], **terms}
