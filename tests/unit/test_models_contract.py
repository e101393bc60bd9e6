"""Contract every registered autoencoder family must satisfy (parametrized over the registry)."""

from __future__ import annotations

import math

import pytest
import torch

import aecore
from aecore import (
    PhaseObjective,
    UnknownModelError,
    build_model,
    load_model,
    make_optimizers,
    model_class,
    register,
    run_update_phases,
    save_model,
)

IMAGE_FAMILIES = {"conv", "conv_vae", "masked"}
SEQUENCE_FAMILIES = {"recurrent"}

# Small values for whichever size fields a family's config has, so every family builds tiny.
SMALL = {
    "hidden": [16],
    "channels": [4, 8],
    "hidden_size": 12,
    "width": 16,
    "blocks": 2,
    "disc_hidden": [16],
    "codebook_size": 16,
    "code_dim": 2,
}


def example_shape(name: str) -> tuple[int, ...]:
    """A small input shape suiting the family: image, sequence window or feature vector."""
    if name in IMAGE_FAMILIES:
        return (1, 12, 12)
    if name in SEQUENCE_FAMILIES:
        return (16, 3)
    return (20,)


def small_model(name: str, **overrides) -> aecore.Autoencoder:
    fields = model_class(name).config_cls.model_fields
    cfg = {"name": name, "input_shape": example_shape(name), "latent_dim": 8}
    cfg.update({k: v for k, v in SMALL.items() if k in fields})
    cfg.update(overrides)
    return build_model(cfg)


def batch(name: str, b: int = 6) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(b, *example_shape(name))


FAMILIES = aecore.known_models()


def test_expected_families_are_registered():
    expected = {
        "linear",
        "dense",
        "denoising",
        "sparse",
        "contractive",
        "vae",
        "beta_vae",
        "conv",
        "conv_vae",
        "adversarial",
        "recurrent",
        "residual",
        "masked",
        "vq_vae",
    }
    assert expected <= set(FAMILIES)


@pytest.mark.parametrize("name", FAMILIES)
def test_loss_is_finite_named_terms(name):
    model = small_model(name).train()
    terms = model.loss(batch(name))
    assert "loss" in terms and len(terms) >= 2, terms.keys()
    for key, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value), (key, value)
    assert terms["loss"].requires_grad


@pytest.mark.parametrize("name", FAMILIES)
def test_validation_loss_runs_under_no_grad(name):
    """Validation evaluates the loss under ``torch.no_grad()``; a family whose loss needs autograd (the
    contractive Jacobian penalty) gets it from ``eval_loss`` for the loss alone, and the terms come back
    detached and equal to the eval-mode loss."""
    model = small_model(name).eval()
    x = batch(name)
    torch.manual_seed(0)  # the same draws (VAE noise, masks) for both evaluations
    with torch.no_grad():
        terms = model.eval_loss(x)
    torch.manual_seed(0)
    expected = model.loss(x)
    assert set(terms) == set(expected)
    for key, value in terms.items():
        assert value.dim() == 0 and torch.isfinite(value) and not value.requires_grad, (key, value)
        torch.testing.assert_close(value, expected[key].detach())


@pytest.mark.parametrize("name", FAMILIES)
def test_every_parameter_gets_a_finite_gradient_from_the_phases(name):
    model = small_model(name).train()
    x = batch(name)
    phases = model.update_phases()
    owned = model.optimizer_params()
    assert {p.optimizer for p in phases} == set(owned)
    assert {id(p) for ps in owned.values() for p in ps} == {id(p) for p in model.parameters()}
    reached: set[int] = set()
    pending = iter(phases)  # the helper steps the phases in order

    def backward_and_check(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """In place of an optimizer step: this phase's gradients alone, checked."""
        phase = next(pending)
        model.zero_grad(set_to_none=True)
        assert torch.isfinite(loss), (phase, loss)
        loss.backward()
        got = {id(p) for p in model.parameters() if p.grad is not None}
        missing = [
            n
            for n, p in model.named_parameters()
            if id(p) in {id(q) for q in owned[phase.optimizer]} and id(p) not in got
        ]
        assert not missing, f"phase {phase.name} leaves {missing} of optimizer {phase.optimizer} without gradient"
        for n, p in model.named_parameters():
            if p.grad is not None:
                assert torch.isfinite(p.grad).all(), n
        reached.update(got)

    run_update_phases(model, x, make_optimizers(model, lr=1e-3), step=backward_and_check)
    assert next(pending, None) is None, "every phase was stepped"
    unreached = [n for n, p in model.named_parameters() if id(p) not in reached]
    assert not unreached


@pytest.mark.parametrize("name", FAMILIES)
def test_shapes_of_encode_decode_score_embed(name):
    model = small_model(name).eval()
    x = batch(name)
    z = model.encode(x)
    assert z.shape == (6, 8)
    assert model.decode(z).shape == x.shape
    assert model(x).shape == x.shape
    assert model.score(x).shape == (6,)
    assert torch.isfinite(model.score(x)).all()
    assert model.embed(x).shape == (6, 8)
    if model.generative:
        s = model.sample(5)
        assert s.shape == (5, *example_shape(name)) and torch.isfinite(s).all()
    else:
        with pytest.raises(NotImplementedError):
            model.sample(2)


@pytest.mark.parametrize("name", FAMILIES)
def test_save_load_round_trip_gives_identical_outputs(name, tmp_path):
    model = small_model(name, seed=3)
    # one optimizer step so the weights (and BatchNorm statistics, if any) differ from a fresh init
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = batch(name)
    model.train()
    model.loss(x)["loss"].backward()
    opt.step()
    model.eval()
    loaded = load_model(save_model(model, tmp_path / name))
    assert type(loaded) is type(model) and loaded.config == model.config
    assert torch.equal(loaded.score(x), model.score(x))
    assert torch.equal(loaded.embed(x), model.embed(x))
    assert torch.equal(model.score(x), model.score(x)), "eval-mode score must be deterministic"


@pytest.mark.parametrize("name", FAMILIES)
def test_config_fields_are_documented_and_description_is_one_good_line(name):
    cls = model_class(name)
    undocumented = [f for f, info in cls.config_cls.model_fields.items() if not info.description]
    assert not undocumented
    line = aecore.describe_models()[name]
    assert 30 <= len(line) <= 120 and line.endswith((".", ")")), line


def test_odd_image_sizes_and_channels_round_trip_shape():
    for name in ("conv", "conv_vae"):
        for shape in [(3, 13, 11), (2, 7, 9), (28, 28)]:
            model = build_model({"name": name, "input_shape": shape, "latent_dim": 4, "channels": [4, 4, 8]}).eval()
            x = torch.rand(2, *shape)
            assert model(x).shape == x.shape
            assert math.isfinite(model.loss(x)["loss"].item())


def test_unknown_name_lists_known_models():
    with pytest.raises(UnknownModelError) as err:
        build_model({"name": "no_such_family"})
    message = str(err.value)
    for name in FAMILIES:
        assert name in message


def test_duplicate_registration_raises_and_lists_names():
    with pytest.raises(ValueError, match="already registered") as err:
        register("dense")(type("Another", (aecore.Autoencoder,), {}))
    assert "vae" in str(err.value)
    assert model_class("dense").__name__ == "DenseAutoencoder"


def test_invalid_family_configs_are_rejected():
    with pytest.raises(ValueError, match="input_shape"):
        build_model({"name": "conv", "input_shape": (20,)})
    with pytest.raises(ValueError, match="input_shape"):
        build_model({"name": "recurrent", "input_shape": (20,)})
    with pytest.raises(ValueError, match="multiple of code_dim"):
        build_model({"name": "vq_vae", "latent_dim": 6, "code_dim": 4})


def _ddp_rank(rank: int, init: str, results: dict) -> None:
    """One of two gloo ranks: every family wrapped as the training worker wraps it (``ddp_options``), two
    update steps on rank-specific data; the parameters each rank ends with go to ``results[(name, rank)]``."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from pipelines.train.worker import ddp_options

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        for name in FAMILIES:
            torch.manual_seed(0)  # the same initial weights on both ranks, as seeded_model builds them
            model = small_model(name).train()
            ddp = DistributedDataParallel(PhaseObjective(model), **ddp_options(model, None, torch.device("cpu")))
            opts = make_optimizers(model, 1e-2)
            torch.manual_seed(100 + rank)  # each rank its own rows and noise
            for _ in range(2):  # a second iteration catches "unused parameter" reducer errors
                x = torch.rand(6, *example_shape(name))
                terms = run_update_phases(model, x, opts, objective=ddp)
                assert all(torch.isfinite(v).all() for v in terms.values()), name
            results[(name, rank)] = [p.detach().clone() for p in model.parameters()]
    finally:
        dist.destroy_process_group()


def test_every_family_trains_under_ddp_as_the_workers_wrap_it(tmp_path):
    """Two real processes, the pipeline's own DDP settings: every step succeeds (no reducer error about unused
    parameters) and the ranks end with identical weights although they saw different rows."""
    import torch.multiprocessing as mp

    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_rank, args=(f"file://{tmp_path / 'pg'}", results), nprocs=2, join=True)
        results = dict(results)
    for name in FAMILIES:
        first, second = results[(name, 0)], results[(name, 1)]
        assert all(torch.equal(a, b) for a, b in zip(first, second, strict=True)), name
    torch.manual_seed(0)
    untouched = list(small_model("dense").parameters())
    assert not all(torch.equal(a, b) for a, b in zip(untouched, results[("dense", 0)], strict=True))
