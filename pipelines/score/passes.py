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
from pipelines.data import Corpus, load_dataset, validate_parts
from pipelines.data.records import quarantine_folder
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
    input_shape: tuple[int, ...]
    """The model's input shape: Parquet samples are read at its size, so a shard of other lengths is bad."""

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

    @property
    def quarantine_dir(self) -> Path:
        """Where bad input records go: ``_quarantine/`` of the partition, one folder per input file."""
        return self.staging / "_quarantine"


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


def open_shards(job: ScoreJob, shards: list[publish.Shard]) -> list[Corpus]:
    """The canonical rows of each shard to score, after one validation pass over all of them (the one training
    runs: :func:`pipelines.data.validate_parts`), before anything is scored or published.

    ``fail``: the first bad file or row, or an id repeated across the shards, raises :class:`DataError` naming
    it. ``skip``: bad files and rows are quarantined under ``_quarantine/`` of the partition with their reason
    and input row count (records an earlier, killed attempt wrote for these shards are replaced), and each
    shard keeps its good rows, possibly none."""
    if not shards:
        return []
    if job.data_cfg.source == "parquet":
        for s in shards:
            shutil.rmtree(job.quarantine_dir / quarantine_folder(s.path), ignore_errors=True)
    else:  # one shard: the whole corpus
        shutil.rmtree(job.quarantine_dir, ignore_errors=True)
    parts = [
        load_dataset(
            job.data_cfg, s.path, quarantine_dir=str(job.quarantine_dir), root=job.root, for_model=job.input_shape
        )
        for s in shards
    ]
    return validate_parts(parts)


def skipped_rows(job: ScoreJob, corpus: Corpus, shard: publish.Shard) -> int:
    """Input rows of ``shard`` the validation pass quarantined (a whole-corpus shard: all of them)."""
    report = corpus.report
    if report is None:
        return 0
    return report.skipped_by_file.get(shard.path, 0) if job.data_cfg.source == "parquet" else report.skipped


def _tag(batch: dict[str, np.ndarray], shard: int) -> dict[str, np.ndarray]:
    """The id and sample of each row, tagged with its shard's index (an empty block stays empty)."""
    if "id" not in batch:
        return {}
    return {"id": batch["id"], "x": batch["x"], SHARD: np.full(len(batch["id"]), shard, np.int32)}


def _gpus(settings: ScoreConfig) -> float:
    if settings.num_gpus is not None:
        return settings.num_gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


class ScorePass:
    """Streams ``shards`` (validated: :func:`open_shards` gives their ``corpora``) through one actor pool;
    :meth:`run` returns the committed shards' markers, one per shard, a shard without good rows included."""

    def __init__(
        self, job: ScoreJob, shards: list[publish.Shard], corpora: list[Corpus], log: Callable[[str], None]
    ) -> None:
        self.job, self.log = job, log
        self.shards, self.corpora = shards, corpora
        self.markers: list[dict[str, Any]] = []
        self.outputs: dict[int, _ShardOutput] = {}
        self.committed: set[int] = set()
        self.started = time.perf_counter()

    def _skipped(self, i: int) -> int:
        return skipped_rows(self.job, self.corpora[i], self.shards[i])

    def _expected_rows(self, i: int) -> int | None:
        """Good rows shard ``i`` will yield; None for derived sources (windows, images), known only at the end."""
        rows = self.shards[i].rows
        return None if rows is None else rows - self._skipped(i)

    def _scored_batches(self) -> ray.data.Dataset:
        parts = [c.dataset.map_batches(functools.partial(_tag, shard=i)) for i, c in enumerate(self.corpora)]
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
        self.started = time.perf_counter()
        try:
            batches = self._scored_batches().iter_batches(batch_size=None, batch_format="numpy")
            for b, out in enumerate(out for out in batches if SHARD in out):
                if b == 0:
                    warmup.seconds += time.perf_counter() - self.started
                    warmup.rows += len(out[SHARD])
                self._consume(out)
            for i in range(len(self.shards)):  # no good rows, or counts not known ahead (windows, images)
                if i not in self.committed:
                    self._output(i)
                    self._commit(i)
        finally:
            for output in self.outputs.values():
                output.writer.abort()
        return self.markers

    def _consume(self, out: dict[str, np.ndarray]) -> None:
        """Write a scored batch's rows to their shards' files; commit each shard whose last row arrived."""
        tags = out[SHARD]
        for i in np.unique(tags).tolist():
            self._output(i).add(self.job, out, tags == i)
            if self.outputs[i].writer.rows == self._expected_rows(i):
                self._commit(i)

    def _output(self, i: int) -> _ShardOutput:
        """Shard ``i``'s output, opened on its first rows (or at the end, for a shard without good rows)."""
        if i not in self.outputs:
            writer = publish.ShardWriter(self.job.staging, self.shards[i], self.job.schema)
            self.outputs[i] = _ShardOutput(writer, self.job.empty_sketch(), self._skipped(i), self.started)
        return self.outputs[i]

    def _commit(self, i: int) -> None:
        self.committed.add(i)
        output = self.outputs.pop(i)
        seconds = time.perf_counter() - output.started
        marker = self.job.marker(output.sketch, output.anomalies, seconds, output.skipped)
        self.markers.append(output.writer.commit(marker))
        self.log(f"  shard {self.shards[i].name}: {self.markers[-1]['output_rows']} rows")
