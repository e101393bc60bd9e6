"""A row's score is a function of the row and the model only: never of the batch it is scored in."""

from __future__ import annotations

import pytest
import torch

from tests.unit.test_models_contract import batch, small_model


def scores_in_batches(model, x: torch.Tensor, size: int) -> torch.Tensor:
    return torch.cat([model.score(chunk) for chunk in x.split(size)])


@pytest.mark.parametrize("name", ["vae", "beta_vae", "conv_vae"])
@pytest.mark.parametrize("k", [1, 5])
def test_vae_scores_do_not_depend_on_the_batch(name, k):
    model = small_model(name, score_samples=k).eval()
    x = batch(name, 21)
    whole = model.score(x)
    for size in (1, 3, 7):
        torch.testing.assert_close(scores_in_batches(model, x, size), whole, rtol=1e-6, atol=1e-6)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.score(x[order]), whole[order], rtol=1e-6, atol=1e-6)
    assert torch.equal(model.score(x), whole), "the same batch scores the same twice"
