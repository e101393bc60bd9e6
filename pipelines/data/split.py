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


#: The column each training/validation row carries so that a worker can tell its own rows (see :func:`shard_keys`).
SHARD_KEY = "shard_key"


def shard_keys(ids: np.ndarray | pd.Series) -> np.ndarray:
    """A stable 63-bit key ``[N]`` (int64, >= 0) per id; the training worker of rank ``r`` of ``w`` owns the rows
    whose ``key % w == r``, for any number of workers, in any run and after any restart.

    The key is the upper 31 bits of the same fixed-key hash as :func:`is_validation` joined to a second hash of
    the id, so ownership is independent of the train/validation split (which uses the lower 32 bits).
    """
    text = pd.Series(ids).astype(str)
    first = pd.util.hash_pandas_object(text, index=False).to_numpy()
    second = pd.util.hash_pandas_object(text, index=False, hash_key="aepipe.rank.keys").to_numpy()
    mixed = ((first >> np.uint64(32)) << np.uint64(32)) ^ (second & np.uint64(0xFFFFFFFF))
    return (mixed >> np.uint64(1)).astype(np.int64)
