"""How often training reads its corpus before the first step, counted with the read log that the record readers
keep (:mod:`pipelines.data.reads`): one pass when the splits are cached, at most two when they stream."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import load_config
from pipelines.data import corpora
from pipelines.data.reads import logging_reads, read_counts
from pipelines.train.driver import prepare_data


@pytest.mark.parametrize(("cache", "most"), [("stream", 2), ("auto", 1)])
def test_the_corpus_is_read_at_most_twice_before_training(ray_local, tmp_path, cache, most):
    ids = np.array([f"row-{i:03d}" for i in range(120)])
    x = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)
    corpora.write_vector_shards(tmp_path / "data", ids, x, None, shards=3)
    settings = [f"data.path={tmp_path / 'data'}", "model.input_shape=[6]", "model.hidden=[4]", "model.latent_dim=2"]
    job = load_config(None, [*settings, f"data.cache={cache}", "name=reads"], home=str(tmp_path))
    with logging_reads(str(tmp_path / "reads")):
        prepared = prepare_data(job, log=lambda _m: None)
    counts = read_counts(str(tmp_path / "reads"))
    assert len(counts) == 3, counts  # every shard was read, and logged
    assert max(counts.values()) <= most, counts
    assert prepared.cached == (cache == "auto") and prepared.records == 120
    assert prepared.splits["train"].count() + prepared.splits["val"].count() == 120
