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


@pytest.mark.parametrize("shape, patch", [((1, 12, 12), 4), ((20,), 0)])
def test_masked_scores_hidden_parts_on_fixed_masks_whatever_the_batch(shape, patch):
    model = small_model("masked", input_shape=shape, patch_size=patch, seed=4).eval()
    with torch.no_grad():  # a trained mask token is not zero
        model.mask_token.normal_(generator=torch.Generator().manual_seed(1))
    x = torch.rand(21, *shape, generator=torch.Generator().manual_seed(2))
    whole = model.score(x)
    assert whole.shape == (21,) and torch.isfinite(whole).all()
    assert torch.equal(model.score(x), whole), "deterministic"
    for size in (1, 3, 7):
        torch.testing.assert_close(scores_in_batches(model, x, size), whole, rtol=1e-6, atol=1e-6)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model.score(x[order]), whole[order], rtol=1e-6, atol=1e-6)
    # not the fully visible reconstruction error: hidden parts are reconstructed from the rest
    visible = model.sample_error(model.decode_logits(model.encode(x)), x)
    assert not torch.allclose(whole, visible, rtol=1e-3, atol=1e-4)

    # by hand: the error on each fixed mask's hidden entries, averaged over the masks
    masks = model.score_mask_set()
    assert masks.shape == (model.config.score_masks, *shape)
    by_hand = []
    for mask in masks:
        x_in = torch.where(mask, model.mask_token, x)
        err = (model(x_in) - x).pow(2)
        by_hand.append(torch.stack([err[i][mask].mean() for i in range(len(x))]))
    torch.testing.assert_close(whole, torch.stack(by_hand).mean(0))
    # the masks are the model's: another seed, other masks (and scores)
    other = small_model("masked", input_shape=shape, patch_size=patch, seed=5)
    assert not torch.equal(other.score_mask_set(), masks)
