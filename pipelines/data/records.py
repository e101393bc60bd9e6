"""Records: canonical rows plus the provenance and verdict of each, as every source reader emits them.

A record batch is a dict of numpy arrays::

    id      [B] object (str)     sample id ("" where it could not be read)
    x       [B, *sample_shape]   float32 (zeros where the record is bad)
    label   [B]                  optional
    _error  [B] object (str)     "" for a good record, else why it is bad
    _file   [B] object (str)     the file the record came from
    _row    [B] int64            its row in that file (-1 where a whole file is bad)
    _rows   [B] int64            input rows the record stands for: 1 for a row, the file's rows (from its
                                 Parquet footer) for a whole bad file or its unreadable rest, -1 if unknown

Readers never raise on bad input: they mark it, so ``on_bad_records`` decides in one place whether it stops
the job (``fail``) or goes to the quarantine (``skip``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray.data

from pipelines import storage
from pipelines.data import reads
from pipelines.data.errors import DataError

#: A batch of records, of canonical rows or of per-block summaries: column name -> array ``[B, ...]``.
Batch = dict[str, np.ndarray]

ERROR, FILE, ROW, ROWS = "_error", "_file", "_row", "_rows"
BOOKKEEPING = (ERROR, FILE, ROW, ROWS)
#: ``rows``: the input rows a quarantined record stands for (null where a file's footer cannot be read).
QUARANTINE_SCHEMA = pa.schema(
    [("file", pa.string()), ("row", pa.int64()), ("id", pa.string()), ("reason", pa.string()), ("rows", pa.int64())]
)


def make_records(
    ids: npt.ArrayLike,
    x: np.ndarray,
    errors: npt.ArrayLike,
    file: str | np.ndarray,
    rows: npt.ArrayLike,
    labels: npt.ArrayLike | None = None,
    counts: npt.ArrayLike | None = None,
) -> Batch:
    """Assemble a record batch; ``file`` may be one name for all rows; ``counts`` (input rows per record)
    defaults to 1 each."""
    n = len(x)
    out = {
        "id": np.asarray(ids, dtype=object).reshape(n),
        "x": np.asarray(x, dtype=np.float32),
        ERROR: np.asarray(errors, dtype=object).reshape(n),
        FILE: np.full(n, file, dtype=object) if isinstance(file, str) else np.asarray(file, dtype=object),
        ROW: np.asarray(rows, dtype=np.int64).reshape(n),
        ROWS: np.ones(n, np.int64) if counts is None else np.asarray(counts, dtype=np.int64).reshape(n),
    }
    if labels is not None:
        out["label"] = np.asarray(labels)
    return out


def file_error(
    file: str, reason: str, shape: tuple[int, ...], with_label: bool, row: int = -1, rows: int = -1
) -> Batch:
    """One record standing for a whole bad file (or the unreadable rest of it from ``row`` on) of ``rows``
    input rows (-1: unknown, the file's footer cannot be read)."""
    labels = np.array([None], dtype=object) if with_label else None
    return make_records([""], np.zeros((1, *shape), np.float32), [reason], file, [row], labels, [rows])


def describe(file: str, row: int, id_: Any, reason: str) -> str:
    """``FILE: row R (id 'X'): REASON`` -- the message a bad record becomes."""
    where = f"{file}"
    if row >= 0:
        where += f": row {row}"
    if id_ not in (None, ""):
        where += f" (id {id_!r})"
    return f"{where}: {reason}".replace("\n", " ")


def first_error(batch: Batch) -> str | None:
    """The message of the first bad record in ``batch``, or None."""
    bad = np.flatnonzero(batch[ERROR] != "")
    if not bad.size:
        return None
    i = int(bad[0])
    return describe(batch[FILE][i], int(batch[ROW][i]), batch["id"][i], batch[ERROR][i])


def clean(batch: Batch, on_bad_records: str, exclude: frozenset[str] = frozenset()) -> Batch:
    """Canonical rows of the good records whose id is not in ``exclude``; ``fail`` raises
    :class:`DataError` at the first bad record."""
    if on_bad_records == "fail" and (message := first_error(batch)):
        raise DataError(message)
    good = batch[ERROR] == ""
    if exclude:
        good &= np.array([i not in exclude for i in batch["id"]], dtype=bool)
    if not good.any():
        return {}  # an empty tensor column cannot become an Arrow block
    return {k: v[good] for k, v in batch.items() if k not in BOOKKEEPING}


def quarantine_rows(batch: Batch, bad: np.ndarray) -> pa.Table:
    """The quarantine table (file, row, id, reason, rows) of the records selected by mask ``bad``."""
    return pa.table(
        {
            "file": pa.array(batch[FILE][bad].tolist(), pa.string()),
            "row": pa.array(batch[ROW][bad], pa.int64()),
            "id": pa.array([str(i) if i not in (None, "") else None for i in batch["id"][bad]], pa.string()),
            "reason": pa.array(batch[ERROR][bad].tolist(), pa.string()),
            "rows": pa.array(batch[ROWS][bad], pa.int64(), mask=batch[ROWS][bad] < 0),
        },
        schema=QUARANTINE_SCHEMA,
    )


def quarantine_folder(file: str) -> str:
    """The folder (under a quarantine directory) holding the quarantined records of input ``file``: its base
    name and a hash of its whole path, so files of the same name in different folders stay apart."""
    return f"{file.rsplit('/', 1)[-1]}-{hashlib.sha1(file.encode()).hexdigest()[:8]}"


def _content_digest(table: pa.Table) -> str:
    """A name for ``table``'s records derived from their content, so a retried task overwrites its file."""
    lines = zip(
        table.column("file").to_pylist(),
        table.column("row").to_pylist(),
        table.column("reason").to_pylist(),
        strict=True,
    )
    return hashlib.sha1("\n".join(f"{f}\t{r}\t{e}" for f, r, e in lines).encode()).hexdigest()[:16]


def write_quarantine(table: pa.Table, directory: str, token: str) -> None:
    """Write ``table`` under ``directory``, one file per input file in its :func:`quarantine_folder` (so the
    records of one input file can be replaced alone, e.g. when scoring it again)."""
    for file in sorted(set(table.column("file").to_pylist())):
        part = table.filter(pc.equal(table.column("file"), file))  # type: ignore[attr-defined]  # made at import
        name = storage.join(directory, quarantine_folder(file), f"quarantine-{token}-{_content_digest(part)}.parquet")
        with storage.open_output(name) as out:
            pq.write_table(part, out)


def _reading_logged(
    items: Batch, reader: Callable[..., Iterator[Batch]], read_log: str, **kwargs: Any
) -> Iterator[Batch]:
    """``reader(items, **kwargs)`` after noting each input file in the read log (see :mod:`pipelines.data.reads`)."""
    for path in items["path"]:
        reads.note_read(read_log, str(path))
    yield from reader(items, **kwargs)


def read_in_tasks(
    items: list[dict[str, Any]],
    fn: Callable[..., Iterator[Batch]],
    fn_kwargs: dict[str, Any],
    per_task: int = 1,
) -> ray.data.Dataset:
    """Run the generator ``fn(batch_of_items, **fn_kwargs)`` over ``items`` (e.g. file paths) in Ray tasks.

    Each task gets ``per_task`` items and streams out the record batches ``fn`` yields, so no file is ever
    read on the driver and a bad file only produces error records. Inside :func:`pipelines.data.reads.logging_reads`
    each task notes the files it reads.
    """
    if (read_log := reads.active_log()) is not None:
        fn_kwargs, fn = {**fn_kwargs, "reader": fn, "read_log": read_log}, _reading_logged
    blocks = max(1, math.ceil(len(items) / per_task))
    return ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        fn, fn_kwargs=fn_kwargs, batch_size=per_task, batch_format="numpy"
    )


#: Shuffles (putting series back together) use Ray Data's task-based sort shuffle:
#: no long-lived aggregator actors holding CPUs that the trainer's workers need on a small cluster.
SHUFFLE_STRATEGY = "sort_shuffle_pull_based"


def group_by(ds: ray.data.Dataset, key: str) -> ray.data.grouped_data.GroupedData:
    """``ds.groupby(key)`` with :data:`SHUFFLE_STRATEGY` (set on this dataset only, not process-wide)."""
    ds.context.shuffle_strategy = SHUFFLE_STRATEGY
    return ds.groupby(key)
