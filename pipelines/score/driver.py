"""Scoring driver: pin the model version, plan the shards, score them in passes, verify, publish, report.

The model URI is resolved to one fixed version before any work starts; every actor loads that version once.
Output rows: ``id, score, is_anomaly, embedding, model_name, model_version`` (``mode`` picks the score
and/or embedding columns). The steps of :func:`run_scoring`: :func:`_load_model`, :func:`_prepare` (shards,
plan, output schema), the passes (:class:`pipelines.score.passes.ScorePass`), :func:`_commit` (verify,
manifest, publish) and the scoring run's report (:mod:`pipelines.score.report`).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import ray
from pydantic import BaseModel, ConfigDict, Field

from pipelines import tracking
from pipelines.bundle import ModelBundle, bundle_files
from pipelines.config import ConfigError, DataConfig, ScoreConfig
from pipelines.data import Corpus, DataError, load_dataset
from pipelines.score import publish, report
from pipelines.score.drift import DriftReport, check_drift, sketch_edges
from pipelines.score.passes import ScoreJob, ScorePass, Warmup, id_type, open_shards, output_schema
from pipelines.score.plan import Plan, corpus_shards, make_plan

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
        bundle.check_shape(load_dataset(data_cfg, input_path).sample_shape, input_path)
    except ValueError as exc:
        raise DataError(f"{exc}; score it with a model trained on this kind of data") from None


def _output_dirs(req: ScoreRequest, model: tracking.ResolvedModel) -> tuple[Path, Path]:
    """The partition to publish and its staging directory (one per model version and mode)."""
    final = Path(req.output_path) / req.partition if req.partition else Path(req.output_path)
    staging = final.with_name(f".{final.name}.staging-{model.name}-v{model.version}-{req.mode}")
    return final, staging


def _score_job(
    req: ScoreRequest,
    model: tracking.ResolvedModel,
    bundle: ModelBundle,
    *,
    data_cfg: DataConfig,
    files: dict[str, bytes],
    shards: list[publish.Shard],
    staging: Path,
) -> ScoreJob:
    embed_dim = bundle.infer(np.zeros((1, *bundle.input_shape), np.float32))["embedding"].shape[1]
    schema = output_schema(req.mode, id_type(shards[0], data_cfg), embed_dim)
    baseline = bundle.calibration.get("baseline_quantiles")
    edges = sketch_edges(np.asarray(baseline)) if baseline and req.mode != "embed" else None
    identity = {"model_name": model.name, "model_version": model.version, "mode": req.mode}
    return ScoreJob(
        model,
        data_cfg,
        req.settings,
        schema,
        edges,
        staging,
        identity,
        ray.put(files),
        req.input_path,
        bundle.input_shape,
    )


def _start_run(req: ScoreRequest, model: tracking.ResolvedModel, final: Path) -> str:
    params = {
        "model_uri": req.model_uri,
        "input_path": req.input_path,
        "output_path": str(final),
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


def _score_all(
    job: ScoreJob, to_score: list[publish.Shard], corpora: list[Corpus], log: Log
) -> tuple[list[dict[str, Any]], Warmup, float]:
    """Score the pending (validated) shards, up to ``shards_per_pass`` per actor pool start; their markers,
    the warm-up and the seconds it took."""
    t0, new, warmup = time.perf_counter(), [], Warmup()
    step = job.settings.shards_per_pass
    for k in range(0, len(to_score), step):
        new += ScorePass(job, to_score[k : k + step], corpora[k : k + step], log).run(warmup)
    return new, warmup, time.perf_counter() - t0


def _commit(
    req: ScoreRequest,
    job: ScoreJob,
    *,
    shards: list[publish.Shard],
    the_plan: Plan,
    corpora: list[Corpus],
    final: Path,
    run_id: str,
    calibration: dict[str, Any],
    log: Log,
    t0: float,
) -> report.RunOutcome:
    """Score what the plan says, verify the staged partition, write its manifest and publish it."""
    job.staging.mkdir(parents=True, exist_ok=True)
    for m in the_plan.carried:
        publish.carry_over(final, job.staging, m["output"], m)
    new, warmup, score_seconds = _score_all(job, the_plan.to_score, corpora, log)
    this_run = the_plan.resumed + new
    markers = sorted(the_plan.carried + this_run, key=lambda m: m["name"])
    publish.prune(job.staging, {m["output"] for m in markers})
    outcome = report.RunOutcome(
        model=job.model,
        requested_uri=req.model_uri,
        mode=req.mode,
        input_path=req.input_path,
        shards=shards,
        plan=the_plan,
        markers=markers,
        this_run=this_run,
        rows=publish.verify(job.staging, markers, job.schema),
        rows_scored=sum(m["output_rows"] for m in new),
        score_seconds=score_seconds,
        warmup_seconds=warmup.seconds,
        warmup_rows=warmup.rows,
        drift=_drift(job, this_run, calibration),
        run_id=run_id,
    )
    publish.write_manifest(job.staging, report.manifest(outcome, job.schema, time.perf_counter() - t0))
    publish.publish(job.staging, final)
    return outcome


def run_scoring(req: ScoreRequest, log: Log = print) -> ScoreResult:
    """Score ``req.input_path`` with one pinned model version and publish the partition; needs ``ray.init``.

    Raises:
        RegistryError: the model URI does not resolve.
        ConfigError: an actor pool that would leave the reads no CPU.
        DataError: bad or mismatched input (``on_bad_records=fail``), naming the file and row.
    """
    t0 = time.perf_counter()
    _check_cpus(req.settings)
    model, bundle, files = _load_model(req, log)
    data_cfg = _data_config(bundle, req.settings)
    shards = corpus_shards(req.input_path, data_cfg)
    _check_input(bundle, data_cfg, req.input_path)
    final, staging = _output_dirs(req, model)
    job = _score_job(req, model, bundle, data_cfg=data_cfg, files=files, shards=shards, staging=staging)
    the_plan = make_plan(
        shards,
        incremental=req.incremental,
        rescore=req.rescore,
        output_path=req.output_path,
        final=final,
        staging=staging,
        identity=job.identity,
    )
    if the_plan is None:
        log(f"nothing to do: every input shard is already scored under {req.output_path}")
        return ScoreResult(str(final), 0, 0, model, time.perf_counter() - t0, noop=True)
    log(f"plan: {the_plan.describe()} (staging in {staging})")
    log(f"validating the shards to score (on_bad_records={data_cfg.on_bad_records}) ...")
    corpora = open_shards(job, the_plan.to_score)  # bad input stops here, before anything is published
    run_id = _start_run(req, model, final)
    try:
        outcome = _commit(
            req,
            job,
            shards=shards,
            the_plan=the_plan,
            corpora=corpora,
            final=final,
            run_id=run_id,
            calibration=bundle.calibration,
            log=log,
            t0=t0,
        )
        seconds = time.perf_counter() - t0
        sketch = report.merged_sketch(job.edges, outcome.this_run)
        report.log_run(req.tracking_uri, outcome, sketch, bundle.calibration, final)
        tracking.end_run(req.tracking_uri, run_id)
    except BaseException:
        tracking.end_run(req.tracking_uri, run_id, "FAILED")
        raise
    return ScoreResult.of(outcome, str(final), seconds)
