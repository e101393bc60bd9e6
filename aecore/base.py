"""The interface every autoencoder family implements.

Shapes: ``x`` is ``[B, *input_shape]``; a code ``z`` is ``[B, latent_dim]``; ``score`` returns ``[B]``.

A family overrides only what differs from the plain reconstruction autoencoder. Models with several
optimizers (the adversarial AE) describe their own update step through :meth:`update_phases`,
:meth:`optimizer_params` and :meth:`phase_loss`, so a trainer never needs to know a family's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from aecore.config import ModelConfig
from aecore.nets import reconstruction_error


@dataclass(frozen=True)
class UpdatePhase:
    """One optimizer step of a training iteration: which loss (``name``) steps which optimizer."""

    name: str
    optimizer: str


class Autoencoder(nn.Module):
    """Base class: encoder + decoder trained on reconstruction error."""

    config_cls: ClassVar[type[ModelConfig]] = ModelConfig
    registry_name: ClassVar[str] = ""
    generative: ClassVar[bool] = False

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        torch.manual_seed(config.seed)

    # -- the interface ------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, *input_shape] -> [B, latent_dim]``."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, latent_dim] -> [B, *input_shape]``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[B, *input_shape]``; never the loss."""
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named scalar terms of the training objective; ``"loss"`` is the total that is minimised."""
        rec = reconstruction_error(self(x), x, self.config.reconstruction).mean()
        return {"loss": rec, "reconstruction": rec}

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample anomaly score ``[B]``, higher = more anomalous (reconstruction error here)."""
        return reconstruction_error(self(x), x, self.config.reconstruction)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The code used as a representation, ``[B, latent_dim]``."""
        return self.encode(x)

    def sample(self, n: int) -> torch.Tensor:
        """``n`` draws from the model, ``[n, *input_shape]``; generative families only."""
        raise NotImplementedError(f"{self.registry_name!r} is not a generative model")

    # -- how one training iteration updates the parameters ------------------------------------
    def update_phases(self) -> list[UpdatePhase]:
        """The optimizer steps of one iteration, in order. Default: one step of everything."""
        return [UpdatePhase("main", "main")]

    def optimizer_params(self) -> dict[str, list[nn.Parameter]]:
        """Parameters each named optimizer owns."""
        return {"main": list(self.parameters())}

    def phase_loss(self, x: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
        """The loss terms of one phase; ``"loss"`` is what that phase's optimizer minimises."""
        return self.loss(x)

    def epoch_metrics(self) -> dict[str, float]:
        """Extra metrics a family reports once per epoch (e.g. codebook usage); none by default."""
        return {}
