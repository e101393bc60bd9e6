"""One scoring pass: a group of input shards streamed through one pool of :class:`Scorer` actors.

Each shard's rows are tagged with the shard's index; the actors write the scored rows straight into the partition
and hand back one small summary per data file (:mod:`pipelines.score.output`). A shard is finished (an image
shard's input index and its marker written, listing its files) as soon as the summaries account for its last row.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data

from pipelines import storage
from pipelines.config import DataConfig, ScoreConfig
from pipelines.data import Corpus, ValidationReport, cache, load_dataset, validate_corpus
from pipelines.data.chunks import ChunkIndex
from pipelines.data.records import quarantine_folder
from pipelines.labelled import LabelledScores
from pipelines.progress import RowCounter, Task
from pipelines.score import inputs, publish
from pipelines.score.actor import Scorer
from pipelines.score.drift import ScoreSketch
from pipelines.score.output import SHARD, OutputSpec
from pipelines.score.tagging import tagged_rows
from pipelines.score.top import TopRows
from pipelines.tracking import ResolvedModel


def id_type(shard: publish.Shard, cfg: DataConfig) -> pa.DataType:
    """The output id type: the input id column's (strings as ``string``); derived ids are strings."""
    column = getattr(cfg, "id_column", "id")
    if cfg.source != "parquet" or not column:
        return pa.string()
    try:
        with storage.open_input(shard.path) as fh:
            schema = pq.read_schema(fh)
    except (OSError, pa.ArrowInvalid):  # an unreadable first shard: validation names it
        return pa.string()
    t = schema.field(column).type if column in schema.names else pa.string()
    return pa.string() if pa.types.is_string(t) or pa.types.is_large_string(t) else t


@dataclass
class ScoreJob:
    """What every pass of one scoring run shares."""

    model: ResolvedModel
    data_cfg: DataConfig
    settings: ScoreConfig
    output: OutputSpec
    """Where and how the actors write (the partition, this run's attempt, the schema, the sketch edges)."""
    identity: dict[str, str]
    files: ray.ObjectRef[dict[str, bytes]]
    """The pinned model's bundle files in the object store, which every actor loads from."""
    root: str
    """The corpus root the user gave: ids derived from file names are relative to it, as in training."""
    input_shape: tuple[int, ...]
    """The model's input shape: Parquet samples are read at its size, so a shard of other lengths is bad."""

    @property
    def partition(self) -> str:
        return self.output.partition

    @property
    def schema(self) -> pa.Schema:
        return self.output.schema

    @property
    def edges(self) -> np.ndarray | None:
        """Score sketch bin edges (None in ``embed`` mode, or for a model without a validation baseline)."""
        return None if self.output.edges is None else np.asarray(self.output.edges)

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
    def quarantine_dir(self) -> str:
        """Where bad input records go: ``_quarantine/`` of the partition, one folder per input file."""
        return storage.join(self.partition, publish.QUARANTINE)


@dataclass
class Warmup:
    """Seconds from the start of each pass to its first scored batch (actor pool start, first reads) and the
    rows that batch held: what separates the steady rate from the end-to-end one."""

    seconds: float = 0.0
    rows: int = 0

    def steady_rows_per_s(self, rows: int, seconds: float) -> float:
        return (rows - self.rows) / (seconds - self.seconds) if seconds > self.seconds and rows > self.rows else 0.0


@dataclass
class _ShardProgress:
    """One shard's data files while their summaries arrive."""

    sketch: ScoreSketch | None
    skipped: int
    started: float
    """When the pass that scores it started (``perf_counter``)."""
    files: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    anomalies: int = 0

    def add(self, summary: dict[str, Any], edges: np.ndarray | None) -> None:
        """Count one data file an actor wrote (a row of :data:`pipelines.score.output.SUMMARY_COLUMNS`)."""
        self.files.append({"path": str(summary["file"]), "rows": int(summary["rows"])})
        self.rows += int(summary["rows"])
        self.anomalies += int(summary["anomalies"])
        if self.sketch is not None and edges is not None and summary["sketch"]:
            self.sketch = self.sketch.merge(ScoreSketch.from_dict(edges, json.loads(summary["sketch"])))


def shard_records(job: ScoreJob, shards: list[publish.Shard]) -> Corpus:
    """The records of ``shards`` as one dataset, whatever their number: Ray Data's operators, stats and block
    bookkeeping on the driver do not grow with the shards (one dataset per shard made them grow)."""
    files = [s.files for s in shards]  # images: read just them; time series: the windows ending in them
    return load_dataset(
        job.data_cfg, job.root, quarantine_dir=job.quarantine_dir, for_model=job.input_shape, files=files
    )


def open_shards(job: ScoreJob, shards: list[publish.Shard], counter: RowCounter | None = None) -> Corpus | None:
    """The records of the shards to score (None when there are none), after one validation pass over all of them
    (the one training runs: :func:`pipelines.data.validate_corpus`), before anything is scored or published.

    ``fail``: the first bad file or row, or an id repeated across the shards, raises :class:`DataError` naming
    it. ``skip``: bad files and rows are quarantined under ``_quarantine/`` of the partition with their reason
    and input row count (records an earlier, killed attempt wrote for these shards are replaced), and each
    shard keeps its good rows, possibly none."""
    if not shards:
        return None
    quarantined = {e.base_name: e for e in storage.list_dir(job.quarantine_dir)}
    for folder in (quarantine_folder(f) for s in shards if quarantined for f in s.files.paths()):
        if folder in quarantined:
            storage.delete_dir(storage.uri_of(job.quarantine_dir, quarantined.pop(folder)))
    corpus = shard_records(job, shards)
    keep = keeps_records(job, shards)
    if keep:  # the kept records are scored in the input's row order, as a streamed pass reads them
        corpus.records.context.execution_options.preserve_order = True
    return validate_corpus(corpus, require_records=False, counter=counter, keep=keep)


def keeps_records(job: ScoreJob, shards: list[publish.Shard]) -> bool:
    """Whether the validation pass keeps the good records of ``shards`` in the object store, so that the
    scoring pass reads them there instead of reading and decoding the files again: ``data.cache`` as in training
    (``auto``: when they fit its share of the store), and only when one pass scores them all and their row count
    is known ahead (Parquet footers, image files; not windows)."""
    rows = [s.rows for s in shards]
    if len(shards) > job.settings.shards_per_pass or None in rows:
        return False
    total = sum(r for r in rows if r is not None)
    return cache.decide(job.data_cfg.cache, total, job.input_shape, job.data_cfg.cache_max_fraction).in_memory


def skipped_rows(report: ValidationReport | None, shard: publish.Shard) -> int:
    """Input rows of ``shard``'s files the validation pass quarantined."""
    if report is None or not report.skipped_by_file:
        return 0
    return sum(report.skipped_by_file.get(f, 0) for f in shard.files.paths())


def _gpus(settings: ScoreConfig) -> float:
    if settings.num_gpus is not None:
        return settings.num_gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


@dataclass
class ScoringProgress:
    """Rows and shards scored so far, over every pass of a run, drawn on one :class:`~pipelines.progress.Task`."""

    task: Task
    shards: int
    started: float = field(default_factory=time.perf_counter)
    rows: int = 0
    finished: int = 0

    def scored(self, rows: int = 0, shards: int = 0) -> None:
        self.rows += rows
        self.finished += shards
        rate = self.rows / max(time.perf_counter() - self.started, 1e-9)
        self.task.update(self.rows, status=f"{self.finished}/{self.shards} shards, {rate:,.0f} rows/s")


class ScorePass:
    """Streams ``shards`` through one actor pool: ``corpus`` holds their records (:func:`shard_records`) and the
    report of the validation pass over them (:func:`open_shards`); :meth:`run` returns the finished shards'
    markers, one per shard, a shard without good rows included."""

    def __init__(
        self,
        job: ScoreJob,
        shards: list[publish.Shard],
        corpus: Corpus,
        log: Callable[[str], None],
        progress: ScoringProgress,
    ) -> None:
        self.job, self.log, self.tally = job, log, progress
        self.shards, self.corpus = shards, corpus
        self.markers: list[dict[str, Any]] = []
        self.progress: dict[int, _ShardProgress] = {}
        self.finished: set[int] = set()
        self.started = time.perf_counter()

    def _skipped(self, i: int) -> int:
        return skipped_rows(self.corpus.report, self.shards[i])

    def _expected_rows(self, i: int) -> int | None:
        """Good rows shard ``i`` will yield; None for time series (windows), known only at the end."""
        rows = self.shards[i].rows
        return None if rows is None else rows - self._progress(i).skipped

    def _summaries(self) -> ray.data.Dataset:
        """The scoring actors' summaries: one row per data file written."""
        job, s = self.job, self.job.settings
        shard_of = ChunkIndex([sh.files for sh in self.shards])  # per folder, the shards' first and last names
        exclude = self.corpus.report.duplicated_ids if self.corpus.report is not None else frozenset()
        ds = self.corpus.records.map_batches(
            functools.partial(
                tagged_rows, shard_of=shard_of, on_bad_records=self.corpus.on_bad_records, exclude=exclude
            )
        )
        ds.context.execution_options.preserve_order = True  # a shard's files are listed in the input's row order
        output = replace(job.output, shard_names=tuple(sh.name for sh in self.shards))
        return ds.map_batches(
            Scorer,
            fn_constructor_kwargs={"bundle_files": job.files, "batch_size": s.batch_size, "output": output},
            batch_size=None,
            compute=ray.data.ActorPoolStrategy(size=s.concurrency),
            num_cpus=s.num_cpus,
            num_gpus=_gpus(s),
        )

    def run(self, warmup: Warmup, top: TopRows, labelled: LabelledScores) -> list[dict[str, Any]]:
        """Score the pass; ``warmup``, ``top`` (the highest-scored rows) and ``labelled`` (labelled rows' scores)
        accumulate over the passes."""
        self.started = time.perf_counter()
        first = True
        for summary in self._summaries().iter_rows():
            if first:
                warmup.seconds += time.perf_counter() - self.started
                warmup.rows += int(summary["rows"])
                first = False
            top.add(summary["top"])
            labelled.merge(LabelledScores.from_bytes(summary["labelled"]))
            i = int(summary[SHARD])
            self._progress(i).add(summary, self.job.edges)
            self.tally.scored(rows=int(summary["rows"]))
            if self.progress[i].rows == self._expected_rows(i):
                self._finish(i)
        for i in range(len(self.shards)):  # no good rows, or counts not known ahead (windows)
            if i not in self.finished:
                self._progress(i)
                self._finish(i)
        return self.markers

    def _progress(self, i: int) -> _ShardProgress:
        if i not in self.progress:
            self.progress[i] = _ShardProgress(self.job.empty_sketch(), self._skipped(i), self.started)
        return self.progress[i]

    def _finish(self, i: int) -> None:
        """Write shard ``i``'s input index (an image chunk) and marker: its fingerprint, data files, row count and
        summary."""
        self.finished.add(i)
        if self.shards[i].indexed:
            inputs.write_index(self.job.partition, self.shards[i])
        p = self.progress.pop(i)
        seconds = time.perf_counter() - p.started
        marker = {
            **self.shards[i].entry,
            "files": p.files,
            "output_rows": p.rows,
            **self.job.marker(p.sketch, p.anomalies, seconds, p.skipped),
        }
        publish.write_marker(self.job.partition, self.job.identity, marker)
        self.markers.append(marker)
        self.tally.scored(shards=1)
        self.log(f"  shard {self.shards[i].name}: {p.rows} rows")
