"""The code size a job may take from its data: how many principal components hold a share of the (normalized)
training split's variance, PCA's rule of thumb for how many directions a corpus really has.

A linear autoencoder learns PCA's subspace of its code size. A code larger than the directions that hold the normal
rows' variance also spans the anomalies in an unlabelled fitting corpus, and reconstructs them (``bench/peers.py``'s
series: 90% of the variance in 2 components; PCA's AUROC with 2 components 0.99997, with 4 0.899).
"""

from __future__ import annotations

import numpy as np
import ray.data

from pipelines.config import ConfigError
from pipelines.data.records import Batch

#: The most values per sample whose covariance is computed (a ``D x D`` float64 matrix per block).
MAX_VALUES = 4096


def check_measurable(values: int, source: str) -> None:
    """Refuse, before any pass, a code size measured from samples of more than :data:`MAX_VALUES` values.

    Raises:
        ConfigError: naming ``source`` (the corpus) and the setting.
    """
    if values > MAX_VALUES:
        raise ConfigError(
            f"{source}: data.latent_variance measures samples of at most {MAX_VALUES} values; these have {values} "
            "(set model.latent_dim instead)"
        )


def cross_moments(x: np.ndarray) -> dict[str, np.ndarray]:
    """Sufficient statistics of the covariance of samples ``x`` ``[B, *shape]`` flattened to ``[B, D]``:
    ``count`` ``[]``, ``sum`` ``[D]`` and ``cross`` ``[D, D]`` (the sum of outer products)."""
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return {"count": np.array(len(flat), dtype=np.float64), "sum": flat.sum(axis=0), "cross": flat.T @ flat}


def components_holding(count: float, total: np.ndarray, cross: np.ndarray, share: float) -> int:
    """The fewest principal components whose variance holds ``share`` (0 < share < 1) of the total, from the
    moments of :func:`cross_moments` summed over the split; at least 1."""
    mean = total / count
    covariance = cross / count - np.outer(mean, mean)
    variances = np.clip(np.linalg.eigvalsh(covariance)[::-1], 0.0, None)
    if variances.sum() <= 0.0:
        return 1
    held = np.cumsum(variances) / variances.sum()
    return max(1, int(np.searchsorted(held, share - 1e-12)) + 1)


def _block_moments(batch: Batch) -> Batch:
    if len(batch["x"]) == 0:
        return {}
    return {k: np.expand_dims(v, 0) for k, v in cross_moments(batch["x"]).items()}


def count_components(train: ray.data.Dataset, share: float, values: int) -> int:
    """:func:`components_holding` over the ``x`` of ``train`` (samples of ``values`` values, checked by
    :func:`check_measurable`): per-block moments in Ray tasks, summed on the driver.

    Raises:
        ValueError: no rows.
    """
    count, total, cross = 0.0, np.zeros(values), np.zeros((values, values))
    moments = train.select_columns(["x"]).map_batches(_block_moments, batch_size=None, batch_format="numpy")
    for part in moments.iter_batches(batch_size=None, batch_format="numpy"):
        count += float(part["count"].sum())
        total += part["sum"].sum(axis=0)
        cross += part["cross"].sum(axis=0)
    if count == 0:
        raise ValueError("cannot measure the code size of an empty training split")
    return components_holding(count, total, cross, share)
