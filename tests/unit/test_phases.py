"""The update-phase helper the trainer, the tests and the benches share (aecore.phases)."""

from __future__ import annotations

import pytest
import torch

from aecore import Autoencoder, PhaseObjective, build_model, make_optimizers, plain_step, run_update_phases


def tiny(name: str) -> Autoencoder:
    cfg = {"name": name, "input_shape": (10,), "latent_dim": 4, "hidden": [8]}
    return build_model({**cfg, "disc_hidden": [8]} if name == "adversarial" else cfg)


def batch() -> torch.Tensor:
    return torch.rand(6, 10, generator=torch.Generator().manual_seed(1))


def snapshot(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, list[torch.Tensor]]:
    return {k: [p.detach().clone() for g in o.param_groups for p in g["params"]] for k, o in optimizers.items()}


def assert_every_optimizer_stepped_and_moved_its_parameters(optimizers, before) -> None:
    for key, optimizer in optimizers.items():
        params = [p for g in optimizer.param_groups for p in g["params"]]
        assert all(int(optimizer.state[p]["step"]) == 1 for p in params), key
        unmoved = [i for i, (p, b) in enumerate(zip(params, before[key], strict=True)) if torch.equal(p, b)]
        assert not unmoved, (key, unmoved)


def test_a_one_phase_family_returns_its_terms_unprefixed_and_steps_its_optimizer():
    model = tiny("sparse").train()
    optimizers = make_optimizers(model, lr=1e-2)
    assert set(optimizers) == {"main"} and isinstance(optimizers["main"], torch.optim.Adam)
    before = snapshot(optimizers)
    terms = run_update_phases(model, batch(), optimizers)
    assert set(terms) == {"loss", "reconstruction", "sparsity"}
    assert all(not t.requires_grad and t.dim() == 0 and torch.isfinite(t) for t in terms.values())
    assert_every_optimizer_stepped_and_moved_its_parameters(optimizers, before)


def test_the_adversarial_family_returns_prefixed_terms_and_steps_all_three_optimizers():
    model = tiny("adversarial").train()
    optimizers = make_optimizers(model, lr=1e-2)
    assert set(optimizers) == {"autoencoder", "discriminator", "generator"}
    before = snapshot(optimizers)
    terms = run_update_phases(model, batch(), optimizers, objective=PhaseObjective(model))
    assert set(terms) == {
        "loss",
        "reconstruction_loss",
        "reconstruction_reconstruction",
        "discriminator_loss",
        "discriminator_discriminator",
        "discriminator_disc_accuracy",
        "generator_loss",
        "generator_generator",
    }
    assert torch.equal(terms["loss"], terms["reconstruction_loss"])
    assert all(not t.requires_grad and torch.isfinite(t) for t in terms.values())
    assert_every_optimizer_stepped_and_moved_its_parameters(optimizers, before)


@pytest.mark.parametrize("name", ["dense", "adversarial"])
def test_the_step_receives_each_phase_loss_and_its_optimizer_in_phase_order(name):
    model = tiny(name).train()
    optimizers = make_optimizers(model, lr=1e-3)
    seen: list[str] = []

    def step(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        assert loss.requires_grad and loss.dim() == 0
        seen.append(next(k for k, o in optimizers.items() if o is optimizer))
        plain_step(loss, optimizer)

    run_update_phases(model, batch(), optimizers, step=step)
    assert seen == [phase.optimizer for phase in model.update_phases()]
