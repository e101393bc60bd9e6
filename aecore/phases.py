"""One training step of any family: every update phase it declares, each stepping its own optimizer.

The trainer, the tests and the benches all run this one loop, so a family with several optimizers (the
adversarial AE) trains the same way everywhere. The trainer passes its own ``objective`` (the loss through
DDP, under autocast) and ``step`` (mixed-precision scaling, gradient clipping); the defaults are plain
PyTorch on one device.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from aecore.base import Autoencoder

Objective = Callable[[torch.Tensor, str], dict[str, torch.Tensor]]
"""``(x, phase name) -> loss terms`` with ``"loss"``, the scalar that phase's optimizer minimises."""

Step = Callable[[torch.Tensor, torch.optim.Optimizer], None]
"""``(loss, optimizer) -> None``: backward and one optimizer step."""


class PhaseObjective(nn.Module):
    """forward(x, phase) = the model's loss terms for one update phase: the module DDP wraps, so every phase a
    family declares goes through DDP's gradient sync."""

    def __init__(self, model: Autoencoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
        return self.model.phase_loss(x, phase)


def plain_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """zero_grad(set_to_none=True), backward, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
    optimizer.step()


def make_optimizers(model: Autoencoder, lr: float) -> dict[str, torch.optim.Optimizer]:
    """One Adam per entry of model.optimizer_params()."""
    return {name: torch.optim.Adam(params, lr=lr) for name, params in model.optimizer_params().items()}


def run_update_phases(
    model: Autoencoder,
    x: torch.Tensor,
    optimizers: Mapping[str, torch.optim.Optimizer],
    objective: Objective | None = None,
    step: Step = plain_step,
) -> dict[str, torch.Tensor]:
    """One training step on a batch x [B, ...]: every phase of model.update_phases() in order, each computing
    its terms with objective(x, phase.name) (default: model.phase_loss) and stepping optimizers[phase.optimizer]
    with step(terms["loss"], optimizer). Returns the detached loss terms: a one-phase family's terms as they are;
    with several phases every term prefixed "{phase}_" plus "loss" = the first phase's loss.

    The model's mode is the caller's: call ``model.train()`` first.
    """
    loss_terms = model.phase_loss if objective is None else objective
    phases = model.update_phases()
    several = len(phases) > 1
    out: dict[str, torch.Tensor] = {}
    for index, phase in enumerate(phases):
        terms = loss_terms(x, phase.name)
        step(terms["loss"], optimizers[phase.optimizer])
        prefix = f"{phase.name}_" if several else ""
        out.update({f"{prefix}{key}": value.detach() for key, value in terms.items()})
        if several and index == 0:
            # the first phase's loss stands for the iteration (the reconstruction loss of the adversarial AE)
            out["loss"] = terms["loss"].detach()
    return out
