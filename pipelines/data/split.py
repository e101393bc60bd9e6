"""Train/validation split by a stable hash of the id: same answer for any run, worker count or shard layout."""

from __future__ import annotations

import numpy as np
import pandas as pd

_BUCKETS = 1 << 32


def is_validation(ids: np.ndarray | pd.Series, val_fraction: float) -> np.ndarray:
    """Boolean mask ``[N]``: True where the id belongs to the validation split.

    The hash is pandas' fixed-key SipHash of the id's string form, so it does not change between
    processes (unlike Python's salted ``hash``).
    """
    if val_fraction <= 0:
        return np.zeros(len(ids), dtype=bool)
    hashed = pd.util.hash_pandas_object(pd.Series(ids).astype(str), index=False).to_numpy()
    return (hashed % _BUCKETS) < int(val_fraction * _BUCKETS)
