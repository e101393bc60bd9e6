"""Seeded numeric checks of each family's mathematics, on small real data where it matters."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA

from aecore import build_model, make_optimizers, run_update_phases
from aecore.models.contractive import jacobian_frobenius_sq
from aecore.models.masked import masked_mean
from aecore.nets import corrupt, gaussian_kl, gaussian_log_prob, reconstruction_error


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest (and steadiest on a shared 2-core box) on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    """The 1,797 8x8 sklearn digits, standardised per pixel: ``[1797, 64]``."""
    x = load_digits().data.astype(np.float32)
    return torch.from_numpy((x - x.mean(0)) / (x.std(0) + 1e-8))


def fit(model, x: torch.Tensor, steps: int, lr: float = 1e-2, batch: int | None = None) -> list[dict[str, float]]:
    """Train every optimizer of ``model`` with Adam for ``steps`` iterations (phases in order); returns each
    step's loss terms (prefixed ``"{phase}_"`` for a family with several phases, as :func:`run_update_phases`)."""
    opts = make_optimizers(model, lr)
    gen = torch.Generator().manual_seed(0)
    history = []
    model.train()
    for _ in range(steps):
        xb = x if batch is None else x[torch.randint(0, len(x), (batch,), generator=gen)]
        history.append({k: v.item() for k, v in run_update_phases(model, xb, opts).items()})
    return history


# -- linear = PCA ------------------------------------------------------------------------------
def test_linear_autoencoder_spans_the_pca_subspace(digits):
    k = 4
    model = build_model({"name": "linear", "input_shape": (64,), "latent_dim": k})
    fit(model, digits, steps=800)
    pca = PCA(k).fit(digits.numpy())
    angles = np.degrees(subspace_angles(model.decoder.weight.detach().numpy(), pca.components_.T))
    assert angles.max() < 5.0, angles
    model.eval()
    ae_mse = model.score(digits).mean().item()
    pca_mse = float(((pca.inverse_transform(pca.transform(digits.numpy())) - digits.numpy()) ** 2).mean())
    assert ae_mse == pytest.approx(pca_mse, rel=0.01)


def test_linear_autoencoder_started_at_the_principal_subspace_is_pca_before_any_step(digits):
    k = 5
    model = build_model({"name": "linear", "input_shape": (8, 8), "latent_dim": k}).eval()
    flat = digits.numpy()
    pca = PCA(k).fit(flat)
    model.start_at_principal_subspace(torch.from_numpy(pca.mean_), torch.from_numpy(pca.components_))
    images = digits.view(-1, 8, 8)
    pca_errors = ((pca.inverse_transform(pca.transform(flat)) - flat) ** 2).mean(axis=1)
    np.testing.assert_allclose(model.score(images).detach().numpy(), pca_errors, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(model.embed(images).numpy(), pca.transform(flat), rtol=1e-3, atol=1e-4)


def test_only_a_family_that_can_starts_at_the_principal_subspace():
    linear = build_model({"name": "linear", "input_shape": (6,), "latent_dim": 2})
    with pytest.raises(ValueError, match=r"components \(3, 6\) and mean \(6,\) for a code of 2 over 6 values"):
        linear.start_at_principal_subspace(torch.zeros(6), torch.zeros(3, 6))
    dense = build_model({"name": "dense", "input_shape": (6,), "latent_dim": 2, "hidden": [4]})
    assert not dense.principal_start and linear.principal_start
    with pytest.raises(NotImplementedError, match="'dense' cannot start from principal components"):
        dense.start_at_principal_subspace(torch.zeros(6), torch.zeros(2, 6))


# -- contractive --------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
def test_contractive_penalty_equals_brute_force_jacobian(act):
    model = build_model(
        {
            "name": "contractive",
            "input_shape": (3, 4),
            "latent_dim": 5,
            "hidden": [9],
            "activation": act,
            "contractive_weight": 0.7,
        }
    ).double()
    x = torch.randn(6, 3, 4, dtype=torch.float64)
    brute = torch.stack(
        [torch.autograd.functional.jacobian(lambda v: model.encode(v[None])[0], x[i]).pow(2).sum() for i in range(6)]
    )
    xr = x.clone().requires_grad_(True)
    fast = jacobian_frobenius_sq(model.encode(xr), xr)
    torch.testing.assert_close(fast, brute, rtol=0, atol=1e-5)
    assert brute.min() > 1e-3  # a non-trivial Jacobian
    terms = model.train().loss(x)
    torch.testing.assert_close(terms["contractive"], 0.7 * brute.mean(), rtol=0, atol=1e-5)
    torch.testing.assert_close(terms["loss"], terms["reconstruction"] + terms["contractive"])


def test_contractive_training_shrinks_the_jacobian(digits):
    def jac_norm(name, **extra):
        model = build_model(
            {"name": name, "input_shape": (64,), "latent_dim": 8, "hidden": [32], "activation": "tanh", **extra}
        )
        fit(model, digits, steps=150, batch=256)
        xr = digits[:200].clone().requires_grad_(True)
        return jacobian_frobenius_sq(model.encode(xr), xr, create_graph=False).mean().item()

    assert jac_norm("contractive", contractive_weight=0.5) < 0.5 * jac_norm("dense")


# -- VAE ------------------------------------------------------------------------------------------
def test_vae_kl_matches_monte_carlo(digits):
    model = build_model({"name": "vae", "input_shape": (64,), "latent_dim": 3, "hidden": [16]})
    with torch.no_grad():
        mu, logvar = model.posterior(digits[:4] * 3)
        mu, logvar = mu + torch.tensor([0.5, -1.0, 0.0]), logvar + torch.tensor([0.3, -0.8, 0.0])
        z = model.reparameterize(mu.expand(200_000, *mu.shape), logvar)
        mc = (gaussian_log_prob(z, mu, logvar) - gaussian_log_prob(z)).mean(0)
    closed = gaussian_kl(mu, logvar)
    assert closed.min() > 0.2
    torch.testing.assert_close(mc, closed, rtol=0.02, atol=0.01)


def test_vae_loss_is_reconstruction_plus_beta_kl():
    x = torch.rand(8, 10)
    for name, beta in [("vae", 1.0), ("beta_vae", 4.0)]:
        model = build_model({"name": name, "input_shape": (10,), "latent_dim": 2, "hidden": [8]})
        assert model.config.beta == beta
        terms = model.loss(x)
        torch.testing.assert_close(terms["loss"], terms["reconstruction"] + beta * terms["kl"])
        mu, logvar = model.posterior(x)
        torch.testing.assert_close(terms["kl"], gaussian_kl(mu, logvar).mean())


def test_importance_weighted_nll_is_tighter_than_negative_elbo(digits):
    model = build_model({"name": "vae", "input_shape": (64,), "latent_dim": 4, "hidden": [32]})
    fit(model, digits, steps=100, lr=3e-3, batch=256)
    model.eval()
    x = digits[:300]
    with torch.no_grad():
        gen = torch.Generator().manual_seed(1)
        neg_elbo = torch.stack([model.negative_elbo(x, gen) for _ in range(20)]).mean(0)
        iwae_1 = torch.stack([model.iwae_nll(x, 1, gen) for _ in range(20)]).mean(0)
        iwae_50 = model.iwae_nll(x, 50, gen)
    # k = 1 is the ELBO itself (same expectation), k = 50 is tighter on average
    assert iwae_1.mean().item() == pytest.approx(neg_elbo.mean().item(), rel=0.01)
    assert iwae_50.mean() < neg_elbo.mean() - 0.1
    assert (iwae_50 < neg_elbo).float().mean() > 0.7
    iw = build_model({**model.config.model_dump(), "score_samples": 50})
    iw.load_state_dict(model.state_dict())
    iw.eval()
    torch.testing.assert_close(iw.score(x), iw.iwae_nll(x, 50, noise=iw.score_noise()))


# -- denoising ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["gaussian", "masking", "salt_pepper"])
@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_corruption_rate_is_as_configured(kind, rate):
    x = 0.1 + 0.8 * torch.rand(400, 250)  # no entry is exactly 0 or 1
    gen = torch.Generator().manual_seed(0)
    x_tilde = corrupt(x, kind, rate, noise_std=0.5, generator=gen)
    changed = x_tilde != x
    assert changed.float().mean().item() == pytest.approx(rate, abs=0.01)
    diff = (x_tilde - x)[changed]
    if kind == "gaussian":
        assert diff.std().item() == pytest.approx(0.5, rel=0.03)
        assert abs(diff.mean().item()) < 0.02
    elif kind == "masking":
        assert (x_tilde[changed] == 0).all()
    else:
        salt = x_tilde[changed] == x.max()
        assert ((x_tilde[changed] == x.min()) | salt).all()
        assert salt.float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_denoising_corrupts_only_in_training_and_targets_the_clean_input():
    model = build_model(
        {
            "name": "denoising",
            "input_shape": (30,),
            "latent_dim": 4,
            "hidden": [16],
            "corruption": "masking",
            "corruption_rate": 0.5,
        }
    )
    x = 0.1 + torch.rand(64, 30)
    model.train()
    frac = (model.corrupt(x) == 0).float().mean().item()
    assert frac == pytest.approx(0.5, abs=0.05)
    clean_score = reconstruction_error(model(x), x, "mse")
    torch.testing.assert_close(model.score(x), clean_score)  # scoring never corrupts
    torch.manual_seed(5)
    loss = model.loss(x)["reconstruction"]
    torch.manual_seed(5)
    by_hand = reconstruction_error(model(model.corrupt(x)), x, "mse").mean()
    torch.testing.assert_close(loss, by_hand)
    model.eval()
    assert torch.equal(model.corrupt(x), x)


def test_denoising_autoencoder_removes_noise_better_than_a_plain_one(digits):
    clean = digits[1500:]
    noisy = clean + 0.8 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))

    def error_on_noisy(corruption):
        model = build_model(
            {
                "name": "denoising",
                "input_shape": (64,),
                "latent_dim": 16,
                "hidden": [64],
                "corruption": corruption,
                "corruption_rate": 1.0,
                "noise_std": 0.8,
            }
        )
        fit(model, digits[:1500], steps=300, lr=3e-3, batch=128)
        with torch.no_grad():
            return (model.eval()(noisy) - clean).pow(2).mean().item()

    denoising, plain = error_on_noisy("gaussian"), error_on_noisy("none")
    assert denoising < 0.85 * plain
    assert denoising < 0.6 * 0.64  # the noise alone has MSE 0.64


# -- sparse ---------------------------------------------------------------------------------------
def test_sparse_kl_penalty_matches_formula():
    rho, weight = 0.1, 0.3
    model = build_model(
        {
            "name": "sparse",
            "input_shape": (12,),
            "latent_dim": 6,
            "hidden": [10],
            "sparsity": "kl",
            "target_rho": rho,
            "sparsity_weight": weight,
        }
    )
    x = torch.randn(40, 12)
    z = model.encode(x)
    assert ((z > 0) & (z < 1)).all()
    rho_hat = z.detach().numpy().astype(np.float64).mean(axis=0)
    by_hand = sum(rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r)) for r in rho_hat)
    assert by_hand > 0.05
    assert model.penalties(x, z)["sparsity"].item() == pytest.approx(weight * by_hand, rel=1e-5)
    terms = model.loss(x)
    torch.testing.assert_close(terms["loss"], terms["reconstruction"] + terms["sparsity"])


def test_sparse_l1_penalty_matches_formula_and_kl_training_reaches_target(digits):
    l1 = build_model({"name": "sparse", "input_shape": (64,), "latent_dim": 6, "hidden": [10], "sparsity_weight": 2.0})
    z = l1.encode(digits[:50])
    assert l1.penalties(digits[:50], z)["sparsity"].item() == pytest.approx(2.0 * z.abs().sum().item() / 50, rel=1e-5)

    model = build_model(
        {
            "name": "sparse",
            "input_shape": (64,),
            "latent_dim": 16,
            "hidden": [32],
            "sparsity": "kl",
            "target_rho": 0.05,
            "sparsity_weight": 1.0,
        }
    )
    before = model.encode(digits).mean().item()
    fit(model, digits, steps=200, lr=3e-3, batch=256)
    after = model.encode(digits).mean(0)
    assert before > 0.3
    assert (after - 0.05).abs().max().item() < 0.03


# -- adversarial ------------------------------------------------------------------------------------
def test_adversarial_codes_approach_the_prior(digits):
    model = build_model(
        {"name": "adversarial", "input_shape": (64,), "latent_dim": 2, "hidden": [64], "disc_hidden": [32, 32]}
    )
    with torch.no_grad():
        z0 = model.encode(digits)
    history = fit(model, digits, steps=250, lr=1e-3, batch=128)
    with torch.no_grad():
        z = model.encode(digits)
    acc = [h["discriminator_disc_accuracy"] for h in history]
    assert max(acc) > 0.6  # the discriminator does tell codes from prior draws at some point

    def distance(c):  # how far the code's moments are from N(0, I)
        return (c.mean(0).abs().max() + (c.std(0) - 1).abs().max()).item()

    assert distance(z0) > 0.7
    assert distance(z) < 0.3
    rec = [h["reconstruction_reconstruction"] for h in history]
    assert np.mean(rec[-20:]) < 0.9 * np.mean(rec[:5])


# -- recurrent --------------------------------------------------------------------------------------
def sine_windows(n: int, gen: torch.Generator, t: int = 24, f: int = 2) -> torch.Tensor:
    """Noisy multivariate sine windows ``[n, t, f]`` with random frequency, phase and amplitude."""
    steps = torch.arange(t).float()[None, :, None]
    freq = 0.2 + 0.3 * torch.rand(n, 1, f, generator=gen)
    phase = 2 * math.pi * torch.rand(n, 1, f, generator=gen)
    amp = 0.5 + torch.rand(n, 1, f, generator=gen)
    return amp * torch.sin(freq * steps + phase) + 0.05 * torch.randn(n, t, f, generator=gen)


@pytest.mark.parametrize("cell,bound", [("gru", 0.3), ("lstm", 0.6)])
def test_recurrent_reconstructs_held_out_sine_windows(cell, bound):
    gen = torch.Generator().manual_seed(0)
    train, test = sine_windows(512, gen), sine_windows(128, gen)
    model = build_model(
        {"name": "recurrent", "input_shape": (24, 2), "latent_dim": 12, "hidden_size": 32, "cell": cell}
    )
    fit(model, train, steps=300, batch=64)
    model.eval()
    mean_predictor = (test - train.mean(0)).pow(2).mean().item()
    assert model.score(test).mean().item() / mean_predictor < bound


# -- VQ-VAE -----------------------------------------------------------------------------------------
def test_vq_vae_uses_many_codes_and_snaps_to_the_codebook(digits):
    model = build_model(
        {"name": "vq_vae", "input_shape": (64,), "latent_dim": 8, "code_dim": 2, "codebook_size": 32, "hidden": [64]}
    )
    history = fit(model, digits, steps=200, lr=2e-3, batch=128)
    usage = model.epoch_metrics()
    assert usage["codes_used"] * 32 > 8 and usage["perplexity"] > 4
    assert model.epoch_metrics()["codes_used"] == 0  # reset after reading
    rec = [h["reconstruction"] for h in history]
    assert np.mean(rec[-10:]) < 0.6 * np.mean(rec[:5])
    model.eval()
    tokens = model.encode(digits[:20]).view(-1, 1, 2)
    nearest = (tokens - model.quantizer.codebook[None]).abs().amax(dim=2).min(dim=1).values
    assert nearest.max().item() < 1e-5  # every token is a codebook row
    # straight-through: the reconstruction gradient reaches the encoder
    model.zero_grad()
    model.reconstruction_loss(model(digits[:20]), digits[:20]).backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0


# -- masked -----------------------------------------------------------------------------------------
def test_masked_loss_counts_only_hidden_entries():
    model = build_model(
        {
            "name": "masked",
            "input_shape": (2, 10, 9),
            "latent_dim": 8,
            "hidden": [32],
            "mask_ratio": 0.4,
            "patch_size": 3,
        }
    )
    x = torch.rand(16, 2, 10, 9)
    mask = model.make_mask(x, torch.Generator().manual_seed(0))
    patches = 4 * 3  # ceil(10 / 3) * ceil(9 / 3)
    hidden_patches = round(0.4 * patches)
    # whole 3x3 patches, the same across channels, exactly round(0.4 * 12) of them per sample
    grid = mask[:, 0, ::3, ::3]
    assert (grid.flatten(1).sum(1) == hidden_patches).all()
    assert torch.equal(mask, grid.repeat_interleave(3, 1).repeat_interleave(3, 2)[:, None, :10, :9].expand_as(mask))

    x_hat = torch.rand_like(x)
    base = model.masked_loss(x_hat, x, mask)
    assert model.masked_loss(torch.where(mask, x_hat, x_hat + 5.0), x, mask) == base  # visible edits: no change
    assert model.masked_loss(torch.where(mask, x_hat + 5.0, x_hat), x, mask) > base + 1.0
    by_hand = torch.stack([((x_hat[i] - x[i]) ** 2)[mask[i]].mean() for i in range(16)]).mean()
    torch.testing.assert_close(base, by_hand)

    # the model's loss hides the same entries and feeds the mask token there (scoring: test_score_batches.py)
    torch.manual_seed(7)
    terms = model.loss(x)
    torch.manual_seed(7)
    m = model.make_mask(x)
    x_in = torch.where(m, model.mask_token, x)
    torch.testing.assert_close(terms["loss"], masked_mean((model(x_in) - x).pow(2), m))


def test_masked_feature_mask_fraction():
    model = build_model({"name": "masked", "input_shape": (40,), "latent_dim": 4, "hidden": [8], "mask_ratio": 0.25})
    mask = model.make_mask(torch.zeros(2000, 40))
    assert (mask.sum(1) == 10).all()
    assert mask.float().mean(0).min() > 0.2 and mask.float().mean(0).max() < 0.3  # every feature gets hidden
