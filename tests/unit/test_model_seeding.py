"""Initial weights follow an explicit seed; building or loading a model leaves the process-wide RNG alone."""

from __future__ import annotations

import pytest
import torch

import aecore
from aecore import build_model, load_model, save_model
from pipelines.config import load_config
from pipelines.train.worker import seeded_model
from tests.unit.test_models_contract import small_model

FAMILIES = aecore.known_models()


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(weights(a), weights(b), strict=True))


@pytest.mark.parametrize("name", FAMILIES)
def test_initial_weights_follow_the_seed(name):
    cfg = small_model(name).config
    assert same(build_model(cfg, seed=11), build_model(cfg, seed=11))
    assert not same(build_model(cfg, seed=11), build_model(cfg, seed=12))
    # without an explicit seed the config's seed decides, as before
    assert same(build_model(cfg.model_copy(update={"seed": 11})), build_model(cfg, seed=11))
    assert not same(build_model(cfg.model_copy(update={"seed": 11})), build_model(cfg.model_copy(update={"seed": 3})))


@pytest.mark.parametrize("name", FAMILIES)
def test_building_a_model_leaves_the_global_rng_alone(name):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    small_model(name, seed=7)
    build_model(small_model(name).config, seed=9)
    assert torch.equal(torch.get_rng_state(), before)


def test_loading_a_model_leaves_the_global_rng_alone(tmp_path):
    saved = save_model(small_model("vae", seed=7), tmp_path / "m")
    torch.manual_seed(99)
    before = torch.get_rng_state()
    loaded = load_model(saved)
    assert torch.equal(torch.get_rng_state(), before)
    assert same(loaded, small_model("vae", seed=7))


def test_trainer_weights_follow_train_seed_and_ranks_draw_their_own_noise():
    def job(seed: int):
        return load_config(None, [f"train.seed={seed}", "model.input_shape=[12]", "model.hidden=[8]"])

    rank0, rank1 = seeded_model(job(5), 0), seeded_model(job(5), 1)
    noise1 = torch.rand(8)  # rank 1's first draw after set-up (dropout, corruption, VAE noise)
    seeded_model(job(5), 0)
    noise0 = torch.rand(8)
    assert same(rank0, rank1), "every rank starts from the same weights"
    assert not torch.equal(noise0, noise1), "each rank draws its own noise"
    torch.manual_seed(5)
    assert torch.equal(noise0, torch.rand(8)), "rank 0's stream is exactly seed_everything(train.seed + 0)"
    assert not same(seeded_model(job(6), 0), rank0), "train.seed changes the initial weights"
