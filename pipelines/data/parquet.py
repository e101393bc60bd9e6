"""Parquet shards, one sample per row: a fixed-length list column, or a set of numeric feature columns (tabular).

Files are opened inside Ray tasks (never on the driver, apart from the first schema); a file that is not
Parquet, is truncated or lacks a column becomes one error record naming it, a bad row one naming its row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc  # its kernels (list_value_length, ...) are made at import time, unseen by mypy
import pyarrow.parquet as pq
import ray.data

from pipelines.config import DataConfig
from pipelines.data.errors import DataError
from pipelines.data.files import list_files, open_file, relative_names
from pipelines.data.records import Batch, file_error, make_records, read_in_tasks

ROWS_PER_BATCH = 4096


class ColumnCheck(NamedTuple):
    """A column type check: a predicate on the arrow type and the words an error uses for what was expected."""

    accepts: Callable[[pa.DataType], bool]
    expected: str


NUMBER = ColumnCheck(lambda t: pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t), "a number")
ID = ColumnCheck(
    lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t), "a string or integer"
)
VECTOR = ColumnCheck(
    lambda t: (
        (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t))
        and NUMBER.accepts(t.value_type)
    ),
    "a list of numbers",
)
ANY = ColumnCheck(lambda t: True, "anything")


def schema_problem(schema: pa.Schema, required: dict[str, ColumnCheck]) -> str | None:
    """Why a file's schema cannot be read (a missing column or one of the wrong type), or None."""
    for column, (ok, expected) in required.items():
        if column not in schema.names:
            return f"column {column!r} is missing (columns: {', '.join(schema.names)})"
        if not ok(schema.field(column).type):
            return f"column {column!r} has type {schema.field(column).type}, expected {expected}"
    return None


def iter_parquet(
    path: str,
    required: dict[str, ColumnCheck],
    convert: Callable[[pa.RecordBatch, int], Batch],
    on_file_error: Callable[[str, int, int], Batch],
) -> Iterator[Batch]:
    """Record batches of one file: ``convert(batch, first_row)`` per batch, ``on_file_error(reason, row, rows)``
    when the file cannot be opened, lacks a column, or breaks off part way (a truncated or corrupt page);
    ``rows`` is how many input rows the error stands for, from the footer (-1 when not even that is readable)."""
    try:
        pf = pq.ParquetFile(open_file(path))
    except Exception as exc:
        yield on_file_error(f"not a readable Parquet file ({type(exc).__name__}: {exc})", -1, -1)
        return
    total = pf.metadata.num_rows
    if problem := schema_problem(pf.schema_arrow, required):
        yield on_file_error(problem, -1, total)
        return
    batches, offset = pf.iter_batches(batch_size=ROWS_PER_BATCH, columns=list(required)), 0
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            reason = f"unreadable from row {offset} on ({type(exc).__name__}: {exc})"
            yield on_file_error(reason, offset, total - offset)
            return
        yield convert(batch, offset)
        offset += batch.num_rows


def to_float(column: pa.Array) -> np.ndarray:
    """A numeric arrow column as float64 with NaN for nulls."""
    return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)


def read_ids(batch: pa.RecordBatch, cfg: DataConfig, name: str, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids [B] str, errors [B])``: the id column as strings, or ``NAME:ROW`` when ids are derived."""
    n = batch.num_rows
    if cfg.id_column is None:
        return np.array([f"{name}:{offset + i}" for i in range(n)], dtype=object), np.full(n, "", dtype=object)
    ids = np.array(pc.cast(batch.column(cfg.id_column), pa.string()).to_pylist(), dtype=object)
    missing = np.array([i is None or i == "" for i in ids], dtype=bool)
    ids[missing] = ""
    return ids, np.where(missing, "missing id", "").astype(object)


def _vector_x(batch: pa.RecordBatch, cfg: DataConfig, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x [B, length] float, errors [B])`` from the list column; wrong-length and null vectors are errors."""
    column = batch.column(cfg.vector_column)
    value_lengths = pc.list_value_length(column)  # type: ignore[attr-defined]  # made at import
    lengths = pc.fill_null(value_lengths, -1).to_numpy(zero_copy_only=False)
    x = np.zeros((batch.num_rows, length), np.float64)
    good = lengths == length
    if good.any():
        values = pc.list_flatten(column.filter(pa.array(good)))  # type: ignore[attr-defined]  # made at import
        x[good] = to_float(values).reshape(-1, length)
    errors = np.array(
        [
            "" if ok else ("vector is null" if n < 0 else f"vector has length {n}, expected {length}")
            for ok, n in zip(good, lengths, strict=True)
        ],
        dtype=object,
    )
    return x, errors


def _tabular_x(batch: pa.RecordBatch, cfg: DataConfig, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x [B, F] float, errors [B])`` with one column per feature (``cfg.feature_columns``, set)."""
    assert cfg.feature_columns, "the tabular layout is chosen only when feature_columns is set"
    return np.column_stack([to_float(batch.column(c)) for c in cfg.feature_columns]), np.full(
        batch.num_rows, "", object
    )


def finite_errors(x: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Mark rows of ``x`` [B, ...] holding a null, NaN or infinite value (keeping earlier errors)."""
    flat = x.reshape(len(x), -1)
    bad = ~np.isfinite(flat).all(axis=1) & (errors == "")
    errors = errors.copy()
    errors[bad] = "null, NaN or infinite value"
    return errors


def required_columns(cfg: DataConfig, with_label: bool) -> dict[str, ColumnCheck]:
    """The columns a file must have, each with its type check: id, features (or the vector), label."""
    required: dict[str, ColumnCheck] = {}
    if cfg.id_column:
        required[cfg.id_column] = ID
    if cfg.feature_columns:
        required.update(dict.fromkeys(cfg.feature_columns, NUMBER))
    else:
        required[cfg.vector_column] = VECTOR
    if with_label and cfg.label_column:
        required[cfg.label_column] = ANY
    return required


def _records(items: Batch, cfg: DataConfig, length: int, with_label: bool) -> Iterator[Batch]:
    to_x = _tabular_x if cfg.feature_columns else _vector_x
    required = required_columns(cfg, with_label)
    for path, name in zip(items["path"], items["name"], strict=True):

        def convert(batch: pa.RecordBatch, offset: int, path: str = path, name: str = name) -> Batch:
            ids, errors = read_ids(batch, cfg, name, offset)
            x, x_errors = to_x(batch, cfg, length)
            errors = finite_errors(x, np.where(errors == "", x_errors, errors))
            x[errors != ""] = 0.0
            labels = batch.column(cfg.label_column).to_numpy(zero_copy_only=False) if with_label else None
            return make_records(ids, x, errors, path, np.arange(offset, offset + batch.num_rows), labels)

        def on_file_error(reason: str, row: int, rows: int, path: str = path) -> Batch:
            return file_error(path, reason, (length,), with_label, row, rows)

        yield from iter_parquet(path, required, convert, on_file_error)


def first_readable(files: list[str]) -> tuple[str, pq.ParquetFile]:
    """The first file that opens as Parquet (to take the schema from); bad ones are reported by the tasks."""
    for f in files:
        try:
            return f, pq.ParquetFile(open_file(f))
        except Exception:
            continue
    raise DataError(f"none of the {len(files)} Parquet files under the input path can be opened (first: {files[0]})")


def _first_length(pf: pq.ParquetFile, cfg: DataConfig) -> int | None:
    """A fixed-size list's size, or the first non-null vector's length in ``pf``; None when all are null."""
    kind = pf.schema_arrow.field(cfg.vector_column).type
    if pa.types.is_fixed_size_list(kind):
        return int(kind.list_size)
    for batch in pf.iter_batches(batch_size=ROWS_PER_BATCH, columns=[cfg.vector_column]):
        lengths = pc.drop_null(pc.list_value_length(batch.column(0)))  # type: ignore[attr-defined]  # made at import
        if len(lengths):
            return int(lengths[0].as_py())
    return None


def sample_length(files: list[str], cfg: DataConfig) -> tuple[str, int]:
    """``(file, length of one sample)``: the feature count, or the vector length of the first file with a
    usable vector column (a list of numbers with a non-null vector). Files that cannot be opened, lack the
    column or hold it with another type are passed over here and reported by the tasks, file by file."""
    if cfg.feature_columns:
        return files[0], len(cfg.feature_columns)
    for f in files:
        try:
            pf = pq.ParquetFile(open_file(f))
        except Exception:
            continue
        if schema_problem(pf.schema_arrow, {cfg.vector_column: VECTOR}) is None:
            length = _first_length(pf, cfg)
            if length is not None:
                return f, length
    raise DataError(
        f"no file under the input path (first: {files[0]}) has a column {cfg.vector_column!r} holding a "
        "non-null list of numbers to take the sample length from"
    )


def footer_rows(path: str) -> int:
    """The rows a Parquet file's footer declares (0 for a file that cannot be opened: the tasks report it)."""
    try:
        with open_file(path) as f:
            return int(pq.ParquetFile(f).metadata.num_rows)
    except Exception:
        return 0


def _column_names(path: str) -> list[str]:
    """The columns of a Parquet file; none for a file that cannot be opened (the tasks report it)."""
    try:
        return list(pq.ParquetFile(open_file(path)).schema_arrow.names)
    except Exception:
        return []


def read_parquet_records(
    path: str,
    cfg: DataConfig,
    for_model: tuple[int, ...] | None = None,
    files: list[str] | None = None,
) -> tuple[ray.data.Dataset, tuple[int, ...]]:
    """Records of every shard under ``path`` (or of ``files``, some of them) and the sample shape ``(D,)``; derived
    ids name files relative to ``path``. ``for_model``: the model's input shape; samples are read flat at its size
    whatever the files hold (a shard of other lengths is bad row by row, wherever it sorts); without it the length
    is the first usable file's. The label column is read when the first file has one (the pictures and
    labelled metrics of training and scoring; a later file without it is then bad)."""
    files = list_files(path, (".parquet",)) if files is None else files
    first, length = (files[0], int(np.prod(for_model))) if for_model is not None else sample_length(files, cfg)
    with_label = bool(cfg.label_column) and cfg.label_column in _column_names(first)
    items = [{"path": f, "name": n} for f, n in zip(files, relative_names(files, path), strict=True)]
    return read_in_tasks(items, _records, {"cfg": cfg, "length": length, "with_label": with_label}), (length,)
