"""Parquet shards with an id column and a fixed-length float vector column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import ray.data

from pipelines.config import DataConfig
from pipelines.data.errors import DataError
from pipelines.data.files import list_files


def _to_canonical(batch: pd.DataFrame, cfg: DataConfig, length: int) -> dict[str, np.ndarray]:
    """Raw rows -> ``{"id": [B], "x": [B, length] float32, "label": [B]}``; bad rows raise naming the file."""
    for column in (cfg.id_column, cfg.vector_column):
        if column not in batch.columns:
            files = ", ".join(sorted(set(batch["path"]))) if "path" in batch.columns else "input"
            raise DataError(f"{files}: column {column!r} is missing (columns: {', '.join(c for c in batch.columns if c != 'path')})")
    rows = batch[cfg.vector_column].to_numpy()
    lengths = np.fromiter((len(v) if v is not None else -1 for v in rows), dtype=np.int64, count=len(rows))
    bad = np.flatnonzero(lengths != length)
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{batch['path'].iloc[i]}: id {batch[cfg.id_column].iloc[i]!r} has a vector of length "
            f"{lengths[i]}, expected {length}"
        )
    x = np.stack(rows).astype(np.float32) if len(rows) else np.zeros((0, length), np.float32)
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{batch['path'].iloc[i]}: id {batch[cfg.id_column].iloc[i]!r} has NaN or infinite values")
    out = {"id": batch[cfg.id_column].to_numpy(), "x": x}
    if cfg.label_column and cfg.label_column in batch.columns:
        out["label"] = batch[cfg.label_column].to_numpy()
    return out


def vector_length(path: str, cfg: DataConfig) -> int:
    """Length of the vector column, read from the first row of the first shard."""
    first = list_files(path, (".parquet",))[0]
    import pyarrow.parquet as pq

    table = pq.ParquetFile(first).read_row_group(0, columns=[cfg.vector_column])
    if table.num_rows == 0:
        raise DataError(f"{first}: first row group is empty")
    value = table.column(0)[0].as_py()
    if value is None:
        raise DataError(f"{first}: row 0 has a null {cfg.vector_column!r}")
    return len(value)


def read_parquet_vectors(path: str, cfg: DataConfig) -> tuple[ray.data.Dataset, tuple[int, ...]]:
    """Stream the shards under ``path`` as canonical rows; returns the dataset and one sample's shape."""
    files = list_files(path, (".parquet",))
    length = vector_length(path, cfg)
    ds = ray.data.read_parquet(files, include_paths=True)
    ds = ds.map_batches(_to_canonical, fn_kwargs={"cfg": cfg, "length": length}, batch_format="pandas")
    return ds, (length,)
