"""``data.cache``: when the prepared training splits are held in Ray's object store, and that they then hold
exactly the rows the lazy dataset would produce."""

from __future__ import annotations

import numpy as np
import ray
import ray.data
from ray.data.dataset import MaterializedDataset

from pipelines.data import cache


def test_auto_caches_what_fits_and_streams_what_does_not(ray_local):
    store = ray.cluster_resources()["object_store_memory"]
    small = cache.decide("auto", 1000, (784,), 0.5)
    assert small.in_memory and small.estimated_bytes == 1000 * 784 * 4 and small.object_store_bytes == int(store)
    rows_over_half = int(0.5 * store / (784 * 4)) + 1  # one row more than half the store
    big = cache.decide("auto", rows_over_half, (784,), 0.5)
    assert not big.in_memory and "-> stream" in big.reason
    assert cache.decide("auto", rows_over_half, (784,), 1.0).in_memory  # a larger share allowed: it fits
    assert cache.decide("memory", 10**12, (784,), 0.5).in_memory  # explicit choices are obeyed
    assert not cache.decide("stream", 10, (784,), 0.5).in_memory


def test_prepare_materializes_the_same_rows_once(ray_local):
    x = np.arange(600 * 4, dtype=np.float32).reshape(600, 4)
    lazy = ray.data.from_numpy(x).map_batches(lambda b: {"x": b["data"] * 2})
    memory = cache.prepare({"train": lazy}, cache.decide("memory", 600, (4,), 0.5))["train"]
    assert isinstance(memory, MaterializedDataset)
    got = np.concatenate([b["x"] for b in memory.iter_batches(batch_format="numpy")])
    np.testing.assert_array_equal(np.sort(got, axis=0), x * 2)
    streamed = cache.prepare({"train": lazy}, cache.decide("stream", 600, (4,), 0.5))["train"]
    assert streamed is lazy
