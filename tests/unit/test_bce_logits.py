"""BCE is computed from logits where the decoder ends in a sigmoid: the same numbers as the old clamped formula,
allowed under CUDA autocast; BCE on standardized inputs is a config error."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

import aecore
from aecore import build_model
from aecore.nets import elementwise_error, reconstruction_error
from pipelines.config import ConfigError, load_config
from tests.support.cli import assert_clean_error, train
from tests.unit.test_models_contract import batch, small_model

SIGMOID_FAMILIES = [name for name in aecore.known_models() if name != "linear"]  # linear has no activation


def old_bce(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The formula before: BCE of the clamped sigmoid output."""
    return F.binary_cross_entropy(x_hat.clamp(1e-6, 1 - 1e-6), x.clamp(0, 1), reduction="none")


class RefuseBCE(TorchFunctionMode):
    """Refuses F.binary_cross_entropy the way CUDA autocast does (there is no CUDA device here)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.binary_cross_entropy:
            raise RuntimeError("torch.nn.functional.binary_cross_entropy is unsafe to autocast")
        return func(*args, **(kwargs or {}))


def test_bce_from_logits_equals_the_old_formula():
    gen = torch.Generator().manual_seed(0)
    # logits inside (-13.8, 13.8), where the old clamp to [1e-6, 1 - 1e-6] does not bite
    logits, x = (4 * torch.randn(64, 30, generator=gen)).clamp(-12, 12), torch.rand(64, 30, generator=gen)
    old = old_bce(torch.sigmoid(logits.double()), x.double()).float()  # in float64: the formula, not its rounding
    torch.testing.assert_close(elementwise_error(logits, x, "bce", "sigmoid"), old, rtol=0, atol=1e-5)
    torch.testing.assert_close(reconstruction_error(logits, x, "bce", "sigmoid"), old.mean(1), rtol=0, atol=1e-5)
    # a decoder without a sigmoid keeps the clamped formula exactly
    p = torch.rand(64, 30, generator=gen)
    torch.testing.assert_close(elementwise_error(p, x, "bce"), old_bce(p, x), rtol=0, atol=0)


def test_bce_from_logits_keeps_a_gradient_where_the_sigmoid_saturates():
    logits = torch.tensor([[-30.0, 30.0]], requires_grad=True)
    elementwise_error(logits, torch.tensor([[1.0, 0.0]]), "bce", "sigmoid").sum().backward()
    assert logits.grad is not None
    torch.testing.assert_close(logits.grad, torch.tensor([[-1.0, 1.0]]))


def _bce_pair(name: str) -> tuple[aecore.Autoencoder, aecore.Autoencoder]:
    """A bce + sigmoid model, and the same weights computing the old way: the sigmoid inside the decoder and
    BCE of its clamped output."""
    model = small_model(name, reconstruction="bce", output_activation="sigmoid").eval()
    old = build_model(model.config.model_copy(update={"output_activation": "identity"})).eval()
    old.load_state_dict(model.state_dict())
    inner = old.decode_logits
    old.decode_logits = lambda z: torch.sigmoid(inner(z))
    return model, old


@pytest.mark.parametrize("name", SIGMOID_FAMILIES)
def test_family_losses_and_scores_equal_the_old_formula(name):
    model, old = _bce_pair(name)
    x = batch(name)
    torch.manual_seed(3)
    new_terms = model.loss(x)
    torch.manual_seed(3)
    old_terms = old.loss(x)
    assert new_terms.keys() == old_terms.keys()
    for key in new_terms:
        torch.testing.assert_close(new_terms[key], old_terms[key], rtol=1e-5, atol=1e-5, msg=key)
    torch.testing.assert_close(model.score(x), old.score(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(x), old(x))


@pytest.mark.parametrize("name", SIGMOID_FAMILIES)
def test_bce_with_a_sigmoid_decoder_never_calls_the_autocast_unsafe_op(name):
    model = small_model(name, reconstruction="bce", output_activation="sigmoid").train()
    x = batch(name)
    with RefuseBCE():
        for phase in model.update_phases():
            assert torch.isfinite(model.phase_loss(x, phase.name)["loss"])
        assert torch.isfinite(model.eval().score(x)).all()


def test_bce_trains_under_cpu_autocast():
    model = small_model("dense", reconstruction="bce", output_activation="sigmoid").train()
    x = batch("dense")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(x)["loss"]
    loss.backward()
    assert torch.isfinite(loss)


def test_bce_on_standardized_inputs_is_a_config_error(home):
    with pytest.raises(ConfigError, match=r"model\.reconstruction=bce .* data\.normalize=standard"):
        load_config(None, ["model.reconstruction=bce", "data.normalize=standard"])
    load_config(None, ["model.reconstruction=bce", "data.normalize=minmax"])
    load_config(None, ["model.reconstruction=mse", "data.normalize=standard"])
    assert_clean_error(
        train("model.reconstruction=bce", "data.normalize=standard"),
        "model.reconstruction=bce",
        "data.normalize=standard",
    )
