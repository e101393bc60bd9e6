"""Scoring stage: stream a corpus through a pool of :class:`Scorer` actors, one output file per input shard,
published exactly once (see :mod:`pipelines.score.publish`), with a drift check of the score distribution.

The model URI is resolved to one fixed version on the driver before any work starts; every actor loads
that version once. Output rows: ``id, score, is_anomaly, embedding, model_name, model_version`` (``mode``
picks the score and/or embedding columns).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
from pydantic import BaseModel, ConfigDict, Field

from pipelines import tracking
from pipelines.bundle import ModelBundle, bundle_files
from pipelines.config import ConfigError, DataConfig, ScoreConfig
from pipelines.data import DataError, load_dataset, validate_corpus
from pipelines.data.records import QUARANTINE_SCHEMA, write_quarantine
from pipelines.score import publish
from pipelines.score.actor import SHARD, Scorer
from pipelines.score.drift import DriftReport, ScoreSketch, baseline_cdf, check_drift, sketch_edges

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


class ScoreRequest(BaseModel):
    """One scoring job."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model_uri: str
    """models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME (latest) or runs:/RUN_ID/model."""
    input_path: str
    """Corpus to score (read with the data settings the model was trained with)."""
    output_path: str
    """Directory the scored Parquet is published to (a local path)."""
    partition: str | None = None
    """Publish under OUTPUT/PARTITION (e.g. dt=2024-06-01) instead of OUTPUT itself."""
    incremental: bool = False
    """Score only input shards that no published partition under OUTPUT holds for this model version."""
    tracking_uri: str
    registry_uri: str | None = None
    artifact_root: str | None = None
    """Artifact location of the scoring experiment when it is created (default: MLflow's)."""
    mode: Literal["score", "embed", "both"] = "both"
    """score: id, score, is_anomaly; embed: id, embedding; both: all columns."""
    settings: ScoreConfig = Field(default_factory=ScoreConfig)


@dataclass
class ScoreResult:
    """What a scoring job did; ``noop`` when incremental mode found nothing new."""

    output_path: str
    rows: int
    rows_scored: int
    model: tracking.ResolvedModel
    seconds: float
    plan: dict[str, int] = field(default_factory=dict)
    drift: DriftReport | None = None
    run_id: str | None = None
    noop: bool = False
    warmup_seconds: float = 0.0
    """Seconds until the first scored batch of each pass (actor start-up, first reads), summed."""
    steady_rows_per_s: float = 0.0
    """Rows per second after each pass's first batch."""


def output_schema(mode: str, id_type: pa.DataType, embed_dim: int) -> pa.Schema:
    """Columns of a scored shard for ``mode``."""
    cols = [pa.field("id", id_type)]
    if mode in ("score", "both"):
        cols += [pa.field("score", pa.float32()), pa.field("is_anomaly", pa.bool_())]
    if mode in ("embed", "both"):
        cols += [pa.field("embedding", pa.list_(pa.float32(), embed_dim))]
    return pa.schema([*cols, pa.field("model_name", pa.string()), pa.field("model_version", pa.string())])


def _id_type(shard: publish.Shard, cfg: DataConfig) -> pa.DataType:
    """The output id type: the input id column's (strings as ``string``); derived ids are strings."""
    column = getattr(cfg, "id_column", "id")
    if cfg.source != "parquet" or not column:
        return pa.string()
    schema = pq.read_schema(shard.path) if "://" not in shard.path else None
    t = schema.field(column).type if schema is not None and column in schema.names else pa.string()
    return pa.string() if pa.types.is_string(t) or pa.types.is_large_string(t) else t


def _tag(batch: dict[str, np.ndarray], shard: int) -> dict[str, np.ndarray]:
    return {"id": batch["id"], "x": batch["x"], SHARD: np.full(len(batch["id"]), shard, np.int32)}


def _check_cpus(settings: ScoreConfig) -> None:
    """Refuse an actor pool that reserves every CPU: Ray Data's read tasks (1 CPU each) could never run."""
    total = ray.cluster_resources().get("CPU", 0)
    if settings.concurrency * settings.num_cpus > total - 1:
        raise ConfigError(
            f"score.concurrency x score.num_cpus = {settings.concurrency} x {settings.num_cpus} leaves less than "
            f"one of the cluster's {total:g} CPUs for reading the corpus, so the job would hang; lower num_cpus "
            f"(e.g. {max(0.25, (total - 1) / settings.concurrency):.2g}) or concurrency"
        )


def _gpus(settings: ScoreConfig) -> float:
    if settings.num_gpus is not None:
        return settings.num_gpus
    return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


@dataclass
class _Job:
    """What every pass of one run shares."""

    req: ScoreRequest
    model: tracking.ResolvedModel
    data_cfg: DataConfig
    schema: pa.Schema
    edges: np.ndarray | None
    staging: Path
    identity: dict[str, str]
    files: ray.ObjectRef
    """The pinned model's bundle files in the object store, which every actor loads from."""

    def table(self, out: dict[str, np.ndarray], sel: np.ndarray) -> pa.Table:
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

    def marker(self, sketch: ScoreSketch | None, anomalies: int, seconds: float) -> dict[str, Any]:
        return {
            **self.identity,
            "scored_at": datetime.now(UTC).isoformat(),
            "seconds": seconds,
            "anomalies": anomalies,
            "sketch": sketch.to_dict() if sketch is not None else None,
        }


@dataclass
class _Warmup:
    """Seconds from the start of each pass to its first scored batch (actor pool start, first reads) and the
    rows that batch held: what separates the steady rate from the end-to-end one."""

    seconds: float = 0.0
    rows: int = 0

    def steady_rows_per_s(self, rows: int, seconds: float) -> float:
        return (rows - self.rows) / (seconds - self.seconds) if seconds > self.seconds and rows > self.rows else 0.0


def _score_pass(
    job: _Job, shards: list[publish.Shard], log: Callable[[str], None], warmup: _Warmup
) -> list[dict[str, Any]]:
    """Stream ``shards`` through one actor pool; each shard is committed when its last row is written."""
    s = job.req.settings
    t_pass = time.perf_counter()
    unreadable = [sh for sh in shards if sh.rows is None and job.data_cfg.source == "parquet"]
    markers = [_quarantine_unreadable(job, sh) for sh in unreadable]
    shards = [sh for sh in shards if sh not in unreadable]
    if not shards:
        return markers
    corpora = [_open_shard(job, sh) for sh in shards]
    expected = [
        sh.rows - c.report.skipped if c.report and sh.rows is not None else sh.rows
        for sh, c in zip(shards, corpora, strict=True)
    ]
    parts = [
        c.dataset.select_columns(["id", "x"]).map_batches(_tag, fn_kwargs={"shard": i}) for i, c in enumerate(corpora)
    ]
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    ds.context.execution_options.preserve_order = True  # per-shard row order is the input's
    scored = ds.map_batches(
        Scorer,
        fn_constructor_kwargs={"bundle_files": job.files, "batch_size": s.batch_size},
        batch_size=None,
        compute=ray.data.ActorPoolStrategy(size=s.concurrency),
        num_cpus=s.num_cpus,
        num_gpus=_gpus(s),
    )
    writers: dict[int, publish.ShardWriter] = {}
    sketches: dict[int, ScoreSketch | None] = {}
    anomalies: dict[int, int] = {}
    started = {i: time.perf_counter() for i in range(len(shards))}

    def commit(i: int) -> None:
        report = corpora[i].report
        marker = job.marker(sketches.pop(i), anomalies.pop(i), time.perf_counter() - started[i])
        markers.append(writers.pop(i).commit({**marker, "skipped": report.skipped if report else 0}))
        log(f"  shard {shards[i].name}: {markers[-1]['output_rows']} rows")

    try:
        for b, out in enumerate(scored.iter_batches(batch_size=None, batch_format="numpy")):
            if b == 0:
                warmup.seconds += time.perf_counter() - t_pass
                warmup.rows += len(out[SHARD])
            tags = out[SHARD]
            for i in np.unique(tags).tolist():
                sel = tags == i
                if i not in writers:
                    writers[i] = publish.ShardWriter(job.staging, shards[i], job.schema)
                    sketches[i] = ScoreSketch.empty(job.edges) if job.edges is not None else None
                    anomalies[i] = 0
                writers[i].write(job.table(out, sel))
                if sketches[i] is not None:
                    sketches[i].add(out["score"][sel])
                    anomalies[i] += int(out["is_anomaly"][sel].sum())
                if writers[i].rows == expected[i]:
                    commit(i)
        for i in sorted(writers):  # row counts not known ahead (derived sources: windows, images)
            commit(i)
    finally:
        for w in writers.values():
            w.abort()
    return markers


def _quarantine_unreadable(job: _Job, shard: publish.Shard) -> dict[str, Any]:
    """A Parquet shard whose footer cannot be read: an error naming it (``fail``), or one quarantine record
    for the whole file and an empty committed output shard (``skip``)."""
    reason = "not a readable Parquet file (bad footer or truncated)"
    if job.data_cfg.on_bad_records != "skip":
        raise DataError(f"{shard.path}: {reason}")
    quarantine = job.staging / "_quarantine" / shard.name.replace("/", "__")
    write_quarantine(
        pa.table(
            {
                "file": [shard.path],
                "row": pa.array([-1], pa.int64()),
                "id": pa.array([None], pa.string()),
                "reason": [reason],
            },
            schema=QUARANTINE_SCHEMA,
        ),
        str(quarantine),
        "unreadable",
    )
    empty = ScoreSketch.empty(job.edges) if job.edges is not None else None
    marker = publish.ShardWriter(job.staging, shard, job.schema).commit({**job.marker(empty, 0, 0.0), "skipped": 1})
    return marker


def _open_shard(job: _Job, shard: publish.Shard):
    """A shard's canonical rows. With ``on_bad_records=skip`` a validation pass first quarantines its bad
    records under ``_quarantine/`` of the partition (and counts them); with ``fail`` the first bad record
    stops the job with an error naming the file and row."""
    if job.data_cfg.on_bad_records != "skip":
        return load_dataset(job.data_cfg, shard.path)
    quarantine = job.staging / "_quarantine" / shard.name.replace("/", "__")
    shutil.rmtree(quarantine, ignore_errors=True)
    return validate_corpus(load_dataset(job.data_cfg, shard.path, quarantine_dir=str(quarantine)))


def _plan(
    req: ScoreRequest, shards: list[publish.Shard], final: Path, staging: Path, identity: dict[str, str]
) -> publish.Plan | None:
    """Decide what to score, resume and carry over; None when incremental mode has nothing new."""
    carried: list[dict[str, Any]] = []
    todo = shards
    if req.incremental:
        done: set[tuple] = set()
        for part in publish.published_partitions(req.output_path):
            manifest = publish.read_manifest(part)
            m = manifest["model"]
            if {"model_name": m["name"], "model_version": m["version"], "mode": m["mode"]} == identity:
                done |= {(m["name"], m["size"], m["mtime_ns"], m["rows"]) for m in manifest["shards"]}
                if part == final:
                    carried = manifest["shards"]
        todo = [s for s in shards if (s.name, s.size, s.mtime_ns, s.rows) not in done]
        if not todo:
            return None
        names = {s.name for s in todo}
        carried = [m for m in carried if m["name"] not in names]
    resumed, to_score = [], []
    for s in todo:
        marker = publish.read_marker(staging, s, identity)
        (resumed.append(marker) if marker is not None else to_score.append(s))
    return publish.Plan(to_score, resumed, carried)


def _corpus_shards(path: str, cfg: DataConfig) -> list[publish.Shard]:
    """Input shards: each Parquet file; other sources are scored as one shard."""
    if cfg.source == "parquet":
        return publish.list_shards(path)
    return [publish.whole_corpus_shard(path)]


def run_scoring(req: ScoreRequest, log: Callable[[str], None] = print) -> ScoreResult:
    """Driver: pin the model version, plan, stream pending shards through the scorer pool, verify, publish,
    log a scoring run with a drift check. Needs ``ray.init``."""
    t0 = time.perf_counter()
    _check_cpus(req.settings)
    model = tracking.resolve_model_uri(req.tracking_uri, req.model_uri, req.registry_uri)
    log(f"scoring with {model.uri} (resolved from {req.model_uri})")
    bundle_dir = tracking.download_bundle(req.tracking_uri, model, registry_uri=req.registry_uri)
    files, bundle = bundle_files(bundle_dir), ModelBundle.load(bundle_dir)
    shutil.rmtree(bundle_dir.parent.parent, ignore_errors=True)
    data_cfg = DataConfig.model_validate(bundle.data_config)
    shards = _corpus_shards(req.input_path, data_cfg)
    try:
        bundle.check_shape(load_dataset(data_cfg, shards[0].path).sample_shape, req.input_path)
    except ValueError as exc:
        raise DataError(f"{exc}; score it with a model trained on this kind of data") from None

    final = Path(req.output_path) / req.partition if req.partition else Path(req.output_path)
    identity = {"model_name": model.name, "model_version": model.version, "mode": req.mode}
    staging = final.with_name(f".{final.name}.staging-{model.name}-v{model.version}-{req.mode}")
    plan = _plan(req, shards, final, staging, identity)
    if plan is None:
        log(f"nothing to do: every input shard is already scored by {model.uri} under {req.output_path}")
        return ScoreResult(str(final), 0, 0, model, time.perf_counter() - t0, noop=True)
    log(
        f"plan: {len(plan.to_score)} shards to score, {len(plan.resumed)} resumed from {staging}, "
        f"{len(plan.carried)} carried over"
    )

    embed_dim = bundle.infer(np.zeros((1, *bundle.input_shape), np.float32))["embedding"].shape[1]
    schema = output_schema(req.mode, _id_type(shards[0], data_cfg), embed_dim)
    baseline = bundle.calibration.get("baseline_quantiles")
    edges = sketch_edges(np.asarray(baseline)) if baseline and req.mode != "embed" else None
    job = _Job(req, model, data_cfg, schema, edges, staging, identity, ray.put(files))

    run_id = tracking.start_run(
        req.tracking_uri,
        req.settings.experiment,
        f"score-{model.name}-v{model.version}",
        {
            "model_uri": req.model_uri,
            "input_path": req.input_path,
            "output_path": str(final),
            "mode": req.mode,
            "incremental": req.incremental,
            "score": req.settings.model_dump(mode="json"),
        },
        tags={"aepipe.kind": "scoring", "aepipe.model.name": model.name, "aepipe.model.version": model.version},
        artifact_root=req.artifact_root,
    )
    try:
        staging.mkdir(parents=True, exist_ok=True)
        for m in plan.carried:
            publish.carry_over(final, staging, m["output"], m)
        t_score = time.perf_counter()
        new, warmup = [], _Warmup()
        step = req.settings.shards_per_pass
        for k in range(0, len(plan.to_score), step):
            new += _score_pass(job, plan.to_score[k : k + step], log, warmup)
        score_seconds = time.perf_counter() - t_score
        this_run = plan.resumed + new
        markers = sorted(plan.carried + this_run, key=lambda m: m["name"])
        publish.prune(staging, {m["output"] for m in markers})
        rows = publish.verify(staging, markers, schema)
        rows_scored = sum(m["output_rows"] for m in new)
        drift = _drift(job, this_run, bundle.calibration)
        manifest = _manifest(
            req,
            model,
            shards,
            markers,
            plan,
            rows,
            schema,
            drift,
            run_id,
            {"seconds": time.perf_counter() - t0, "scoring_seconds": score_seconds, "warmup_seconds": warmup.seconds},
        )
        publish.write_manifest(staging, manifest)
        publish.publish(staging, final)
        seconds = time.perf_counter() - t0
        _log_run(
            req, run_id, final, this_run, rows, rows_scored, score_seconds, drift, plan, bundle.calibration, job, warmup
        )
        tracking.set_tags(req.tracking_uri, run_id, {"aepipe.drift": str(bool(drift and drift.drifted)).lower()})
        tracking.end_run(req.tracking_uri, run_id)
    except BaseException:
        tracking.end_run(req.tracking_uri, run_id, "FAILED")
        raise
    return ScoreResult(
        str(final),
        rows,
        rows_scored,
        model,
        seconds,
        plan.summary(),
        drift,
        run_id,
        warmup_seconds=warmup.seconds,
        steady_rows_per_s=warmup.steady_rows_per_s(rows_scored, score_seconds),
    )


def _merged_sketch(job: _Job, markers: list[dict[str, Any]]) -> ScoreSketch | None:
    if job.edges is None:
        return None
    total = ScoreSketch.empty(job.edges)
    for m in markers:
        if m.get("sketch"):
            total = total.merge(ScoreSketch.from_dict(job.edges, m["sketch"]))
    return total


def _drift(job: _Job, markers: list[dict[str, Any]], calibration: dict) -> DriftReport | None:
    """Drift of the rows this run scored (resumed shards included) against the validation baseline."""
    sketch = _merged_sketch(job, markers)
    if sketch is None or sketch.n == 0:
        return None
    s = job.req.settings
    return check_drift(sketch, calibration, s.psi_limit, s.ks_alpha, s.drift_bins, s.ks_min)


def _manifest(req, model, shards, markers, plan, rows, schema, drift, run_id, timings) -> dict[str, Any]:
    return {
        "model": {
            "name": model.name,
            "version": model.version,
            "mode": req.mode,
            "requested": req.model_uri,
            "run_id": model.run_id,
        },
        "input": {
            "path": req.input_path,
            "fingerprint": publish.input_fingerprint(shards),
            "shards": [s.fingerprint for s in shards],
        },
        "shards": [{k: v for k, v in m.items() if k != "sketch"} for m in markers],
        "rows": rows,
        "schema": schema.names,
        "plan": plan.summary(),
        "drift": None if drift is None else {**drift.metrics(), "reason": drift.reason},
        "scoring_run_id": run_id,
        "published_at": datetime.now(UTC).isoformat(),
        "timings": timings,
    }


def _log_run(
    req, run_id, final, this_run, rows, rows_scored, score_seconds, drift, plan, calibration, job, warmup: _Warmup
) -> None:
    """Metrics, the score histogram against the baseline and the manifest on the scoring run."""
    metrics: dict[str, float] = {
        "rows": rows,
        "rows_scored": rows_scored,
        "shards_scored": len(this_run) - len(plan.resumed),
        "shards_resumed": len(plan.resumed),
        "shards_carried": len(plan.carried),
        "data_skipped_records": sum(m.get("skipped", 0) for m in this_run),
        "rows_per_s": rows_scored / score_seconds if score_seconds > 0 else 0.0,
        "scoring_seconds": score_seconds,
        "warmup_seconds": warmup.seconds,
        "steady_rows_per_s": warmup.steady_rows_per_s(rows_scored, score_seconds),
    }
    sketch = _merged_sketch(job, this_run)
    if sketch is not None and sketch.n:
        metrics["anomaly_rate"] = sum(m.get("anomalies", 0) for m in this_run) / sketch.n
        metrics["score_mean"] = sketch.mean()
        metrics.update(
            {f"score_p{int(q * 100):02d}": float(v) for q, v in zip(QUANTILES, sketch.quantile(QUANTILES), strict=True)}
        )
    if drift is not None:
        metrics.update(drift.metrics())
    tracking.log_metrics(req.tracking_uri, run_id, metrics, step=0)
    with tempfile.TemporaryDirectory() as tmp:
        if sketch is not None and sketch.n:
            plot_scores(sketch, calibration, Path(tmp) / "score_histogram.png")
        shutil.copy(final / publish.MANIFEST, Path(tmp) / "manifest.json")
        tracking.log_artifacts(req.tracking_uri, run_id, tmp, "scoring")


def plot_scores(sketch: ScoreSketch, calibration: dict, path: Path) -> Path:
    """Fraction of scored rows vs validation baseline per bin (50 bins), with the anomaly threshold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    q = np.asarray(calibration["baseline_quantiles"])
    lo, hi = sketch.quantile([0.005, 0.995])
    lo, hi = min(lo, q[0]), max(hi, q[-1])
    grid = np.linspace(lo, hi, 51)
    scored = np.diff(np.interp(grid, sketch.edges, sketch.cdf()))
    base = np.diff(baseline_cdf(q, grid))
    fig = Figure(figsize=(7, 4), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.stairs(base, grid, label="validation baseline")
    ax.stairs(scored, grid, label=f"scored ({sketch.n} rows)")
    ax.axvline(calibration.get("threshold", hi), color="red", linestyle="--", label="anomaly threshold")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("fraction of rows")
    ax.legend()
    fig.savefig(path)
    return path
