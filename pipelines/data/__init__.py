"""Data stage: read a corpus with Ray Data into canonical rows ``{id, x[, label]}``, split, normalize.

Every source streams; the driver only ever holds per-batch statistics, never the rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ray.data

from pipelines.config import DataConfig
from pipelines.data.errors import DataError
from pipelines.data.normalize import Normalizer, combine_moments, partial_moments
from pipelines.data.parquet import read_parquet_vectors
from pipelines.data.split import is_validation

__all__ = ["Corpus", "DataError", "Normalizer", "load_dataset", "fit_normalizer", "split_dataset", "normalize_dataset"]

_READERS = {"parquet": read_parquet_vectors}


@dataclass
class Corpus:
    """A streaming dataset of canonical rows and the shape of one sample ``x``."""

    dataset: ray.data.Dataset
    sample_shape: tuple[int, ...]


def load_dataset(cfg: DataConfig, path: str) -> Corpus:
    """Open the corpus at ``path`` (canonical columns ``id``, ``x`` and optionally ``label``)."""
    ds, shape = _READERS[cfg.source](path, cfg)
    return Corpus(ds, shape)


def _select(batch: dict[str, np.ndarray], val_fraction: float, want_validation: bool) -> dict[str, np.ndarray]:
    keep = is_validation(batch["id"], val_fraction) == want_validation
    return {k: v[keep] for k, v in batch.items()}


def split_dataset(ds: ray.data.Dataset, val_fraction: float) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """``(train, validation)`` by a stable hash of the id."""
    train = ds.map_batches(_select, fn_kwargs={"val_fraction": val_fraction, "want_validation": False})
    val = ds.map_batches(_select, fn_kwargs={"val_fraction": val_fraction, "want_validation": True})
    return train, val


def _moments(batch: dict[str, np.ndarray], per_feature: bool) -> dict[str, np.ndarray]:
    if len(batch["x"]) == 0:
        return {}
    return {k: np.expand_dims(v, 0) for k, v in partial_moments(batch["x"], per_feature).items()}


def fit_normalizer(train: ray.data.Dataset, kind: str, scope: str) -> Normalizer:
    """One distributed pass over ``train``: per-batch moments are reduced on the driver."""
    if kind == "none":
        return Normalizer("none")
    parts = train.map_batches(_moments, fn_kwargs={"per_feature": scope == "feature"}, batch_size=4096).iter_batches(
        batch_size=None, batch_format="numpy"
    )
    rows = [
        {k: v[i] for k, v in part.items()} for part in parts for i in range(len(part["count"]))
    ]
    return combine_moments(rows, kind)


def _apply(batch: dict[str, np.ndarray], normalizer: Normalizer) -> dict[str, np.ndarray]:
    return {**batch, "x": normalizer.apply(batch["x"])}


def normalize_dataset(ds: ray.data.Dataset, normalizer: Normalizer) -> ray.data.Dataset:
    """Apply fitted statistics to every row's ``x``."""
    return ds.map_batches(_apply, fn_kwargs={"normalizer": normalizer})
