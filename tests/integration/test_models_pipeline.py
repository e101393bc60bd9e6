"""Every registered family trains, registers and scores through the real Ray pipeline (one epoch, tiny).

dense trains and scores in test_e2e.py and test_scoring_pipeline.py, and recurrent (series) in
test_data_cli.py; every other family goes through :func:`run_training` and :func:`run_scoring` here. The
families with distinct training paths run on 2 workers: the multi-optimizer adversarial AE, a generative VAE,
the VQ-VAE (per-epoch codebook metrics) and the masked AE; the others on 1 worker, as small as they build.
The image families train on the flat 784-vectors of ``mnist_small`` with ``model.input_shape=[1,28,28]``,
and are scored on the same flat vectors.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest

import aecore
from pipelines import tracking
from pipelines.config import load_config
from pipelines.score.driver import ScoreRequest, run_scoring
from pipelines.train.driver import run_training

TWO_WORKERS = ["train.num_workers=2", "train.batch_size=64", "model.hidden=[32]", "model.latent_dim=8"]
ONE_WORKER = ["train.num_workers=1", "train.batch_size=128", "model.latent_dim=4"]
SMALL_MLP = ["model.hidden=[16]"]
IMAGE = ["model.input_shape=[1,28,28]", "model.channels=[4]"]

FAMILIES = {
    "adversarial": [*TWO_WORKERS, "model.disc_hidden=[16]"],
    "vae": [*TWO_WORKERS, "model.reconstruction=bce"],
    "vq_vae": [*TWO_WORKERS, "model.codebook_size=16"],
    "masked": [*TWO_WORKERS, "model.mask_ratio=0.5"],
    "linear": [*ONE_WORKER, "model.output_activation=identity"],  # a linear map: no output activation
    "denoising": [*ONE_WORKER, *SMALL_MLP],
    "sparse": [*ONE_WORKER, *SMALL_MLP],
    "contractive": [*ONE_WORKER, *SMALL_MLP],
    "beta_vae": [*ONE_WORKER, *SMALL_MLP],
    "residual": [*ONE_WORKER, "model.width=16", "model.blocks=1"],
    "conv": [*ONE_WORKER, *IMAGE],
    "conv_vae": [*ONE_WORKER, *IMAGE],
}
ELSEWHERE = {"dense": "test_e2e.py, test_scoring_pipeline.py", "recurrent": "test_data_cli.py"}


def test_every_registered_family_goes_through_the_pipeline_in_the_suite():
    assert set(FAMILIES) | set(ELSEWHERE) == set(aecore.known_models())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_trains_registers_and_scores(ray_local, home, mnist_small, tmp_path, family):
    job = load_config(
        None,
        [
            f"home={home}",
            f"name=family-{family}",
            f"data.path={mnist_small}",
            "model.input_shape=[784]",
            f"model.name={family}",
            "model.output_activation=sigmoid",
            "train.epochs=1",
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
    if family == "contractive":  # validation computed the Jacobian penalty
        assert math.isfinite(metrics["val_contractive"]) and metrics["val_contractive"] > 0

    out = tmp_path / "scored"
    req = ScoreRequest(
        model_uri=f"models:/fam-{family}/1", input_path=str(mnist_small), output_path=str(out), tracking_uri=uri
    )
    scored = run_scoring(req, log=lambda _m: None)
    assert scored.rows == 600 and scored.model.version == "1"
    table = pq.read_table(out)
    assert table.num_rows == 600 and len(set(table.column("id").to_pylist())) == 600
    assert np.isfinite(np.asarray(table.column("score").to_pylist(), np.float64)).all()
