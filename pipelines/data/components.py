"""The principal components of the (normalized) training split: how many a job's code takes
(``data.latent_variance``), and the subspace a linear autoencoder starts from.

A linear autoencoder learns PCA's subspace of its code size. A code larger than the directions that hold the normal
rows' variance also spans the anomalies in an unlabelled fitting corpus, and reconstructs them (``bench/peers.py``'s
series: 90% of the variance in 2 components; PCA's AUROC with 2 components 0.99997, with 4 0.899). Started at that
subspace, a linear model is PCA from its first step, however few updates the training gets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import ray.data

from pipelines.config import ConfigError
from pipelines.data.records import Batch

#: The most values per sample whose covariance is computed (a ``D x D`` float64 matrix per block).
MAX_VALUES = 4096


def measurable(values: int) -> bool:
    """Whether samples of ``values`` values are small enough for their covariance (:data:`MAX_VALUES`)."""
    return values <= MAX_VALUES


def check_measurable(values: int, source: str) -> None:
    """Refuse, before any pass, a code size measured from samples of more than :data:`MAX_VALUES` values.

    Raises:
        ConfigError: naming ``source`` (the corpus) and the setting.
    """
    if not measurable(values):
        raise ConfigError(
            f"{source}: data.latent_variance measures samples of at most {MAX_VALUES} values; these have {values} "
            "(set model.latent_dim instead)"
        )


def cross_moments(x: np.ndarray) -> dict[str, np.ndarray]:
    """Sufficient statistics of the covariance of samples ``x`` ``[B, *shape]`` flattened to ``[B, D]``:
    ``count`` ``[]``, ``sum`` ``[D]`` and ``cross`` ``[D, D]`` (the sum of outer products)."""
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return {"count": np.array(len(flat), dtype=np.float64), "sum": flat.sum(axis=0), "cross": flat.T @ flat}


@dataclass(frozen=True)
class PrincipalComponents:
    """The leading principal components of a sample set flattened to ``D`` values."""

    mean: np.ndarray
    """``[D]`` float32: the samples' mean."""
    components: np.ndarray
    """``[K, D]`` float32: orthonormal directions, largest variance first (``K <= D``)."""
    variances: np.ndarray
    """``[D]`` float64: the variance along every principal direction, largest first (all ``D``, not just ``K``)."""

    @classmethod
    def from_moments(cls, count: float, total: np.ndarray, cross: np.ndarray) -> PrincipalComponents:
        """From the moments of :func:`cross_moments` summed over the split."""
        mean = total / count
        covariance = cross / count - np.outer(mean, mean)
        variances, vectors = np.linalg.eigh(covariance)  # ascending
        return cls(
            mean.astype(np.float32),
            np.ascontiguousarray(vectors[:, ::-1].T, dtype=np.float32),
            np.clip(variances[::-1], 0.0, None),
        )

    def holding(self, share: float) -> int:
        """The fewest components whose variance holds ``share`` (0 < share < 1) of the total; at least 1."""
        if self.variances.sum() <= 0.0:
            return 1
        held = np.cumsum(self.variances) / self.variances.sum()
        return max(1, int(np.searchsorted(held, share - 1e-12)) + 1)

    def leading(self, k: int) -> PrincipalComponents:
        """The first ``k`` components only (what a ``k``-d code starts from; smaller to ship to workers)."""
        return PrincipalComponents(self.mean, self.components[:k].copy(), self.variances)


def _block_moments(batch: Batch) -> Batch:
    if len(batch["x"]) == 0:
        return {}
    return {k: np.expand_dims(v, 0) for k, v in cross_moments(batch["x"]).items()}


def principal_components(train: ray.data.Dataset, values: int) -> PrincipalComponents:
    """The principal components of the ``x`` of ``train`` (samples of ``values`` values, at most
    :data:`MAX_VALUES`): per-block moments in Ray tasks, summed on the driver.

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
        raise ValueError("cannot measure the principal components of an empty training split")
    return PrincipalComponents.from_moments(count, total, cross)
