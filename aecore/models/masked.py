"""Masked autoencoder: hide random image patches or features, reconstruct them; score the same way, on a fixed
set of masks."""

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

    score_masks: int = Field(default=4, ge=1)
    """Masks a row is scored with: the score is the error on the hidden part, averaged over this fixed set of
    masks (drawn from ``seed``, the same for every row)."""


def random_hidden(
    batch: int, n: int, ratio: float, generator: torch.Generator | None = None, device: torch.device | None = None
) -> torch.Tensor:
    """Boolean ``[batch, n]``, exactly ``round(ratio * n)`` (at least 1, at most n - 1) True per row."""
    n_hide = min(max(1, round(ratio * n)), max(n - 1, 1))
    ranks = torch.rand(batch, n, generator=generator, device=device).argsort(dim=1).argsort(dim=1)
    return ranks < n_hide


def masked_row_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``err`` over the entries where ``mask`` is True, per sample ``[B]``."""
    m = mask.flatten(1).to(err.dtype)
    return (err.flatten(1) * m).sum(1) / m.sum(1).clamp_min(1.0)


def masked_mean(err: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``err`` over the entries where ``mask`` is True, per sample then over the batch (scalar)."""
    return masked_row_mean(err, mask).mean()


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
        return self._masks(x.shape[0], generator, x.device)

    def _masks(self, b: int, generator: torch.Generator | None, device: torch.device | None) -> torch.Tensor:
        shape, p = self.config.input_shape, self.config.patch_size
        if len(shape) == 3 and p > 0:
            _, h, w = shape
            gh, gw = math.ceil(h / p), math.ceil(w / p)
            grid = random_hidden(b, gh * gw, self.config.mask_ratio, generator, device).view(b, 1, gh, gw)
            full = grid.repeat_interleave(p, dim=2).repeat_interleave(p, dim=3)[:, :, :h, :w]
            return full.expand(b, *shape)
        return random_hidden(b, math.prod(shape), self.config.mask_ratio, generator, device).view(b, *shape)

    def score_mask_set(self) -> torch.Tensor:
        """The ``[score_masks, *input_shape]`` masks every row is scored with: a function of ``config.seed`` alone
        (drawn on the CPU, so the same on every device)."""
        return self._masks(self.config.score_masks, torch.Generator().manual_seed(self.config.seed), None)

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

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample score ``[B]`` the way the model is trained: the error on the hidden entries, averaged over
        the fixed :meth:`score_mask_set`; a function of the row and the model only."""
        masks = self.score_mask_set().to(x.device)  # [M, *shape]
        m, b = masks.shape[0], x.shape[0]
        # row i under mask j sits at j * B + i
        hidden = masks.unsqueeze(1).expand(m, *x.shape).reshape(m * b, *x.shape[1:])
        rows = x.repeat(m, *([1] * (x.dim() - 1)))
        x_in = torch.where(hidden, self.mask_token.to(x.dtype), rows)
        err = self.entry_error(self.decode_logits(self.encode(x_in)), rows)
        return masked_row_mean(err, hidden).view(m, b).mean(0)
