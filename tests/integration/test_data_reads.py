"""How often training reads its corpus before the first step, counted with the read log that the record readers
keep (:mod:`pipelines.data.reads`): once, cached or streamed; the same pass validates, splits and fits the
normalizer."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import load_config
from pipelines.data import corpora
from pipelines.data.reads import logging_reads, read_counts
from pipelines.data.split import is_validation
from pipelines.train.driver import prepare_data


@pytest.mark.parametrize("cache", ["stream", "auto"])  # auto: these rows fit, the splits are cached
def test_the_corpus_is_read_once_before_training(ray_local, tmp_path, cache):
    ids = np.array([f"row-{i:03d}" for i in range(120)])
    x = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    corpora.write_vector_shards(tmp_path / "data", ids, x, None, shards=3)
    settings = [f"data.path={tmp_path / 'data'}", "model.input_shape=[6]", "model.hidden=[4]", "model.latent_dim=2"]
    overrides = ["data.normalize=standard", "data.normalize_scope=feature", f"data.cache={cache}", "name=reads"]
    job = load_config(None, [*settings, *overrides], home=str(tmp_path))
    with logging_reads(str(tmp_path / "reads")):
        prepared = prepare_data(job, log=lambda _m: None)
    assert read_counts(str(tmp_path / "reads")) == {f"part-{i:05d}.parquet": 1 for i in range(3)}
    assert prepared.cached == (cache == "auto") and prepared.records == 120
    # the normalizer fitted in the pass is that of the training rows alone
    train = x[~is_validation(ids, job.data.val_fraction)]
    np.testing.assert_allclose(prepared.normalizer.shift, train.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(prepared.normalizer.scale, train.std(axis=0), rtol=1e-4)
    assert prepared.splits["train"].count() == len(train) and prepared.splits["val"].count() == 120 - len(train)
