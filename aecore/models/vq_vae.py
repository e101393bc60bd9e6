"""Vector-quantised autoencoder (VQ-VAE, van den Oord et al. 2017) with a learned codebook."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from aecore.models.dense import DenseAutoencoder, DenseConfig
from aecore.registry import register


class VQConfig(DenseConfig):
    """Configuration of the VQ-VAE: the code is latent_dim / code_dim tokens of code_dim numbers each."""

    codebook_size: int = Field(default=128, ge=2)
    """Number of codebook vectors K."""

    code_dim: int = Field(default=4, ge=1)
    """Size of one codebook vector; latent_dim must be a multiple (latent_dim / code_dim tokens per sample)."""

    commitment_weight: float = Field(default=0.25, ge=0.0)
    """Weight beta of the commitment loss ||z_e - sg(e)||^2."""

    @model_validator(mode="after")
    def _divisible(self) -> VQConfig:
        if self.latent_dim % self.code_dim:
            raise ValueError(f"latent_dim ({self.latent_dim}) must be a multiple of code_dim ({self.code_dim})")
        return self


class Quantized(NamedTuple):
    """Output of :class:`VectorQuantizer`."""

    z: torch.Tensor  # [B, L] quantised code with straight-through gradient to z_e
    codebook_loss: torch.Tensor  # scalar ||sg(z_e) - e||^2
    commitment_loss: torch.Tensor  # scalar ||z_e - sg(e)||^2
    indices: torch.Tensor  # [B, L / code_dim] chosen codes


class VectorQuantizer(nn.Module):
    """Nearest-neighbour quantisation of ``[B, L]`` codes, token by token, against a ``[K, code_dim]`` codebook."""

    def __init__(self, codebook_size: int, code_dim: int):
        super().__init__()
        self.code_dim = code_dim
        self.codebook = nn.Parameter(torch.randn(codebook_size, code_dim) * 0.5)

    def forward(self, z_e: torch.Tensor) -> Quantized:
        tokens = z_e.reshape(-1, self.code_dim)  # [B * G, D]
        indices = torch.cdist(tokens.detach(), self.codebook.detach()).argmin(dim=1)
        q = self.codebook[indices].view_as(z_e)
        st = z_e + (q - z_e).detach()
        return Quantized(st, F.mse_loss(q, z_e.detach()), F.mse_loss(z_e, q.detach()), indices.view(z_e.shape[0], -1))


def codebook_usage(counts: torch.Tensor) -> dict[str, float]:
    """Perplexity exp(H(p)) and fraction of codes used, from per-code counts ``[K]``."""
    p = counts.float() / counts.sum().clamp_min(1)
    entropy = -(p * p.clamp_min(1e-12).log()).sum()
    return {"perplexity": float(entropy.exp()), "codes_used": float((counts > 0).float().mean())}


@register("vq_vae")
class VQVAE(DenseAutoencoder):
    """VQ-VAE: codes snap to a learned codebook (straight-through gradient, commitment loss, usage metrics)."""

    config_cls = VQConfig
    config: VQConfig
    usage: torch.Tensor
    """Per-code counts ``[K]`` over the training batches since the last :meth:`epoch_metrics` (a buffer)."""
    generative = True

    def __init__(self, config: VQConfig):
        super().__init__(config)
        self.quantizer = VectorQuantizer(config.codebook_size, config.code_dim)
        self.register_buffer("usage", torch.zeros(config.codebook_size, dtype=torch.long), persistent=False)

    def encode_continuous(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder output before quantisation, ``[B, latent_dim]``."""
        return super().encode(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Quantised code ``[B, latent_dim]``."""
        quantized: Quantized = self.quantizer(self.encode_continuous(x))
        return quantized.z

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        q: Quantized = self.quantizer(self.encode_continuous(self.corrupt(x)))
        rec = self.reconstruction_loss(self.decode_logits(q.z), x)
        commit = self.config.commitment_weight * q.commitment_loss
        counts = torch.bincount(q.indices.flatten(), minlength=self.config.codebook_size)
        if self.training:
            self.usage += counts
        usage = {k: torch.tensor(v, device=x.device) for k, v in codebook_usage(counts).items()}
        return {
            "loss": rec + q.codebook_loss + commit,
            "reconstruction": rec,
            "codebook": q.codebook_loss,
            "commitment": commit,
            **usage,
        }

    def epoch_tallies(self) -> list[torch.Tensor]:
        """The per-code counts ``[K]`` since the last :meth:`epoch_metrics` (summed over every rank by the trainer)."""
        return [self.usage]

    def epoch_metrics(self) -> dict[str, float]:
        """Codebook perplexity and fraction of codes used over the training batches since the last call."""
        metrics = codebook_usage(self.usage)
        self.usage.zero_()
        return metrics

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Decode ``n`` codes of tokens drawn uniformly from the codebook (the VQ-VAE training prior)."""
        tokens = self.config.latent_dim // self.config.code_dim
        idx = torch.randint(self.config.codebook_size, (n * tokens,), device=self.quantizer.codebook.device)
        return self.decode(self.quantizer.codebook[idx].view(n, -1))
