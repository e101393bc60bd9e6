"""The validation pass: one streaming read of every record before training or scoring starts.

- ``fail``: the first bad file or row raises :class:`DataError` naming it; duplicate ids raise naming where
  each copy is.
- ``skip``: bad records are written (file, row, id, reason) to Parquet under the quarantine directory by the
  tasks that find them, and every copy of a duplicated id is quarantined too (which copy is right is unknown).

Duplicate ids are found with a Ray Data shuffle (``groupby("id").count()``): the driver receives one
summary row per block and at most ``MAX_DUPLICATES`` duplicated ids, never the full id list.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import ray.data

from pipelines.data.errors import DataError, find_in_chain
from pipelines.data.records import ERROR, FILE, ROW, describe, first_error, group_by, quarantine_rows, write_quarantine

MAX_DUPLICATES = 100_000
EXAMPLES = 5


@dataclass
class ValidationReport:
    """What the validation pass found: good records, quarantined records and where they were written."""

    records: int
    skipped: int
    quarantine_dir: str | None
    duplicated_ids: frozenset[str] = frozenset()


def _audit(batch: dict[str, np.ndarray], on_bad_records: str, quarantine_dir: str | None, token: str) -> dict:
    """Raise at the first bad record (fail) or quarantine the bad ones (skip); pass on the good ids."""
    if on_bad_records == "fail" and (message := first_error(batch)):
        raise DataError(message)
    bad = batch[ERROR] != ""
    if bad.any():
        write_quarantine(quarantine_rows(batch, bad), quarantine_dir, token)
    return {"id": batch["id"][~bad]}


def _summarize(batch: dict[str, np.ndarray], keep: int) -> dict[str, np.ndarray]:
    """Per block of ``(id, count)``: rows, and up to ``keep`` duplicated ids (JSON)."""
    counts = batch["count()"]
    duplicated = batch["id"][counts > 1]
    return {
        "rows": np.array([counts.sum()]),
        "duplicated": np.array([len(duplicated)]),
        "ids": np.array([json.dumps(duplicated[:keep].tolist())], dtype=object),
    }


def _quarantine_duplicates(
    batch: dict[str, np.ndarray], ids: frozenset, on_bad_records: str, quarantine_dir: str | None, token: str
) -> dict[str, np.ndarray]:
    hit = np.array([i in ids for i in batch["id"]], dtype=bool) & (batch[ERROR] == "")
    if on_bad_records == "skip" and hit.any():
        table = quarantine_rows({**batch, ERROR: np.full(len(hit), "duplicate id", dtype=object)}, hit)
        write_quarantine(table, quarantine_dir, token)
    return {
        "where": np.array(
            [
                describe(f, r, i, "duplicate id")
                for f, r, i in zip(batch[FILE][hit], batch[ROW][hit], batch["id"][hit], strict=True)
            ],
            dtype=object,
        )
    }


def _driver_side(run: Iterator) -> list:
    """Materialize a small result, turning a :class:`DataError` raised in a Ray task into one raised here."""
    try:
        return list(run)
    except DataError:
        raise
    except Exception as exc:
        found_error = find_in_chain(exc, DataError)
        if found_error is not None:
            raise DataError(str(found_error)) from None
        # Ray Data keeps only the text of a task's exception (its traceback ends "...DataError: MESSAGE").
        found = re.search(r"\bDataError: (.+)", str(exc))
        if found:
            raise DataError(found.group(1).strip()) from None
        raise


def quarantined(quarantine_dir: str | None, token: str) -> int:
    """Rows this validation pass wrote to the quarantine (read from Parquet footers only)."""
    if quarantine_dir is None or not Path(quarantine_dir).is_dir():
        return 0
    return sum(pq.ParquetFile(p).metadata.num_rows for p in Path(quarantine_dir).glob(f"quarantine-{token}-*.parquet"))


def validate_records(records: ray.data.Dataset, on_bad_records: str, quarantine_dir: str | None) -> ValidationReport:
    """Read every record once; raise (fail) or quarantine (skip) bad records and duplicate ids."""
    if on_bad_records == "skip" and quarantine_dir is None:
        raise ValueError("on_bad_records=skip needs a quarantine directory to record what it skips")
    token = uuid.uuid4().hex[:12]
    keep = MAX_DUPLICATES if on_bad_records == "skip" else EXAMPLES
    audit = {"on_bad_records": on_bad_records, "quarantine_dir": quarantine_dir, "token": token}
    summary = _driver_side(
        group_by(records.map_batches(_audit, fn_kwargs=audit), "id")
        .count()
        .map_batches(_summarize, fn_kwargs={"keep": keep})
        .iter_rows()
    )
    rows = int(sum(s["rows"] for s in summary))
    n_duplicated = int(sum(s["duplicated"] for s in summary))
    duplicated = frozenset(i for s in summary for i in json.loads(s["ids"]))
    if n_duplicated:
        if n_duplicated > MAX_DUPLICATES and on_bad_records == "skip":
            raise DataError(f"{n_duplicated} ids occur more than once; too many to skip (at most {MAX_DUPLICATES})")
        located = _driver_side(
            records.map_batches(_quarantine_duplicates, fn_kwargs={"ids": duplicated, **audit}).iter_rows()
        )
        if on_bad_records == "fail":
            where = "; ".join(r["where"] for r in located[: 2 * EXAMPLES])
            raise DataError(f"{n_duplicated} ids occur more than once, e.g. {where}")
        rows -= len(located)
    return ValidationReport(rows, quarantined(quarantine_dir, token), quarantine_dir, duplicated)
