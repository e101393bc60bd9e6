"""Smoke test of the quality bench (its quick variant: tiny sizes, one epoch)."""

from __future__ import annotations

import math

from bench.quality import markdown, run_quality


def test_quick_quality_bench_reports_finite_numbers():
    result = run_quality(quick=True)
    keys = {"pca_mse", "dense_mse", "conv_mse", "dense_ratio", "conv_ratio", "vae_neg_elbo", "vae_iwae_nll"}
    assert keys <= set(result)
    for key in keys:
        assert isinstance(result[key], float) and math.isfinite(result[key]), (key, result[key])
    assert 0 < result["pca_mse"] < result["dense_mse"] * 100
    assert result["dense_ratio"] == result["dense_mse"] / result["pca_mse"]
    assert result["vae_iwae_nll"] <= result["vae_neg_elbo"] + 5.0  # IWAE is the tighter bound
    assert "conv / PCA" in markdown(result)
