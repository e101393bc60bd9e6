"""The interface every autoencoder family implements.

Shapes: ``x`` is ``[B, *input_shape]``; a code ``z`` is ``[B, latent_dim]``; ``score`` returns ``[B]``.

A family overrides only what differs from the plain reconstruction autoencoder. Models with several
optimizers (the adversarial AE) describe their own update step through :meth:`update_phases`,
:meth:`optimizer_params` and :meth:`phase_loss`, so a trainer never needs to know a family's name.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from aecore.config import ModelConfig
from aecore.nets import activation, corrupt, elementwise_error, reconstruction_error


@dataclass(frozen=True)
class UpdatePhase:
    """One optimizer step of a training iteration: which loss (``name``) steps which optimizer."""

    name: str
    optimizer: str


class Autoencoder(nn.Module):
    """Base class: encoder + decoder trained on reconstruction error."""

    config_cls: ClassVar[type[ModelConfig]] = ModelConfig
    """The config class :func:`aecore.build_model` validates a saved config with."""
    config: ModelConfig
    """This model's config; a family narrows the annotation to its own ``config_cls``."""
    registry_name: ClassVar[str] = ""
    generative: ClassVar[bool] = False
    penalty_needs_input_grad: ClassVar[bool] = False
    """Whether :meth:`penalties` differentiates the code with respect to the input (contractive): then the loss
    needs autograd even when nothing is trained, which :meth:`eval_loss` provides."""
    principal_start: ClassVar[bool] = False
    """Whether :meth:`start_at_principal_subspace` can set this family's weights (the linear family)."""

    def __init__(self, config: ModelConfig):
        """Builds the layers from the process-wide torch generator, like any ``nn.Module``; to seed the initial
        weights without touching that generator, build through :func:`aecore.build_model`."""
        super().__init__()
        self.config = config
        self.output_activation = activation(config.output_activation)

    def code_width(self) -> int:
        """Width of the encoder's last layer (a Gaussian-latent family doubles it for mean and log-variance)."""
        return self.config.latent_dim

    # -- the interface ------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, *input_shape] -> [B, latent_dim]``."""
        raise NotImplementedError

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, latent_dim] -> [B, *input_shape]``: the decoder's output before ``config.output_activation``
        (logits when that is a sigmoid). Losses and scores take this, so BCE is computed from logits."""
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, latent_dim] -> [B, *input_shape]``: the reconstruction, ``output_activation(decode_logits(z))``."""
        out: torch.Tensor = self.output_activation(self.decode_logits(z))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction ``[B, *input_shape]``; never the loss."""
        return self.decode(self.encode(x))

    def loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named scalar terms of the training objective; ``"loss"`` is the total that is minimised.

        The (possibly corrupted) input is encoded, the clean input is the target, and every term of
        :meth:`penalties` is added to the reconstruction error.
        """
        x_in = self.corrupt(x)
        if self.penalty_needs_input_grad:
            x_in = x_in.detach().requires_grad_(True)
        z = self.encode(x_in)
        reconstruction = self.reconstruction_loss(self.decode_logits(z), x)
        penalties = self.penalties(x_in, z)
        # start= makes the total a Tensor (a bare sum() starts from the int 0); the terms add up in order
        return {"loss": sum(penalties.values(), reconstruction), "reconstruction": reconstruction, **penalties}

    def eval_loss(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The terms of :meth:`loss` for evaluation (validation): detached, and computed with autograd on only
        where the family's loss needs it (``penalty_needs_input_grad``), so callers may run under
        ``torch.no_grad()``."""
        with torch.enable_grad() if self.penalty_needs_input_grad else contextlib.nullcontext():
            terms = self.loss(x)
        return {k: v.detach() for k, v in terms.items()}

    def entry_error(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction error per entry (shape of ``x``) of the decoder output ``logits`` (see :meth:`decode_logits`)
        under ``config.reconstruction``."""
        return elementwise_error(logits, x, self.config.reconstruction, self.config.output_activation)

    def sample_error(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-sample reconstruction error ``[B]`` (mean over features) of the decoder output ``logits``."""
        return reconstruction_error(logits, x, self.config.reconstruction, self.config.output_activation)

    def reconstruction_loss(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Batch-mean reconstruction error (scalar) of the decoder output ``logits`` (see :meth:`decode_logits`)."""
        return self.sample_error(logits, x).mean()

    def penalties(self, x_in: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted regularisation terms (scalars) added to the loss, given the encoded input and its code."""
        return {}

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        """The input seen by the encoder while training: ``x`` corrupted per ``config.corruption``.

        Identity in eval mode, so validation losses and scores always use the clean input.
        """
        if not self.training:
            return x
        cfg = self.config
        return corrupt(x, cfg.corruption, cfg.corruption_rate, cfg.noise_std)

    @torch.no_grad()
    def score(self, x: torch.Tensor) -> torch.Tensor:
        """Per-sample anomaly score ``[B]``, higher = more anomalous (reconstruction error here)."""
        return self.sample_error(self.decode_logits(self.encode(x)), x)

    def start_at_principal_subspace(self, mean: torch.Tensor, components: torch.Tensor) -> None:
        """Set the weights to the PCA reconstruction with the leading principal ``components`` ``[latent_dim, D]``
        (orthonormal rows) of samples with ``mean`` ``[D]`` (flattened); families with :attr:`principal_start`."""
        raise NotImplementedError(f"{self.registry_name!r} cannot start from principal components")

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The code used as a representation, ``[B, latent_dim]``."""
        return self.encode(x)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """``n`` draws from the model, ``[n, *input_shape]``; generative families only.

        Default for generative families: decode ``n`` draws from the N(0, I) code prior.
        """
        if not self.generative:
            raise NotImplementedError(f"{self.registry_name!r} is not a generative model")
        device = next(self.parameters()).device
        return self.decode(torch.randn(n, self.config.latent_dim, device=device))

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

    def epoch_tallies(self) -> list[torch.Tensor]:
        """The tensors :meth:`epoch_metrics` reads that add up across data-parallel replicas (e.g. per-code counts
        ``[K]``). A data-parallel trainer replaces each by its sum over every replica, in place, before calling
        :meth:`epoch_metrics`, so the metrics describe every replica's batches. None by default."""
        return []

    def epoch_metrics(self) -> dict[str, float]:
        """Extra metrics a family reports once per epoch (e.g. codebook usage); none by default."""
        return {}
