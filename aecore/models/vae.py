"""Variational autoencoders: a Gaussian-latent mixin, the dense VAE and the beta-VAE.

:class:`GaussianLatent` turns any encoder/decoder family whose encoder emits ``code_width()`` features
into a VAE (the conv VAE reuses it), so the ELBO, the importance-weighted score, the posterior-mean
embedding and prior sampling live in one place.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from aecore.base import Autoencoder
from aecore.config import ModelConfig
from aecore.models.dense import DenseAutoencoder, DenseConfig
from aecore.nets import gaussian_kl, gaussian_log_prob, reconstruction_nll
from aecore.registry import register


class GaussianLatentConfig(ModelConfig):
    """Fields of every Gaussian-latent (variational) family."""

    beta: float = Field(default=1.0, ge=0.0)
    """Weight of the KL term (1 = the ELBO; > 1 = beta-VAE, more disentangled, blurrier)."""

    score_samples: int = Field(default=1, ge=1)
    """Posterior samples k per input for ``score``: 1 = negative ELBO, k > 1 = importance-weighted NLL; every row
    is scored with the same k draws (from ``seed``), so its score does not depend on the batch."""


class GaussianLatent(Autoencoder):
    """Mixin: diagonal-Gaussian posterior q(z|x), N(0, I) prior, reparameterised ELBO training.

    Put it before an autoencoder class whose ``encode`` returns ``[B, code_width()]`` raw features
    (``class VAE(GaussianLatent, DenseAutoencoder)``); they are split into mean and log-variance.
    Losses sum over features (a true ELBO in nats). It subclasses :class:`Autoencoder` only so that
    ``super().encode``, ``decode`` and ``corrupt`` are known to it; the family after it provides them.
    """

    generative = True
    config: GaussianLatentConfig

    def code_width(self) -> int:
        return 2 * self.config.latent_dim

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of q(z|x), each ``[B, latent_dim]``."""
        mu, logvar = super().encode(x).chunk(2, dim=1)
        return mu, logvar.clamp(-20.0, 10.0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean ``[B, latent_dim]`` (so ``forward`` is the deterministic reconstruction)."""
        return self.posterior(x)[0]

    @staticmethod
    def reparameterize(
        mu: torch.Tensor,
        logvar: torch.Tensor,
        generator: torch.Generator | None = None,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``mu + sigma * eps`` with ``eps ~ N(0, I)``; leading sample dims of ``mu`` are kept.

        ``noise``: given draws of ``eps`` broadcast against ``mu`` (e.g. ``[latent_dim]``, or ``[k, 1, latent_dim]``
        for ``mu`` of ``[k, B, latent_dim]``) instead of fresh ones, so every row gets the same draws.
        """
        if noise is None:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        else:
            eps = noise.to(device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``-log p(x|z)`` per sample ``[B]``, summed over features, from the decoder output ``logits``
        (:meth:`decode_logits`)."""
        return reconstruction_nll(logits, x, self.config.reconstruction, self.config.output_activation)

    def elbo_terms(
        self, x: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One-sample reconstruction NLL and closed-form KL, each ``[B]``; x is encoded as given. ``noise``: one
        draw ``[latent_dim]`` used for every row instead of fresh draws."""
        mu, logvar = self.posterior(x)
        z = self.reparameterize(mu, logvar, generator, noise)
        return self.nll(self.decode_logits(z), x), gaussian_kl(mu, logvar)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.posterior(self.corrupt(x))
        rec = self.nll(self.decode_logits(self.reparameterize(mu, logvar)), x).mean()
        kl = gaussian_kl(mu, logvar).mean()
        return {"loss": rec + self.config.beta * kl, "reconstruction": rec, "kl": kl}

    def negative_elbo(
        self, x: torch.Tensor, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One-sample estimate of ``-ELBO`` per sample ``[B]`` (KL in closed form, beta ignored); ``noise`` as in
        :meth:`elbo_terms`."""
        rec, kl = self.elbo_terms(x, generator, noise)
        return rec + kl

    def iwae_nll(
        self, x: torch.Tensor, k: int, generator: torch.Generator | None = None, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Importance-weighted estimate of ``-log p(x)`` with ``k`` posterior samples, ``[B]``.

        ``-logmeanexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)]``; an upper bound on the NLL that
        tightens as k grows and is never looser, in expectation, than the negative ELBO. ``noise``: ``k`` draws
        ``[k, latent_dim]`` used for every row instead of fresh draws.
        """
        mu, logvar = self.posterior(x)
        shared = None if noise is None else noise.unsqueeze(1)  # [k, 1, L]: the same k draws for every row
        z = self.reparameterize(mu.expand(k, *mu.shape), logvar, generator, shared)  # [k, B, L]
        x_rep = x.expand(k, *x.shape).reshape(-1, *x.shape[1:])
        log_px_z = -self.nll(self.decode_logits(z.reshape(-1, z.shape[-1])), x_rep).view(k, -1)
        log_w = log_px_z + gaussian_log_prob(z) - gaussian_log_prob(z, mu, logvar)
        return -(torch.logsumexp(log_w, dim=0) - math.log(k))

    def score_noise(self) -> torch.Tensor:
        """The ``[score_samples, latent_dim]`` standard-normal draws every row is scored with: a function of
        ``config.seed`` alone (drawn on the CPU, so the same on every device)."""
        gen = torch.Generator().manual_seed(self.config.seed)
        return torch.randn(self.config.score_samples, self.config.latent_dim, generator=gen)

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Negative ELBO (k = 1) or importance-weighted NLL (k = ``score_samples``) per sample ``[B]``.

        Every row is scored with the same posterior draws (:meth:`score_noise`), so a row's score depends on the
        row and the model only, never on the batch it comes in.
        """
        noise = self.score_noise()
        k = self.config.score_samples
        return self.negative_elbo(x, noise=noise[0]) if k == 1 else self.iwae_nll(x, k, noise=noise)


class VAEConfig(GaussianLatentConfig, DenseConfig):
    """Configuration of the dense variational autoencoder."""


@register("vae")
class VAE(GaussianLatent, DenseAutoencoder):
    """Variational autoencoder: Gaussian latent, reparameterised ELBO, samples from the N(0, I) prior."""

    config_cls = VAEConfig
    config: VAEConfig


class BetaVAEConfig(VAEConfig):
    """Configuration of the beta-VAE: the VAE with a KL weight above 1 by default."""

    beta: float = Field(default=4.0, ge=0.0)
    """Weight of the KL term; > 1 trades reconstruction for a more factorised (disentangled) code."""


@register("beta_vae")
class BetaVAE(VAE):
    """Beta-VAE: the VAE with the KL term weighted by beta > 1 for a more disentangled latent code."""

    config_cls = BetaVAEConfig
    config: BetaVAEConfig
