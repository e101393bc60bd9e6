"""Families with distinct training paths go through the real 2-worker Ray pipeline for one epoch.

The per-family DDP check for every registered name is in test_models_contract.py; conv (images) and
recurrent (series) train through Ray in test_data_cli.py; dense in test_e2e.py. Here: the multi-optimizer
adversarial AE, a generative VAE, the VQ-VAE (per-epoch codebook metrics) and the masked AE.
"""

from __future__ import annotations

import math

import pytest

from pipelines import tracking
from pipelines.config import load_config
from pipelines.train.driver import run_training

FAMILIES = {
    "adversarial": ["model.disc_hidden=[16]"],
    "vae": ["model.reconstruction=bce"],
    "vq_vae": ["model.codebook_size=16"],
    "masked": ["model.mask_ratio=0.5"],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_trains_through_the_ray_pipeline(ray_local, home, mnist_small, family):
    job = load_config(
        None,
        [
            f"home={home}",
            f"name=family-{family}",
            f"data.path={mnist_small}",
            "model.input_shape=[784]",
            f"model.name={family}",
            "model.hidden=[32]",
            "model.latent_dim=8",
            "model.output_activation=sigmoid",
            "train.epochs=1",
            "train.num_workers=2",
            "train.batch_size=64",
            f"tracking.registered_model=fam-{family}",
            "train.plot_rows=64",
            *FAMILIES[family],
        ],
        home=str(home),
    )
    result = run_training(job, log=lambda _m: None)
    uri = job.tracking_uri

    assert result.model_version == "1"
    val = tracking.metric_history(uri, result.run_id, "val_loss")
    assert [s for s, _ in val] == [0, 1] and all(math.isfinite(v) for _, v in val)
    metrics = tracking.client(uri).get_run(result.run_id).data.metrics
    if family == "adversarial":  # each optimizer phase logs its own terms
        for phase in ("reconstruction", "discriminator", "generator"):
            assert math.isfinite(metrics[f"train_{phase}_loss"])
    if family == "vae":
        assert metrics["val_kl"] > 0
    if family == "vq_vae":
        assert 1 / 16 < metrics["model_codes_used"] <= 1  # fraction of the codebook: more than one code
        assert metrics["model_perplexity"] > 1
