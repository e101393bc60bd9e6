"""The read stage of a scoring pass: each good record tagged with the index of the shard it belongs to.

In a module of its own because Ray Data's read tasks import the module of the function they run: this one needs
the data path only, not the driver's imports (MLflow) or the actors' (torch), which cost each task process
seconds of CPU before its first row.
"""

from __future__ import annotations

import numpy as np

from pipelines.data.chunks import ChunkIndex
from pipelines.data.records import FILE, Batch, clean
from pipelines.score.output import SHARD


def tagged_rows(batch: Batch, shard_of: ChunkIndex, on_bad_records: str, exclude: frozenset[str]) -> Batch:
    """The good rows of a record batch (:func:`pipelines.data.records.clean`), each tagged with the index of the
    shard its file belongs to (a window: the file of its last row)."""
    files, inverse = np.unique(batch[FILE], return_inverse=True)
    shard = np.array([shard_of[f] for f in files], np.int32)[inverse.reshape(-1)]
    return clean({**batch, SHARD: shard}, on_bad_records, exclude)
