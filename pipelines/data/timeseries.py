"""Time series: Parquet rows ``(series, timestamp, values...)`` cut into sliding windows ``x [T, F]`` per series.

Rows are read in Ray tasks, grouped by series with a Ray Data shuffle (``groupby(...).map_groups``), so a
series spread over several files is put back together and no window ever crosses two series. Within a
series, rows are ordered by timestamp; a window never spans a bad row either. Window ids are
``SERIES@START`` (ISO time for timestamp columns, the number otherwise), e.g. ``series-7@2024-01-01T00:00:00``.

Windows start every ``stride`` rows and, where that leaves rows after the last full window, one more window
ends at the series' last row (:func:`window_starts`): with ``stride <= window`` every row of a series of at
least ``window`` rows is in at least one window, and a tail row is scored by that end-aligned window. A series
of ``n`` rows gives ``ceil((n - window) / stride) + 1`` windows. Quarantined records count the input rows they
stand for (a bad row 1, a too-short series its rows, a window spoiled by a bad row 0: the bad row is counted).

A window is located at its last row (``_file``, ``_row``): scoring shards a corpus by file and a window that
spans two files belongs to the file holding its end, so it is scored once, and when a later file extends a
series, the windows the new rows complete belong to the new file while those already scored stay as they were.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from pipelines.config import DataConfig
from pipelines.data.chunks import FileChunk
from pipelines.data.files import list_files
from pipelines.data.parquet import ANY, NUMBER, ColumnCheck, finite_errors, first_readable, iter_parquet, to_float
from pipelines.data.records import ERROR, FILE, ROW, ROWS, Batch, file_error, group_by, make_records, read_in_tasks

SERIES, TIME, VALUES = "_series", "_time", "_values"
TIMELIKE = ColumnCheck(lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t), "a timestamp or date")
SERIES_ID = ColumnCheck(
    lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t),
    "a string or integer",
)


def required_columns(cfg: DataConfig, datetime: bool, with_label: bool) -> dict[str, ColumnCheck]:
    """The columns a file must have, each with its type check: series, timestamp, values, label."""
    required = {cfg.series_column: SERIES_ID, cfg.timestamp_column: TIMELIKE if datetime else NUMBER}
    required.update(dict.fromkeys(cfg.value_columns, NUMBER))
    if with_label and cfg.label_column:
        required[cfg.label_column] = ANY
    return required


def _raw_rows(items: Batch, cfg: DataConfig, datetime: bool, with_label: bool) -> Iterator[Batch]:
    """Rows of each file as ``{_series, _time, _values [B, F], label?, _error, _file, _row}``."""
    required = required_columns(cfg, datetime, with_label)
    for path in items["path"]:

        def convert(batch: pa.RecordBatch, offset: int, path: str = path) -> Batch:
            series = np.array(pc.cast(batch.column(cfg.series_column), pa.string()).to_pylist(), dtype=object)
            time = batch.column(cfg.timestamp_column)
            missing_time = time.is_null().to_numpy(zero_copy_only=False)
            time = pc.cast(pc.cast(time, pa.timestamp("ns")), pa.int64()) if datetime else pc.cast(time, pa.float64())
            time = pc.fill_null(time, 0).to_numpy(zero_copy_only=False).astype(np.float64 if not datetime else np.int64)
            values = np.column_stack([to_float(batch.column(c)) for c in cfg.value_columns])
            errors = np.where(
                [s is None for s in series], "missing series id", np.where(missing_time, "missing timestamp", "")
            ).astype(object)
            errors = finite_errors(values, errors)
            values[errors != ""] = 0.0
            series[[s is None for s in series]] = ""
            rows = {
                SERIES: series,
                TIME: time,
                VALUES: values,
                ERROR: errors,
                FILE: np.full(batch.num_rows, path, dtype=object),
                ROW: np.arange(offset, offset + batch.num_rows),
                ROWS: np.ones(batch.num_rows, np.int64),
            }
            if with_label:
                rows["label"] = np.nan_to_num(to_float(batch.column(cfg.label_column)))
            return rows

        def on_file_error(reason: str, row: int, rows: int, path: str = path) -> Batch:
            rec = file_error(path, reason, (len(cfg.value_columns),), with_label, row, rows)
            out = {
                SERIES: np.array([""], dtype=object),
                TIME: np.zeros(1, np.int64 if datetime else np.float64),
                VALUES: rec["x"],
                ERROR: rec[ERROR],
                FILE: rec[FILE],
                ROW: rec[ROW],
                ROWS: rec[ROWS],
            }
            if with_label:
                out["label"] = np.zeros(1)
            return out

        yield from iter_parquet(path, required, convert, on_file_error)


def _start_label(t: np.integer[Any] | np.floating[Any], datetime: bool) -> str:
    if datetime:
        return pd.Timestamp(int(t)).isoformat()
    return str(int(t)) if float(t).is_integer() else repr(float(t))


def _by_time(group: Batch) -> tuple[Batch, np.ndarray]:
    """The rows of one series ordered by timestamp, and each row's error (a repeated timestamp is one)."""
    order = np.argsort(group[TIME], kind="stable")
    g = {k: v[order] for k, v in group.items()}
    errors = g[ERROR].copy()
    repeated = np.flatnonzero(np.diff(g[TIME]) == 0) + 1
    errors[repeated[errors[repeated] == ""]] = "duplicate timestamp in this series"
    return g, errors


def window_starts(n: int, window: int, stride: int) -> np.ndarray:
    """First rows of the windows of a series of ``n >= window`` rows: every ``stride`` rows from 0, plus one
    window aligned to the series' end (start ``n - window``) when the stride leaves rows after the last full
    window, so no tail row goes unscored. Such a tail row's score is that end-aligned window's (the only window
    holding it); the end-aligned window overlaps the one before it by more than ``window - stride`` rows."""
    starts = np.arange(0, n - window + 1, stride)
    if starts[-1] + window < n:
        starts = np.append(starts, n - window)
    return starts


def _windows(group: Batch, cfg: DataConfig, datetime: bool, with_label: bool) -> Batch:
    """All windows ``[W, T, F]`` of one series, plus error records for its bad rows and the windows they spoil."""
    t_len, stride = cfg.window, cfg.stride
    g, errors = _by_time(group)
    series, n = g[SERIES][0], len(errors)
    bad = errors != ""
    ids: list[str] = []
    x: list[np.ndarray] = []
    errs: list[str] = []
    files: list[str] = []
    rows: list[int] = []
    labels: list[Any] = []
    counts: list[int] = []

    def emit(id_: str, xs: np.ndarray, err: str, i: int | np.integer[Any], label: Any, count: int = 0) -> None:
        """One record: window (or error) ``id_`` of values ``xs``, located at the series' ``i``-th row, standing
        for ``count`` input rows when quarantined (windows: 0, the bad rows they overlap are counted)."""
        ids.append(id_)
        x.append(xs)
        errs.append(err)
        files.append(g[FILE][i])
        rows.append(g[ROW][i])
        labels.append(label)
        counts.append(count)

    shape = (t_len, len(cfg.value_columns))
    for i in np.flatnonzero(bad):
        emit(series, np.zeros(shape, np.float32), errors[i], i, 0, int(g[ROWS][i]))
    if series and n < t_len:
        sources = ", ".join(sorted(set(g[FILE]))[:3])
        emit(
            series,
            np.zeros(shape, np.float32),
            f"series {series!r} has {n} rows (in {sources}), fewer than one window of {t_len}",
            0,
            0,
            int((~bad).sum()),
        )
    elif series:
        starts = window_starts(n, t_len, stride)
        spoiled = np.concatenate([[0], np.cumsum(bad)])
        for s in starts:
            window_id = f"{series}@{_start_label(g[TIME][s], datetime)}"
            n_bad = spoiled[s + t_len] - spoiled[s]
            err = f"window overlaps {n_bad} bad row(s) of series {series!r}" if n_bad else ""
            label = g["label"][s : s + t_len].max() if with_label else 0
            xs = g[VALUES][s : s + t_len] if not n_bad else np.zeros(shape, np.float32)
            emit(window_id, xs, err, s + t_len - 1, label)
    if not ids:
        return {}
    return make_records(
        ids,
        np.stack(x),
        errs,
        np.array(files, dtype=object),
        rows,
        np.asarray(labels, dtype=np.int64) if with_label else None,
        counts,
    )


def _located_in(batch: Batch, files: frozenset[str]) -> Batch:
    keep = np.array([f in files for f in batch[FILE]], dtype=bool)
    return {k: v[keep] for k, v in batch.items()} if keep.any() else {}


def read_series_records(
    path: str, cfg: DataConfig, root: str, only: Sequence[FileChunk] | None = None
) -> tuple[ray.data.Dataset, tuple[int, ...]]:
    """Window records of every series under ``path`` and the sample shape ``(T, F)``; with ``only`` (the files
    of a scoring pass's shards), every file is still read (a series may span files) but only the records located in
    ``only`` are kept. Window ids come from the series and the window's position, never from file names, so
    ``root`` is not needed."""
    files = list_files(path, (".parquet",))
    schema = first_readable(files)[1].schema_arrow
    datetime = cfg.timestamp_column in schema.names and TIMELIKE.accepts(schema.field(cfg.timestamp_column).type)
    with_label = bool(cfg.label_column) and cfg.label_column in schema.names
    kwargs = {"cfg": cfg, "datetime": datetime, "with_label": with_label}
    rows = read_in_tasks([{"path": f} for f in files], _raw_rows, kwargs)
    to_windows = functools.partial(_windows, cfg=cfg, datetime=datetime, with_label=with_label)
    windows = group_by(rows, SERIES).map_groups(to_windows, batch_format="numpy")
    if only is not None:
        windows = windows.map_batches(
            functools.partial(_located_in, files=frozenset(p for c in only for p in c.paths())), batch_format="numpy"
        )
    return windows, (cfg.window, len(cfg.value_columns))
