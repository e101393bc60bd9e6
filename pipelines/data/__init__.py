"""Data stage: read a corpus with Ray Data into canonical rows ``{id, x[, label]}``, validate, split, normalize.

Every source streams: files are opened in Ray tasks, and the driver only ever holds per-block summaries
(statistics, counts, a bounded list of duplicated ids), never the rows.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import ray.data

from pipelines.bundle import Normalizer
from pipelines.config import DataConfig
from pipelines.data.chunks import FileChunk
from pipelines.data.errors import DataError
from pipelines.data.files import list_files
from pipelines.data.images import SUFFIXES as IMAGE_SUFFIXES
from pipelines.data.images import read_image_records
from pipelines.data.images import sample_shape as image_shape
from pipelines.data.normalize import combine_moments, partial_moments
from pipelines.data.parquet import footer_rows, read_parquet_records
from pipelines.data.records import Batch, clean
from pipelines.data.split import SHARD_KEY, is_validation, shard_keys
from pipelines.data.timeseries import read_series_records
from pipelines.data.validate import (
    IDS,
    ValidationReport,
    validate_and_keep,
    validate_and_summarize,
    validate_records,
)
from pipelines.progress import SILENT_TASK, RowCounter, Task

_READERS = {"images": read_image_records, "timeseries": read_series_records}

__all__ = [
    "SHARD_KEY",
    "Corpus",
    "DataError",
    "Normalizer",
    "ValidationReport",
    "fit_normalizer",
    "load_dataset",
    "normalize_dataset",
    "rows_at_most",
    "sample_shape",
    "split_dataset",
    "validate_and_fit",
    "validate_corpus",
    "with_shard_key",
]


@dataclass
class Corpus:
    """A streaming dataset of canonical rows and the shape of one sample ``x``.

    ``dataset`` holds the good rows ``{"id", "x" [B, *sample_shape] float32, "label"?}``: with
    ``on_bad_records=fail`` a bad record raises :class:`DataError` when reached, with ``skip`` it is left out
    (recorded by :func:`validate_corpus`, which every job runs first). ``records`` is the same stream with
    each record's verdict and provenance (``_error``, ``_file``, ``_row``).
    """

    dataset: ray.data.Dataset
    sample_shape: tuple[int, ...]
    records: ray.data.Dataset
    on_bad_records: str = "fail"
    quarantine_dir: str | None = None
    unique_ids: bool = False
    """Ids unique by construction (an image's path relative to the root): validation looks for no repeats."""
    report: ValidationReport | None = None


def _clean_rows(
    records: ray.data.Dataset, on_bad_records: str, exclude: frozenset[str] = frozenset()
) -> ray.data.Dataset:
    return records.map_batches(functools.partial(clean, on_bad_records=on_bad_records, exclude=exclude))


def load_dataset(
    cfg: DataConfig,
    path: str,
    quarantine_dir: str | None = None,
    for_model: tuple[int, ...] | None = None,
    files: Sequence[FileChunk] | None = None,
) -> Corpus:
    """Open the corpus at ``path`` (lazily: nothing is read but a file listing and one schema).

    ``for_model``: the model's input shape, which Parquet samples are read at (labels are read where the files
    have them, see :func:`read_parquet_records`); ``files``: the input files of a scoring pass's
    shards as chunks (one dataset, however many): Parquet and image files read are just these, a time-series corpus is
    read whole (a series may span files) and keeps the windows whose last row is in them. Derived ids (``FILE:ROW``,
    image names) are relative to ``path``, as in training."""
    paths = None if files is None else [p for chunk in files for p in chunk.paths()]
    if cfg.source == "parquet":
        records, shape = read_parquet_records(path, cfg, for_model, paths)
    else:
        records, shape = _READERS[cfg.source](path, cfg, path, only=files)
    return Corpus(
        _clean_rows(records, cfg.on_bad_records),
        tuple(shape),
        records,
        cfg.on_bad_records,
        quarantine_dir,
        unique_ids=cfg.source == "images",
    )


def sample_shape(cfg: DataConfig, path: str) -> tuple[int, ...]:
    """The shape of one sample of the corpus at ``path``: an image folder's from the settings alone (no listing),
    otherwise read from the first usable file, as in training."""
    return image_shape(cfg) if cfg.source == "images" else load_dataset(cfg, path).sample_shape


def validate_corpus(
    corpus: Corpus, require_records: bool = True, counter: RowCounter | None = None, keep: bool = False
) -> Corpus:
    """One streaming pass over every record (see :mod:`pipelines.data.validate`); returns the corpus with its
    report, whose ``skipped_by_file`` says what each file lost, and with duplicated ids left out when skipping.
    ``counter`` counts the records read, for a progress bar. ``keep``: the same pass keeps the good records in
    the object store, and the returned ``dataset`` reads them there, never the files again.
    Raises :class:`DataError` on bad input (fail), or when ``require_records`` and no good record is left."""
    if keep:
        report, kept = validate_and_keep(
            corpus.records, corpus.on_bad_records, corpus.quarantine_dir, counter, corpus.unique_ids
        )
        return _validated(corpus, report, kept, require_records)
    report = validate_records(corpus.records, corpus.on_bad_records, corpus.quarantine_dir, counter, corpus.unique_ids)
    return _validated(corpus, report, corpus.records, require_records)


def _validated(
    corpus: Corpus, report: ValidationReport, records: ray.data.Dataset, require_records: bool = True
) -> Corpus:
    """``corpus`` with its ``report``; its ``dataset`` the good rows of ``records`` (read again, or kept) but the
    duplicated ids, and its ``records`` the kept ones when they were kept."""
    if require_records and report.records == 0:
        raise DataError(f"no usable records ({report.skipped} skipped, listed in {report.quarantine_dir})")
    dataset = corpus.dataset
    if records is not corpus.records or report.duplicated_ids:
        dataset = _clean_rows(records, corpus.on_bad_records, report.duplicated_ids)
    return replace(corpus, dataset=dataset, records=records, report=report)


def rows_at_most(cfg: DataConfig, path: str) -> int:
    """An upper bound on the records of the corpus at ``path``, known before reading it: the image files, or the
    rows in the Parquet footers (a series has fewer windows than rows). An unreadable footer counts 0 (the file
    is bad)."""
    if cfg.source == "images":
        return len(list_files(path, IMAGE_SUFFIXES))
    files = list_files(path, (".parquet",))
    with ThreadPoolExecutor(max_workers=max(1, min(16, len(files)))) as pool:
        return sum(pool.map(footer_rows, files))


def _select(batch: Batch, val_fraction: float, want_validation: bool) -> Batch:
    keep = is_validation(batch["id"], val_fraction) == want_validation
    return {k: v[keep] for k, v in batch.items()}


def split_dataset(ds: ray.data.Dataset, val_fraction: float) -> tuple[ray.data.Dataset, ray.data.Dataset]:
    """``(train, validation)`` by a stable hash of the id."""
    train = ds.map_batches(functools.partial(_select, val_fraction=val_fraction, want_validation=False))
    val = ds.map_batches(functools.partial(_select, val_fraction=val_fraction, want_validation=True))
    return train, val


def _add_shard_key(batch: Batch) -> Batch:
    return {**batch, SHARD_KEY: shard_keys(batch["id"])}


def with_shard_key(ds: ray.data.Dataset) -> ray.data.Dataset:
    """``ds`` with each row's :data:`SHARD_KEY` (from its id): which training worker owns the row."""
    return ds.map_batches(_add_shard_key)


def _moments(batch: Batch, scope: str) -> Batch:
    if len(batch["x"]) == 0:
        return {}
    return {k: np.expand_dims(v, 0) for k, v in partial_moments(batch["x"], scope).items()}


def _combined(parts: ray.data.Dataset, kind: str, task: Task) -> Normalizer:
    """Reduce a dataset of per-batch moments on the driver (``task`` shows the rows they cover as they arrive)."""
    rows: list[dict[str, Any]] = []
    seen = 0
    for part in parts.iter_batches(batch_size=None, batch_format="numpy"):
        rows += [{k: v[i] for k, v in part.items()} for i in range(len(part["count"]))]
        seen += int(part["count"].sum())
        task.update(seen, status=f"{seen:,} rows")
    return combine_moments(rows, kind)


def fit_normalizer(train: ray.data.Dataset, kind: str, scope: str, task: Task = SILENT_TASK) -> Normalizer:
    """One distributed pass over ``train``: per-batch moments are reduced on the driver (``task`` shows the rows
    they cover as they arrive)."""
    if kind == "none":
        return Normalizer("none")
    return _combined(train.map_batches(functools.partial(_moments, scope=scope), batch_size=4096), kind, task)


def _train_moments(good: Batch, val_fraction: float, scope: str) -> Batch:
    """Moments (each ``[1, ...]``) of the training rows among the good records ``good``."""
    x = good["x"][~is_validation(good["id"], val_fraction)]
    return {k: np.expand_dims(v, 0) for k, v in partial_moments(x, scope).items()}


def validate_and_fit(
    corpus: Corpus,
    val_fraction: float,
    kind: str,
    scope: str,
    keep: bool = False,
    counter: RowCounter | None = None,
) -> tuple[Corpus, Normalizer]:
    """The pass over the corpus before training: :func:`validate_corpus` (with ``keep``: the good records kept in
    the object store, read there from then on) and the normalizer fitted on the training split of the same
    records. One read of the files, except when ids were duplicated and skipped: the pass's moments include
    every copy, so the fit reads the training split again without them.
    Raises :class:`DataError` as :func:`validate_corpus` does."""
    if keep or kind == "none":
        corpus = validate_corpus(corpus, counter=counter, keep=keep)
        return corpus, fit_normalizer(split_dataset(corpus.dataset, val_fraction)[0], kind, scope)
    summarize = functools.partial(_train_moments, val_fraction=val_fraction, scope=scope)
    report, summaries = validate_and_summarize(
        corpus.records, corpus.on_bad_records, corpus.quarantine_dir, summarize, counter, corpus.unique_ids
    )
    corpus = _validated(corpus, report, corpus.records)
    if report.duplicated_ids:
        return corpus, fit_normalizer(split_dataset(corpus.dataset, val_fraction)[0], kind, scope)
    return corpus, _combined(summaries.drop_columns([IDS]), kind, SILENT_TASK)


def _apply(batch: Batch, normalizer: Normalizer) -> Batch:
    return {**batch, "x": normalizer.apply(batch["x"])}


def normalize_dataset(ds: ray.data.Dataset, normalizer: Normalizer) -> ray.data.Dataset:
    """Apply fitted statistics to every row's ``x``."""
    return ds.map_batches(functools.partial(_apply, normalizer=normalizer))
