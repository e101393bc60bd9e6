"""The validation pass: one streaming read of every record before training or scoring starts.

- ``fail``: the first bad file or row raises :class:`DataError` naming it; duplicate ids raise naming where
  each copy is.
- ``skip``: bad records are written (file, row, id, reason) to Parquet under the quarantine directory by the
  tasks that find them, and every copy of a duplicated id is quarantined too (which copy is right is unknown).

Duplicate ids are found by a hash partition of the ids counted in Ray tasks (:mod:`pipelines.data.ids`): the
driver receives one small result per part and at most ``MAX_DUPLICATES`` duplicated ids, never the id list.

A bad record found in a Ray task (``fail``) stops the pass there and then: the task raises
:class:`~pipelines.data.errors.TaskDataError`, which reaches the driver as an exception object (not as the text
of a traceback) and is raised again there as a plain :class:`DataError` with the record's message.
"""

from __future__ import annotations

import contextlib
import functools
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
from ray.data.dataset import MaterializedDataset

from pipelines import storage
from pipelines.data.errors import DataError, TaskDataError, task_data_error
from pipelines.data.ids import count_ids
from pipelines.data.records import (
    ERROR,
    FILE,
    ROW,
    Batch,
    describe,
    first_error,
    quarantine_rows,
    write_quarantine,
)
from pipelines.progress import RowCounter

MAX_DUPLICATES = 100_000
EXAMPLES = 5


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


def _audit(batch: Batch, audit: _Audit, keep_rows: bool = False) -> Batch:
    """Raise at the first bad record (fail) or quarantine the bad ones (skip); pass on the good ids, or with
    ``keep_rows`` the good records whole."""
    if audit.counter is not None:
        audit.counter.add(len(batch[ERROR]))
    if audit.on_bad_records == "fail" and (message := first_error(batch)):
        raise TaskDataError(message)
    bad = batch[ERROR] != ""
    if bad.any():
        audit.quarantine(quarantine_rows(batch, bad))
    if not keep_rows:
        return {"id": batch["id"][~bad]}
    if bad.all():
        return {}  # an empty tensor column cannot become an Arrow block
    return {k: v[~bad] for k, v in batch.items()}


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


@contextlib.contextmanager
def _data_errors_raised(ds: ray.data.Dataset) -> Iterator[None]:
    """While the block runs ``ds``, a :class:`TaskDataError` raised in a Ray task is raised here as a
    :class:`DataError` with the task's message (no Ray traceback)."""
    with _task_errors_as_raised(ds):
        try:
            yield
        except Exception as exc:
            found = task_data_error(exc)
            if found is None:
                raise
            raise found from None


def _driver_side(ds: ray.data.Dataset) -> list[dict[str, Any]]:
    """Run ``ds`` and collect its (small) result on the driver (see :func:`_data_errors_raised`)."""
    with _data_errors_raised(ds):
        return list(ds.iter_rows())


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


def _block_rows(batch: Batch) -> Batch:
    return {"rows": np.array([len(batch.get("id", ()))])}


def _count_good(audited: ray.data.Dataset) -> int:
    """Good records, from one count per block of the good ids ``audited`` (the ids are never gathered, so
    nothing waits on the driver for a shuffle)."""
    return int(sum(s["rows"] for s in _driver_side(audited.map_batches(_block_rows))))


def _count_ids(audited: ray.data.Dataset, keep: int) -> tuple[int, int, frozenset[str]]:
    """Over the good ids ``audited``: ``(good records, ids that occur more than once, up to keep of those ids)``."""
    with _data_errors_raised(audited):  # the pass may still be to run (validate_records): bad records raise here
        counted = count_ids(audited, keep)
    return counted.rows, counted.repeated, counted.examples


def _locate_duplicates(records: ray.data.Dataset, ids: frozenset[str], audit: _Audit) -> list[str]:
    """``FILE: row R (id 'X'): duplicate id`` for every good record whose id is in ``ids`` (skip: quarantined)."""
    located = _driver_side(records.map_batches(functools.partial(_quarantine_duplicates, ids=ids, audit=audit)))
    return [r["where"] for r in located]


def _new_audit(on_bad_records: str, quarantine_dir: str | None, counter: RowCounter | None) -> _Audit:
    if on_bad_records == "skip" and quarantine_dir is None:
        raise ValueError("on_bad_records=skip needs a quarantine directory to record what it skips")
    return _Audit(on_bad_records, quarantine_dir, uuid.uuid4().hex[:12], counter)


def _report(
    audited: ray.data.Dataset, records: ray.data.Dataset, audit: _Audit, unique_ids: bool = False
) -> ValidationReport:
    """The report of a pass whose good ids are ``audited``; duplicated ids are located in ``records``.
    ``unique_ids``: the ids are unique by construction (an image's path), so no shuffle looks for repeated ones."""
    keep = MAX_DUPLICATES if audit.on_bad_records == "skip" else EXAMPLES
    if unique_ids:
        rows, n_duplicated, duplicated = _count_good(audited), 0, frozenset[str]()
    else:
        rows, n_duplicated, duplicated = _count_ids(audited, keep)
    if n_duplicated:
        if n_duplicated > MAX_DUPLICATES and audit.on_bad_records == "skip":
            raise DataError(f"{n_duplicated} ids occur more than once; too many to skip (at most {MAX_DUPLICATES})")
        located = _locate_duplicates(records, duplicated, replace(audit, counter=None))
        if audit.on_bad_records == "fail":
            raise DataError(f"{n_duplicated} ids occur more than once, e.g. {'; '.join(located[: 2 * EXAMPLES])}")
        rows -= len(located)
    by_file = quarantined(audit.quarantine_dir, audit.token)
    return ValidationReport(rows, sum(by_file.values()), audit.quarantine_dir, duplicated, by_file)


def validate_records(
    records: ray.data.Dataset,
    on_bad_records: str,
    quarantine_dir: str | None,
    counter: RowCounter | None = None,
    unique_ids: bool = False,
) -> ValidationReport:
    """Read every record once; raise (fail) or quarantine (skip) bad records and duplicate ids. ``counter``: where
    the pass counts the records it reads (see :func:`pipelines.progress.counting`)."""
    audit = _new_audit(on_bad_records, quarantine_dir, counter)
    return _report(records.map_batches(functools.partial(_audit, audit=audit)), records, audit)


#: The column of a summarizing pass (:func:`validate_and_summarize`) that holds a batch's good ids, as JSON.
IDS = "ids"


def _audit_summary(batch: Batch, audit: _Audit, summarize: Callable[[Batch], Batch]) -> Batch:
    """One row per batch: its good ids (JSON) and ``summarize`` of its good records (each value ``[1, ...]``)."""
    good = _audit(batch, audit, keep_rows=True)
    if not good:
        return {}
    return {IDS: np.array([json.dumps(good["id"].tolist())], dtype=object), **summarize(good)}


def _explode_ids(batch: Batch) -> Batch:
    return {"id": np.array([i for ids in batch[IDS] for i in json.loads(ids)], dtype=object)}


def _one_pass(
    audited: ray.data.Dataset,
    ids_of: Callable[[ray.data.Dataset], ray.data.Dataset],
    audit: _Audit,
    records: ray.data.Dataset | None = None,
    unique_ids: bool = False,
) -> tuple[ValidationReport, MaterializedDataset]:
    """Run the pass ``audited`` into the object store, then check the ids (``ids_of`` the kept result) there;
    duplicated ids are located in ``records`` (default: the kept result)."""
    with _data_errors_raised(audited):
        kept = audited.materialize()
    if kept.count() == 0:  # no block, no schema: nothing to group
        by_file = quarantined(audit.quarantine_dir, audit.token)
        return ValidationReport(0, sum(by_file.values()), audit.quarantine_dir, frozenset(), by_file), kept
    report = _report(ids_of(kept), kept if records is None else records, replace(audit, counter=None), unique_ids)
    return report, kept


def validate_and_keep(
    records: ray.data.Dataset,
    on_bad_records: str,
    quarantine_dir: str | None,
    counter: RowCounter | None = None,
    unique_ids: bool = False,
) -> tuple[ValidationReport, MaterializedDataset]:
    """:func:`validate_records` in a pass that also keeps every good record (bookkeeping columns included) in the
    object store: the files are read once, and the id check (and the search for duplicates) reads the kept
    records. Returns the report and the kept records, duplicates still among them."""
    audit = _new_audit(on_bad_records, quarantine_dir, counter)
    good = records.map_batches(functools.partial(_audit, audit=audit, keep_rows=True))
    return _one_pass(good, lambda kept: kept.select_columns(["id"]), audit, unique_ids=unique_ids)


def validate_and_summarize(
    records: ray.data.Dataset,
    on_bad_records: str,
    quarantine_dir: str | None,
    summarize: Callable[[Batch], Batch],
    counter: RowCounter | None = None,
    unique_ids: bool = False,
) -> tuple[ValidationReport, MaterializedDataset]:
    """:func:`validate_records` in a pass that also applies ``summarize`` to the good records of every batch
    (e.g. moments: a dict of arrays ``[1, ...]``): the files are read once, and only one row per batch (its
    good ids and its summary) is kept in the object store. Returns the report and the summaries, whose rows
    include the copies of duplicated ids, and whose :data:`IDS` column holds the ids. Duplicated ids (an error,
    or skipped) are located by reading ``records`` again."""
    audit = _new_audit(on_bad_records, quarantine_dir, counter)
    summaries = records.map_batches(functools.partial(_audit_summary, audit=audit, summarize=summarize))
    ids_of = lambda kept: kept.select_columns([IDS]).map_batches(_explode_ids)
    return _one_pass(summaries, ids_of, audit, records, unique_ids)
