"""Scoring driver: pin the model version, plan the shards, score them in passes, verify, publish, report.

The model URI is resolved to one fixed version before any work starts; every actor loads that version once.
Output rows: ``id, score, is_anomaly, embedding, model_name, model_version`` (``mode`` picks the score
and/or embedding columns). The steps of :func:`run_scoring`: :func:`_load_model`, :func:`_prepare` (shards,
plan, output schema), the passes (:class:`pipelines.score.passes.ScorePass`), :func:`_commit` (verify,
manifest, publish) and the scoring run's report (:mod:`pipelines.score.report`).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field

from pipelines import storage, tracking
from pipelines.bundle import ModelBundle, bundle_files
from pipelines.config import ConfigError, DataConfig, ScoreConfig
from pipelines.data import Corpus, DataError, sample_shape
from pipelines.data.ids import count_ids
from pipelines.labelled import MAX_EXACT_ROWS, LabelledScores
from pipelines.progress import SILENT, Progress, counting
from pipelines.progress import step as progress_step
from pipelines.score import publish, report
from pipelines.score.drift import DriftReport, check_drift, sketch_edges
from pipelines.score.output import OutputSpec, output_schema
from pipelines.score.passes import (
    ScoreJob,
    ScorePass,
    ScoringProgress,
    Warmup,
    id_type,
    open_shards,
    shard_records,
)
from pipelines.score.plan import Plan, make_plan
from pipelines.score.top import TopRows

Log = Callable[[str], None]


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
    """Score only input shards that no published partition under OUTPUT holds, whichever model version
    scored them (a new champion scores the new shards, not the whole history)."""
    rescore: bool = False
    """Incremental, but a shard counts as done only when this model version published it: old shards are
    scored again with a new model."""
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

    @classmethod
    def of(cls, outcome: report.RunOutcome, output_path: str, seconds: float) -> ScoreResult:
        o = outcome
        return cls(
            output_path,
            o.rows,
            o.rows_scored,
            o.model,
            seconds,
            o.plan.summary(),
            o.drift,
            o.run_id,
            warmup_seconds=o.warmup_seconds,
            steady_rows_per_s=o.steady_rows_per_s,
        )


def _check_cpus(settings: ScoreConfig) -> None:
    """Refuse an actor pool that reserves every CPU: Ray Data's read tasks (1 CPU each) could never run."""
    total = ray.cluster_resources().get("CPU", 0)
    if settings.concurrency * settings.num_cpus > total - 1:
        raise ConfigError(
            f"score.concurrency x score.num_cpus = {settings.concurrency} x {settings.num_cpus} leaves less than "
            f"one of the cluster's {total:g} CPUs for reading the corpus, so the job would hang; lower num_cpus "
            f"(e.g. {max(0.25, (total - 1) / settings.concurrency):.2g}) or concurrency"
        )


def _load_model(req: ScoreRequest, log: Log) -> tuple[tracking.ResolvedModel, ModelBundle, dict[str, bytes]]:
    """Pin the requested URI to one version; its bundle, loaded here and as files for the actors."""
    model = tracking.resolve_model_uri(req.tracking_uri, req.model_uri, req.registry_uri)
    log(f"scoring with {model.uri} (resolved from {req.model_uri})")
    bundle_dir = tracking.download_bundle(req.tracking_uri, model, registry_uri=req.registry_uri)
    files, bundle = bundle_files(bundle_dir), ModelBundle.load(bundle_dir)
    shutil.rmtree(bundle_dir.parent.parent, ignore_errors=True)
    return model, bundle, files


def _data_config(bundle: ModelBundle, settings: ScoreConfig) -> DataConfig:
    """The data settings the model was trained with, ``on_bad_records`` as the scoring settings ask (if set)."""
    cfg = DataConfig.model_validate(bundle.data_config)
    if settings.on_bad_records is not None:
        cfg = cfg.model_copy(update={"on_bad_records": settings.on_bad_records})
    return cfg


def _check_input(bundle: ModelBundle, data_cfg: DataConfig, input_path: str) -> None:
    """The corpus holds the kind of samples the model takes (shape read from the first usable file, as in
    training); a single shard of other lengths is found row by row by the validation pass instead."""
    try:
        bundle.check_shape(sample_shape(data_cfg, input_path), input_path)
    except ValueError as exc:
        raise DataError(f"{exc}; score it with a model trained on this kind of data") from None


def _partition(req: ScoreRequest) -> str:
    """The partition to publish: OUTPUT, or OUTPUT/PARTITION."""
    output = storage.normalize(req.output_path)
    return storage.join(output, req.partition) if req.partition else output


def _score_job(
    req: ScoreRequest,
    model: tracking.ResolvedModel,
    bundle: ModelBundle,
    *,
    data_cfg: DataConfig,
    files: dict[str, bytes],
    shards: list[publish.Shard],
    partition: str,
    identity: dict[str, str],
) -> ScoreJob:
    embed_dim = bundle.infer(np.zeros((1, *bundle.input_shape), np.float32))["embedding"].shape[1]
    baseline = bundle.calibration.get("baseline_quantiles")
    edges = sketch_edges(np.asarray(baseline)) if baseline and req.mode != "embed" else None
    output = OutputSpec(
        partition=partition,
        attempt=publish.new_attempt(),
        schema=output_schema(req.mode, id_type(shards[0], data_cfg), embed_dim),
        model_name=model.name,
        model_version=model.version,
        shard_names=(),
        edges=None if edges is None else tuple(float(e) for e in edges),
        top_k=req.settings.gallery_size if req.mode != "embed" else 0,
        label_fraction=min(1.0, MAX_EXACT_ROWS / max(_rows(shards) or 1, 1)),  # windows: counts unknown, keep all
    )
    return ScoreJob(model, data_cfg, req.settings, output, identity, ray.put(files), req.input_path, bundle.input_shape)


def _start_run(req: ScoreRequest, model: tracking.ResolvedModel, partition: str) -> str:
    params = {
        "model_uri": req.model_uri,
        "input_path": req.input_path,
        "output_path": partition,
        "mode": req.mode,
        "incremental": req.incremental,
        "rescore": req.rescore,
        "score": req.settings.model_dump(mode="json"),
    }
    tags = {"aepipe.kind": "scoring", "aepipe.model.name": model.name, "aepipe.model.version": model.version}
    name = f"score-{model.name}-v{model.version}"
    return tracking.start_run(
        req.tracking_uri, req.settings.experiment, name, params, tags=tags, artifact_root=req.artifact_root
    )


def _drift(job: ScoreJob, markers: list[dict[str, Any]], calibration: dict[str, Any]) -> DriftReport | None:
    """Drift of the rows this run scored (resumed shards included) against the validation baseline."""
    sketch = report.merged_sketch(job.edges, markers)
    if sketch is None or sketch.n == 0:
        return None
    s = job.settings
    return check_drift(sketch, calibration, s.psi_limit, s.ks_alpha, s.drift_bins, s.ks_min)


def _rows(shards: list[publish.Shard]) -> int | None:
    """The shards' input rows, when every one knows its count (Parquet footers, image files; not windows)."""
    counts = [s.rows for s in shards]
    return None if None in counts else sum(c for c in counts if c is not None)


def _score_all(
    job: ScoreJob, to_score: list[publish.Shard], corpus: Corpus | None, log: Log, progress: Progress
) -> tuple[list[dict[str, Any]], Warmup, TopRows, LabelledScores, float]:
    """Score the pending shards (``corpus``: all of them, validated; None when none), up to ``shards_per_pass``
    per actor pool start; their markers, the warm-up, the highest-scored rows, the labelled rows' scores and the
    seconds it took."""
    t0, warmup, top, labelled = time.perf_counter(), Warmup(), TopRows(job.output.top_k), LabelledScores()
    new: list[dict[str, Any]] = []
    if corpus is None:
        return new, warmup, top, labelled, 0.0
    step = job.settings.shards_per_pass
    with progress_step(progress, "scoring", _rows(to_score)) as task:
        tally = ScoringProgress(task, len(to_score))
        for k in range(0, len(to_score), step):
            group = to_score[k : k + step]
            part = corpus if len(group) == len(to_score) else replace(shard_records(job, group), report=corpus.report)
            new += ScorePass(job, group, part, log, tally).run(warmup, top, labelled)
    return new, warmup, top, labelled, time.perf_counter() - t0


def _commit(
    req: ScoreRequest,
    job: ScoreJob,
    *,
    shards: list[publish.Shard],
    the_plan: Plan,
    corpus: Corpus | None,
    run_id: str,
    calibration: dict[str, Any],
    log: Log,
    progress: Progress,
    t0: float,
) -> report.RunOutcome:
    """Score what the plan says, verify the partition's shards from their files' footers, check their ids are
    unique, and commit the manifest."""
    new, warmup, top, labelled, score_seconds = _score_all(job, the_plan.to_score, corpus, log, progress)
    this_run = the_plan.resumed + new
    markers = sorted(the_plan.carried + this_run, key=lambda m: m["name"])
    rows = publish.verify(job.partition, markers, job.schema)
    if the_plan.carried or the_plan.resumed:  # shards this run did not validate together
        _check_unique_ids(job.partition, markers)
    outcome = report.RunOutcome(
        model=job.model,
        requested_uri=req.model_uri,
        mode=req.mode,
        input_path=req.input_path,
        shards=shards,
        plan=the_plan,
        markers=markers,
        this_run=this_run,
        rows=rows,
        rows_scored=sum(m["output_rows"] for m in new),
        score_seconds=score_seconds,
        warmup_seconds=warmup.seconds,
        warmup_rows=warmup.rows,
        drift=_drift(job, this_run, calibration),
        run_id=run_id,
        top=top,
        labelled=labelled,
    )
    publish.commit(job.partition, job.output.attempt, report.manifest(outcome, job.schema, time.perf_counter() - t0))
    listed = {f["path"] for m in markers for f in m["files"]} | {
        m["input_index"] for m in markers if "input_index" in m
    }
    swept = publish.sweep(job.partition, job.output.attempt, job.identity, listed)
    if swept:
        log(f"removed {len(swept)} files the new manifest does not list (older generation or killed attempts)")
    return outcome


def _check_unique_ids(partition: str, markers: list[dict[str, Any]]) -> None:
    """Ids unique across every file the partition will list, counted in Ray tasks (:func:`count_ids`; never
    collected on the driver): needed when shards scored by different runs are published together."""
    files = [storage.join(partition, f["path"]) for m in markers for f in m["files"] if f["rows"]]
    if not files:
        return
    repeated = count_ids(ray.data.read_parquet(files), keep=5).examples  # reads the id column alone
    if repeated:
        shown = ", ".join(str(i) for i in sorted(repeated, key=str))
        raise DataError(f"{partition}: ids occur in more than one shard (e.g. {shown}); they must be unique")


def run_scoring(req: ScoreRequest, log: Log = print, progress: Progress = SILENT) -> ScoreResult:
    """Score ``req.input_path`` with one pinned model version and publish the partition; needs ``ray.init``.
    ``log`` gets the lines worth keeping, ``progress`` the live state of validation and scoring.

    Raises:
        RegistryError: the model URI does not resolve.
        ConfigError: an actor pool that would leave the reads no CPU.
        DataError: bad or mismatched input (``on_bad_records=fail``), naming the file and row.
    """
    t0 = time.perf_counter()
    _check_cpus(req.settings)
    for path in (req.input_path, req.output_path):  # an unusable store stops here, before any work
        storage.check_reachable(path)
    model, bundle, files = _load_model(req, log)
    data_cfg = _data_config(bundle, req.settings)
    _check_input(bundle, data_cfg, req.input_path)
    partition = _partition(req)
    identity = {"model_name": model.name, "model_version": model.version, "mode": req.mode}
    shards, the_plan = make_plan(
        req.input_path,
        data_cfg,
        images_per_shard=req.settings.images_per_shard,
        incremental=req.incremental,
        rescore=req.rescore,
        output_path=req.output_path,
        partition=partition,
        identity=identity,
    )
    if the_plan is None:
        log(f"nothing to do: every input shard is already scored under {req.output_path}")
        return ScoreResult(partition, 0, 0, model, time.perf_counter() - t0, noop=True)
    job = _score_job(
        req, model, bundle, data_cfg=data_cfg, files=files, shards=shards, partition=partition, identity=identity
    )
    log(f"plan: {the_plan.describe()} (into {partition})")
    with _lease(partition, job.output.attempt, log):
        validating = progress_step(progress, f"validating {len(the_plan.to_score)} shards")
        with validating as task, counting(task, _rows(the_plan.to_score)) as counter:
            corpus = open_shards(job, the_plan.to_score, counter)  # bad input stops here, before anything is published
        run_id = _start_run(req, model, partition)
        try:
            outcome = _commit(
                req,
                job,
                shards=shards,
                the_plan=the_plan,
                corpus=corpus,
                run_id=run_id,
                calibration=bundle.calibration,
                log=log,
                progress=progress,
                t0=t0,
            )
            seconds = time.perf_counter() - t0
            sketch = report.merged_sketch(job.edges, outcome.this_run)
            report.log_run(req.tracking_uri, outcome, sketch, bundle, job.data_cfg, partition)
            tracking.end_run(req.tracking_uri, run_id)
        except BaseException:
            tracking.end_run(req.tracking_uri, run_id, "FAILED")
            raise
    return ScoreResult.of(outcome, partition, seconds)


@contextlib.contextmanager
def _lease(partition: str, attempt: str, log: Log) -> Iterator[None]:
    """Hold the partition's lease for the block (see :mod:`pipelines.score.publish`): a run that started
    later takes it over, and this one then stops before publishing."""
    previous = publish.take_lease(partition, attempt)
    if previous:
        who, when = previous.get("attempt"), previous.get("started_at")
        log(f"taking over {partition} from scoring run {who} (started {when}, killed or still running)")
    try:
        yield
    finally:
        publish.release_lease(partition, attempt)
