"""The validation pass: one streaming read of every record before training or scoring starts.

- ``fail``: the first bad file or row raises :class:`DataError` naming it; duplicate ids raise naming where
  each copy is.
- ``skip``: bad records are written (file, row, id, reason) to Parquet under the quarantine directory by the
  tasks that find them, and every copy of a duplicated id is quarantined too (which copy is right is unknown).

Duplicate ids are found with a Ray Data shuffle (``groupby("id").count()``): the driver receives one
summary row per block and at most ``MAX_DUPLICATES`` duplicated ids, never the full id list.

A bad record found in a Ray task (``fail``) stops the pass there and then: the task raises
:class:`~pipelines.data.errors.TaskDataError`, which reaches the driver as an exception object (not as the text
of a traceback) and is raised again there as a plain :class:`DataError` with the record's message.
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data

from pipelines import storage
from pipelines.data.errors import DataError, TaskDataError, task_data_error
from pipelines.data.records import (
    ERROR,
    FILE,
    ROW,
    Batch,
    describe,
    first_error,
    group_by,
    quarantine_rows,
    write_quarantine,
)
from pipelines.progress import RowCounter

MAX_DUPLICATES = 100_000
EXAMPLES = 5
#: Ids per block entering the duplicate check's shuffle. Its driver-side bookkeeping grows with the square of the
#: blocks shuffled (each map task returns one object per reducer, one reducer per block): regrouping the ids,
#: one block per file otherwise, keeps it flat up to a million rows (128 files: 64 MiB of driver peak before).
ID_ROWS_PER_BLOCK = 1_000_000


@dataclass
class ValidationReport:
    """What the validation pass found: good records, quarantined input rows and where they were written.

    ``skipped`` counts input rows, not records: a bad file counts the rows its Parquet footer holds (the
    unreadable rest of a file, the rows from where it breaks off); a file whose footer cannot be read counts
    as 1. ``skipped_by_file`` is the same count per input file."""

    records: int
    skipped: int
    quarantine_dir: str | None
    duplicated_ids: frozenset[str] = frozenset()
    skipped_by_file: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Audit:
    """What the tasks of one validation pass are told: the policy, where skipped records go, the pass's token."""

    on_bad_records: str
    quarantine_dir: str | None
    token: str
    counter: RowCounter | None = None
    """Where the tasks add the records they read, for the driver's progress bar (None: nothing drawn)."""

    def quarantine(self, table: pa.Table) -> None:
        """Write quarantined records (``skip`` only, which always has a quarantine directory)."""
        assert self.quarantine_dir is not None, "on_bad_records=skip runs with a quarantine directory"
        write_quarantine(table, self.quarantine_dir, self.token)


def _audit(batch: Batch, audit: _Audit) -> Batch:
    """Raise at the first bad record (fail) or quarantine the bad ones (skip); pass on the good ids."""
    if audit.counter is not None:
        audit.counter.add(len(batch[ERROR]))
    if audit.on_bad_records == "fail" and (message := first_error(batch)):
        raise TaskDataError(message)
    bad = batch[ERROR] != ""
    if bad.any():
        audit.quarantine(quarantine_rows(batch, bad))
    return {"id": batch["id"][~bad]}


def _summarize(batch: Batch, keep: int) -> Batch:
    """Per block of ``(id, count)``: rows, and up to ``keep`` duplicated ids (JSON)."""
    counts = batch["count()"]
    duplicated = batch["id"][counts > 1]
    return {
        "rows": np.array([counts.sum()]),
        "duplicated": np.array([len(duplicated)]),
        "ids": np.array([json.dumps(duplicated[:keep].tolist())], dtype=object),
    }


def _quarantine_duplicates(batch: Batch, ids: frozenset[str], audit: _Audit) -> Batch:
    """Where each good copy of a duplicated id is (``FILE: row R (id 'X'): duplicate id``); skip quarantines them."""
    hit = np.array([i in ids for i in batch["id"]], dtype=bool) & (batch[ERROR] == "")
    if audit.on_bad_records == "skip" and hit.any():
        audit.quarantine(quarantine_rows({**batch, ERROR: np.full(len(hit), "duplicate id", dtype=object)}, hit))
    return {
        "where": np.array(
            [
                describe(f, r, i, "duplicate id")
                for f, r, i in zip(batch[FILE][hit], batch[ROW][hit], batch["id"][hit], strict=True)
            ],
            dtype=object,
        )
    }


@contextlib.contextmanager
def _task_errors_as_raised(ds: ray.data.Dataset) -> Iterator[None]:
    """While ``ds`` runs, let Ray Data hand a task's exception to the driver as it was raised (by default it wraps
    it in ``UserCodeException`` and only the traceback's text survives). The setting lives in the context that
    every dataset derived from the corpus shares, so it is restored afterwards: training and scoring keep Ray
    Data's default."""
    context = ds.context
    before = context.raise_original_map_exception
    context.raise_original_map_exception = True
    try:
        yield
    finally:
        context.raise_original_map_exception = before


def _driver_side(ds: ray.data.Dataset) -> list[dict[str, Any]]:
    """Run ``ds`` and collect its (small) result on the driver; a :class:`TaskDataError` raised in a Ray task is
    raised here as a :class:`DataError` with the task's message (no Ray traceback)."""
    with _task_errors_as_raised(ds):
        try:
            return list(ds.iter_rows())
        except Exception as exc:
            found = task_data_error(exc)
            if found is None:
                raise
            raise found from None


def quarantined(quarantine_dir: str | None, token: str) -> dict[str, int]:
    """Input rows this validation pass quarantined, per input file (a record of unknown size counts 1). Reads
    the ``file`` and ``rows`` columns of the quarantine files only: bad records, never the good rows."""
    if quarantine_dir is None:
        return {}
    counts: dict[str, int] = {}
    for entry in storage.list_dir(quarantine_dir, recursive=True):
        if not (entry.base_name.startswith(f"quarantine-{token}-") and entry.base_name.endswith(".parquet")):
            continue
        with storage.open_input(storage.uri_of(quarantine_dir, entry)) as fh:
            table = pq.read_table(fh, columns=["file", "rows"])
        for file, rows in zip(table.column("file").to_pylist(), table.column("rows").to_pylist(), strict=True):
            counts[file] = counts.get(file, 0) + (1 if rows is None else rows)
    return counts


def _good_rows(batch: Batch, audit: _Audit) -> Batch:
    return {"rows": np.array([len(_audit(batch, audit)["id"])])}


def _count_good(records: ray.data.Dataset, audit: _Audit) -> int:
    """The pass over every record when ids need no check: good records, from one count per block (the ids are
    never gathered, so nothing waits on the driver for a shuffle)."""
    return int(sum(s["rows"] for s in _driver_side(records.map_batches(functools.partial(_good_rows, audit=audit)))))


def _count_ids(records: ray.data.Dataset, audit: _Audit, keep: int) -> tuple[int, int, frozenset[str]]:
    """The pass over every record: ``(good records, ids that occur more than once, up to keep of those ids)``."""
    audited = records.map_batches(functools.partial(_audit, audit=audit)).repartition(
        target_num_rows_per_block=ID_ROWS_PER_BLOCK, strict=True
    )
    summary = _driver_side(
        group_by(audited, "id").count().map_batches(functools.partial(_summarize, keep=keep)),
    )
    rows = int(sum(s["rows"] for s in summary))
    n_duplicated = int(sum(s["duplicated"] for s in summary))
    duplicated = frozenset(i for s in summary for i in json.loads(s["ids"]))
    return rows, n_duplicated, duplicated


def _locate_duplicates(records: ray.data.Dataset, ids: frozenset[str], audit: _Audit) -> list[str]:
    """``FILE: row R (id 'X'): duplicate id`` for every good record whose id is in ``ids`` (skip: quarantined)."""
    located = _driver_side(records.map_batches(functools.partial(_quarantine_duplicates, ids=ids, audit=audit)))
    return [r["where"] for r in located]


def validate_records(
    records: ray.data.Dataset,
    on_bad_records: str,
    quarantine_dir: str | None,
    counter: RowCounter | None = None,
    unique_ids: bool = False,
) -> ValidationReport:
    """Read every record once; raise (fail) or quarantine (skip) bad records and duplicate ids. ``counter``: where
    the pass counts the records it reads (see :func:`pipelines.progress.counting`); ``unique_ids``: the ids are
    unique by construction (an image's path), so no shuffle looks for repeated ones."""
    if on_bad_records == "skip" and quarantine_dir is None:
        raise ValueError("on_bad_records=skip needs a quarantine directory to record what it skips")
    audit = _Audit(on_bad_records, quarantine_dir, uuid.uuid4().hex[:12], counter)
    keep = MAX_DUPLICATES if on_bad_records == "skip" else EXAMPLES
    if unique_ids:
        rows, n_duplicated, duplicated = _count_good(records, audit), 0, frozenset[str]()
    else:
        rows, n_duplicated, duplicated = _count_ids(records, audit, keep)
    if n_duplicated:
        if n_duplicated > MAX_DUPLICATES and on_bad_records == "skip":
            raise DataError(f"{n_duplicated} ids occur more than once; too many to skip (at most {MAX_DUPLICATES})")
        located = _locate_duplicates(records, duplicated, replace(audit, counter=None))
        if on_bad_records == "fail":
            raise DataError(f"{n_duplicated} ids occur more than once, e.g. {'; '.join(located[: 2 * EXAMPLES])}")
        rows -= len(located)
    by_file = quarantined(quarantine_dir, audit.token)
    return ValidationReport(rows, sum(by_file.values()), quarantine_dir, duplicated, by_file)
