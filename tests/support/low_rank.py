"""Samples of a known number of principal directions: what ``data.latent_variance`` should find."""

from __future__ import annotations

import numpy as np

#: The directions' standard deviations: variances 9, 4 and 2.25 of 15.25, so two directions hold 85% of the
#: variance and three all of it (90% takes 3).
SPREADS = (3.0, 2.0, 1.5)


def rank3(rows: int, values: int = 16, seed: int = 0) -> np.ndarray:
    """``[rows, values]`` float32 samples in 3 orthogonal directions (:data:`SPREADS`), plus noise of std 1e-3."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(values, len(SPREADS))))[0].T
    x = (rng.normal(size=(rows, len(SPREADS))) * SPREADS) @ basis + 1e-3 * rng.normal(size=(rows, values))
    return x.astype(np.float32)
