"""Rows and ranks on 2 real Ray Train workers: validation is an exact mean over every validation row even when
one rank owns none (it still joins the all-reduce), cached training keeps every row (ranks repeat rows to take
the same steps), a streamed training split logs the rows ``streaming_split(equal=True)`` leaves out, and the row
counts are logged per epoch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipelines import tracking
from pipelines.bundle import ModelBundle
from pipelines.config import load_config
from pipelines.data import corpora
from pipelines.data.split import is_validation, shard_keys
from pipelines.train.driver import run_training

VAL_FRACTION, TRAIN_ROWS, FEATURES = 0.25, 41, 6


def _corpus(root) -> tuple[np.ndarray, np.ndarray]:
    """41 training rows and one validation row, owned by rank 1 of 2 (rank 0 owns no validation row); the
    validation row ``[1, FEATURES]`` and the raw rows ``[42, FEATURES]`` are returned."""
    ids = np.array([f"row-{i:04d}" for i in range(400)])
    val = is_validation(ids, VAL_FRACTION)
    one_val = ids[val & (shard_keys(ids) % 2 == 1)][:1]
    chosen = np.concatenate([one_val, ids[~val][:TRAIN_ROWS]])
    x = np.random.default_rng(0).random((len(chosen), FEATURES), dtype=np.float32)
    corpora.write_vector_shards(root, chosen, x, None, shards=3)
    return x[:1], x


@pytest.mark.parametrize("cache", ["memory", "stream"])
def test_validation_is_exact_and_rows_are_counted_on_two_ranks(ray_local, home, tmp_path, cache):
    val_x, _ = _corpus(tmp_path / "data")
    job = load_config(
        None,
        [
            f"home={home}",
            f"name=ranks-{cache}",
            f"data.path={tmp_path / 'data'}",
            f"data.val_fraction={VAL_FRACTION}",
            f"data.cache={cache}",
            f"model.input_shape=[{FEATURES}]",
            "model.name=dense",
            "model.hidden=[8]",
            "model.latent_dim=2",
            "train.num_workers=2",
            "train.batch_size=8",
            "train.epochs=1",
            "train.plot_rows=16",
            f"tracking.registered_model=ranks-{cache}",
        ],
        home=str(home),
    )
    result = run_training(job, log=lambda _m: None)
    metrics = tracking.client(job.tracking_uri).get_run(result.run_id).data.metrics
    assert metrics["val_rows"] == 1
    if cache == "memory":  # every training row, each rank padded to the larger shard (41 is odd)
        assert (metrics["train_rows"], metrics["train_rows_dropped"]) == (TRAIN_ROWS, 0)
        assert metrics["train_rows_repeated"] >= 1
    else:  # equal=True: floor(41 / 2) rows per rank, one row left out
        assert (metrics["train_rows"], metrics["train_rows_dropped"]) == (TRAIN_ROWS - 1, 1)
        assert metrics["train_rows_repeated"] == 0
    # the logged val_loss is the loss of the one validation row under the epoch-1 model (the exported bundle)
    bundle = ModelBundle.load(result.bundle_dir)
    with torch.no_grad():
        expected = float(bundle.model.eval().eval_loss(torch.from_numpy(bundle.normalize(val_x)))["loss"])
    assert math.isclose(metrics["val_loss"], expected, rel_tol=1e-5), (metrics["val_loss"], expected)
