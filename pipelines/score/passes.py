"""One scoring pass: a group of input shards streamed through one pool of :class:`Scorer` actors.

Each shard's rows are tagged with the shard's index, written to its own staged output file as they arrive, and
the shard is committed (file renamed, marker written) as soon as its last row is in.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from pipelines.config import DataConfig, ScoreConfig
from pipelines.data import Corpus, DataError, load_dataset, validate_corpus
from pipelines.data.records import QUARANTINE_SCHEMA, write_quarantine
from pipelines.score import publish
from pipelines.score.actor import SHARD, Scorer
from pipelines.score.drift import ScoreSketch
from pipelines.tracking import ResolvedModel


def output_schema(mode: str, id_type: pa.DataType, embed_dim: int) -> pa.Schema:
    """Columns of a scored shard for ``mode``."""
    cols = [pa.field("id", id_type)]
    if mode in ("score", "both"):
        cols += [pa.field("score", pa.float32()), pa.field("is_anomaly", pa.bool_())]
    if mode in ("embed", "both"):
        cols += [pa.field("embedding", pa.list_(pa.float32(), embed_dim))]
    return pa.schema([*cols, pa.field("model_name", pa.string()), pa.field("model_version", pa.string())])


def id_type(shard: publish.Shard, cfg: DataConfig) -> pa.DataType:
    """The output id type: the input id column's (strings as ``string``); derived ids are strings."""
    column = getattr(cfg, "id_column", "id")
    if cfg.source != "parquet" or not column:
        return pa.string()
    schema = pq.read_schema(shard.path) if "://" not in shard.path else None
    t = schema.field(column).type if schema is not None and column in schema.names else pa.string()
    return pa.string() if pa.types.is_string(t) or pa.types.is_large_string(t) else t


@dataclass
class ScoreJob:
    """What every pass of one scoring run shares."""

    model: ResolvedModel
    data_cfg: DataConfig
    settings: ScoreConfig
    schema: pa.Schema
    edges: np.ndarray | None
    """Score sketch bin edges (None in ``embed`` mode, or for a model without a validation baseline)."""
    staging: Path
    identity: dict[str, str]
    files: ray.ObjectRef[dict[str, bytes]]
    """The pinned model's bundle files in the object store, which every actor loads from."""
    root: str
    """The corpus root the user gave: ids derived from file names are relative to it, as in training."""

    def table(self, out: dict[str, np.ndarray], sel: np.ndarray) -> pa.Table:
        """The rows of a scored batch that ``sel`` picks, as an output table."""
        cols: dict[str, Any] = {"id": pa.array(out["id"][sel]).cast(self.schema.field("id").type)}
        n = int(sel.sum())
        if "score" in self.schema.names:
            cols["score"] = pa.array(out["score"][sel].astype(np.float32))
            cols["is_anomaly"] = pa.array(out["is_anomaly"][sel].astype(bool))
        if "embedding" in self.schema.names:
            emb = np.ascontiguousarray(out["embedding"][sel], np.float32)
            cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
        cols["model_name"] = pa.array([self.model.name] * n, pa.string())
        cols["model_version"] = pa.array([self.model.version] * n, pa.string())
        return pa.table(cols, schema=self.schema)

    def empty_sketch(self) -> ScoreSketch | None:
        return ScoreSketch.empty(self.edges) if self.edges is not None else None

    def marker(self, sketch: ScoreSketch | None, anomalies: int, seconds: float, skipped: int) -> dict[str, Any]:
        """The per-shard summary a committed shard's marker holds (no rows: counts and a score sketch)."""
        return {
            **self.identity,
            "scored_at": datetime.now(UTC).isoformat(),
            "seconds": seconds,
            "anomalies": anomalies,
            "sketch": sketch.to_dict() if sketch is not None else None,
            "skipped": skipped,
        }

    def quarantine_dir(self, shard: publish.Shard) -> Path:
        return self.staging / "_quarantine" / shard.name.replace("/", "__")


@dataclass
class Warmup:
    """Seconds from the start of each pass to its first scored batch (actor pool start, first reads) and the
    rows that batch held: what separates the steady rate from the end-to-end one."""

    seconds: float = 0.0
    rows: int = 0

    def steady_rows_per_s(self, rows: int, seconds: float) -> float:
        return (rows - self.rows) / (seconds - self.seconds) if seconds > self.seconds and rows > self.rows else 0.0


@dataclass
class _ShardOutput:
    """One shard's output while its rows arrive."""

    writer: publish.ShardWriter
    sketch: ScoreSketch | None
    skipped: int
    started: float
    """When the pass that scores it started (``perf_counter``)."""
    anomalies: int = 0

    def add(self, job: ScoreJob, out: dict[str, np.ndarray], sel: np.ndarray) -> None:
        self.writer.write(job.table(out, sel))
        if self.sketch is not None:
            self.sketch.add(out["score"][sel])
            self.anomalies += int(out["is_anomaly"][sel].sum())


def _open_shard(job: ScoreJob, shard: publish.Shard) -> Corpus:
    """A shard's canonical rows. With ``on_bad_records=skip`` a validation pass first quarantines its bad
    records under ``_quarantine/`` of the partition (and counts them); with ``fail`` the first bad record
    stops the job with an error naming the file and row."""
    if job.data_cfg.on_bad_records != "skip":
        return load_dataset(job.data_cfg, shard.path, root=job.root)
    quarantine = job.quarantine_dir(shard)
    shutil.rmtree(quarantine, ignore_errors=True)
    return validate_corpus(load_dataset(job.data_cfg, shard.path, quarantine_dir=str(quarantine), root=job.root))


def _quarantine_unreadable(job: ScoreJob, shard: publish.Shard) -> dict[str, Any]:
    """A Parquet shard whose footer cannot be read: an error naming it (``fail``), or one quarantine record
    for the whole file and an empty committed output shard (``skip``)."""
    reason = "not a readable Parquet file (bad footer or truncated)"
    if job.data_cfg.on_bad_records != "skip":
        raise DataError(f"{shard.path}: {reason}")
    record = {
        "file": [shard.path],
        "row": pa.array([-1], pa.int64()),
        "id": pa.array([None], pa.string()),
        "reason": [reason],
    }
    write_quarantine(pa.table(record, schema=QUARANTINE_SCHEMA), str(job.quarantine_dir(shard)), "unreadable")
    return publish.ShardWriter(job.staging, shard, job.schema).commit(job.marker(job.empty_sketch(), 0, 0.0, skipped=1))


def _tag(batch: dict[str, np.ndarray], shard: int) -> dict[str, np.ndarray]:
    return {"id": batch["id"], "x": batch["x"], SHARD: np.full(len(batch["id"]), shard, np.int32)}


def _gpus(settings: ScoreConfig) -> float:
    if settings.num_gpus is not None:
        return settings.num_gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


class ScorePass:
    """Streams ``shards`` through one actor pool; :meth:`run` returns the committed shards' markers."""

    def __init__(self, job: ScoreJob, shards: list[publish.Shard], log: Callable[[str], None]) -> None:
        self.job, self.log = job, log
        unreadable = [s for s in shards if s.rows is None and job.data_cfg.source == "parquet"]
        self.markers = [_quarantine_unreadable(job, s) for s in unreadable]
        self.shards = [s for s in shards if s not in unreadable]
        self.corpora = [_open_shard(job, s) for s in self.shards]
        self.outputs: dict[int, _ShardOutput] = {}
        self.started = time.perf_counter()

    def _skipped(self, i: int) -> int:
        report = self.corpora[i].report
        return report.skipped if report is not None else 0

    def _expected_rows(self, i: int) -> int | None:
        """Good rows shard ``i`` will yield; None for derived sources (windows, images), known only at the end."""
        rows = self.shards[i].rows
        return None if rows is None else rows - self._skipped(i)

    def _scored_batches(self) -> ray.data.Dataset:
        parts = [
            c.dataset.select_columns(["id", "x"]).map_batches(functools.partial(_tag, shard=i))
            for i, c in enumerate(self.corpora)
        ]
        ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        ds.context.execution_options.preserve_order = True  # per-shard row order is the input's
        s = self.job.settings
        return ds.map_batches(
            Scorer,
            fn_constructor_kwargs={"bundle_files": self.job.files, "batch_size": s.batch_size},
            batch_size=None,
            compute=ray.data.ActorPoolStrategy(size=s.concurrency),
            num_cpus=s.num_cpus,
            num_gpus=_gpus(s),
        )

    def run(self, warmup: Warmup) -> list[dict[str, Any]]:
        if not self.shards:
            return self.markers
        self.started = time.perf_counter()
        try:
            for b, out in enumerate(self._scored_batches().iter_batches(batch_size=None, batch_format="numpy")):
                if b == 0:
                    warmup.seconds += time.perf_counter() - self.started
                    warmup.rows += len(out[SHARD])
                self._consume(out)
            for i in sorted(self.outputs):  # row counts not known ahead (derived sources: windows, images)
                self._commit(i)
        finally:
            for output in self.outputs.values():
                output.writer.abort()
        return self.markers

    def _consume(self, out: dict[str, np.ndarray]) -> None:
        """Write a scored batch's rows to their shards' files; commit each shard whose last row arrived."""
        tags = out[SHARD]
        for i in np.unique(tags).tolist():
            sel = tags == i
            if i not in self.outputs:
                writer = publish.ShardWriter(self.job.staging, self.shards[i], self.job.schema)
                self.outputs[i] = _ShardOutput(writer, self.job.empty_sketch(), self._skipped(i), self.started)
            self.outputs[i].add(self.job, out, sel)
            if self.outputs[i].writer.rows == self._expected_rows(i):
                self._commit(i)

    def _commit(self, i: int) -> None:
        output = self.outputs.pop(i)
        seconds = time.perf_counter() - output.started
        marker = self.job.marker(output.sketch, output.anomalies, seconds, output.skipped)
        self.markers.append(output.writer.commit(marker))
        self.log(f"  shard {self.shards[i].name}: {self.markers[-1]['output_rows']} rows")
