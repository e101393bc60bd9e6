"""Keep the prepared training splits in Ray's object store so that epochs after the first skip the file reads.

Streaming re-reads, decodes and normalizes every file in every epoch, on the same cores the workers train on;
for a corpus that fits, Ray's advice is to materialize the preprocessed dataset once. ``cache=auto`` does so
when the estimated size fits a share of the object store, and streams otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ray
import ray.data

FLOAT_BYTES = 4


@dataclass(frozen=True)
class CacheDecision:
    """Whether the splits are held in memory, and why."""

    in_memory: bool
    estimated_bytes: int
    object_store_bytes: int
    reason: str


def decide(mode: str, rows: int, sample_shape: tuple[int, ...], max_fraction: float) -> CacheDecision:
    """``memory``/``stream`` as asked; ``auto``: memory when ``rows`` float32 samples of ``sample_shape`` take at
    most ``max_fraction`` of the cluster's object store."""
    estimated = int(rows * int(np.prod(sample_shape)) * FLOAT_BYTES)
    store = int(ray.cluster_resources().get("object_store_memory", 0))
    if mode != "auto":
        return CacheDecision(mode == "memory", estimated, store, f"data.cache={mode}")
    fits = estimated <= max_fraction * store
    share = f"{estimated / 2**20:.0f} MiB of {store / 2**20:.0f} MiB object store"
    return CacheDecision(
        fits,
        estimated,
        store,
        f"data.cache=auto: {share} {'<=' if fits else '>'} {max_fraction:.0%} -> {'memory' if fits else 'stream'}",
    )


def prepare(datasets: dict[str, ray.data.Dataset], decision: CacheDecision) -> dict[str, ray.data.Dataset]:
    """The datasets materialized in the object store when ``decision.in_memory``, else unchanged (lazy)."""
    if not decision.in_memory:
        return datasets
    return {name: ds.materialize() for name, ds in datasets.items()}
