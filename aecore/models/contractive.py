"""Contractive autoencoder: penalises the Frobenius norm of the encoder Jacobian dz/dx."""

from __future__ import annotations

import torch
from pydantic import Field

from aecore.models.dense import DenseAutoencoder, DenseConfig
from aecore.registry import register


class ContractiveConfig(DenseConfig):
    """Configuration of the contractive autoencoder."""

    contractive_weight: float = Field(default=1e-3, ge=0.0)
    """Weight lambda of the penalty lambda * mean_b ||dz_b/dx_b||_F^2."""


def jacobian_frobenius_sq(z: torch.Tensor, x: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
    """``||dz_b / dx_b||_F^2`` per sample ``[B]`` for a code ``z [B, L]`` computed from ``x [B, *shape]``.

    Exact for encoders that treat samples independently: one batched vector-Jacobian product per code
    unit, all ``L`` of them vectorised (``is_grads_batched``), no Python loop over units.
    """
    eye = torch.eye(z.shape[1], dtype=z.dtype, device=z.device)
    basis = eye[:, None, :].expand(-1, z.shape[0], -1)  # [L, B, L]: unit j of every sample
    (rows,) = torch.autograd.grad(z, x, grad_outputs=basis, create_graph=create_graph, is_grads_batched=True)
    return rows.pow(2).flatten(2).sum(dim=(0, 2))  # rows: [L, B, *shape]


@register("contractive")
class ContractiveAutoencoder(DenseAutoencoder):
    """Dense autoencoder penalising the squared Frobenius norm of the encoder Jacobian (robust, flat codes)."""

    config_cls = ContractiveConfig
    config: ContractiveConfig
    penalty_needs_input_grad = True

    def penalties(self, x_in: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"contractive": self.config.contractive_weight * jacobian_frobenius_sq(z, x_in).mean()}
