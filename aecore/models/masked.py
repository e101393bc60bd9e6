"""Masked autoencoder: hide random image patches or features, reconstruct them, score on the full input."""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from aecore.models.dense import DenseAutoencoder, DenseConfig
from aecore.registry import register


class MaskedConfig(DenseConfig):
    """Configuration of the masked autoencoder."""

    mask_ratio: float = Field(default=0.5, gt=0.0, lt=1.0)
    """Fraction of patches (images) or features (other inputs) hidden from the encoder per sample."""

    patch_size: int = Field(default=4, ge=0)
    """Side of the square patches hidden together when input_shape is (C, H, W); 0 hides single features."""


def random_hidden(
    batch: int, n: int, ratio: float, generator: torch.Generator | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """Boolean ``[batch, n]``, exactly ``round(ratio * n)`` (at least 1, at most n - 1) True per row."""
    n_hide = min(max(1, round(ratio * n)), max(n - 1, 1))
    ranks = torch.rand(batch, n, generator=generator, device=device).argsort(dim=1).argsort(dim=1)
    return ranks < n_hide


def masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``err`` over the entries where ``mask`` is True, per sample then over the batch (scalar)."""
    m = mask.flatten(1).to(err.dtype)
    return ((err.flatten(1) * m).sum(1) / m.sum(1).clamp_min(1.0)).mean()


@register("masked")
class MaskedAutoencoder(DenseAutoencoder):
    """Masked autoencoder: random patches or features are hidden and the loss counts only the hidden part."""

    config_cls = MaskedConfig
    config: MaskedConfig

    def __init__(self, config: MaskedConfig):
        super().__init__(config)
        self.mask_token = nn.Parameter(torch.zeros(config.input_shape))

    def make_mask(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Boolean ``[B, *input_shape]``, True = hidden: whole patches for (C, H, W) inputs, else features."""
        shape, p, b = self.config.input_shape, self.config.patch_size, x.shape[0]
        if len(shape) == 3 and p > 0:
            _, h, w = shape
            gh, gw = math.ceil(h / p), math.ceil(w / p)
            grid = random_hidden(b, gh * gw, self.config.mask_ratio, generator, x.device).view(b, 1, gh, gw)
            full = grid.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)[:, :, :h, :w]
            return full.expand(b, *shape)
        return random_hidden(b, x[0].numel(), self.config.mask_ratio, generator, x.device).view_as(x)

    def masked_loss(self, logits: torch.Tensor, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruction error of the decoder output ``logits`` (:meth:`decode_logits`) averaged over the hidden
        entries only (scalar)."""
        return masked_mean(self.entry_error(logits, x), mask)

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mask = self.make_mask(x)
        x_in = torch.where(mask, self.mask_token.to(x.dtype), self.corrupt(x))
        logits = self.decode_logits(self.encode(x_in))
        hidden = self.masked_loss(logits, x, mask)
        visible = self.masked_loss(logits.detach(), x, ~mask)
        return {"loss": hidden, "reconstruction": hidden, "visible_error": visible}
