"""Training driver: prepare the corpus, open the MLflow run, train on Ray Train, export, plot and register.

The steps of :func:`run_training`, in order: :func:`pipelines.train.resume.plan` (may this job continue an
unfinished run of its name?) beside :func:`prepare_data` (validate, split, fit the normalizer, cache),
:func:`open_run` (continue that run or start one), :func:`_fit` (a ``TorchTrainer`` running
:func:`pipelines.train.worker.train_loop_per_worker` on every worker) and :func:`_finish` (the best checkpoint
exported as the model bundle and registered while the end-of-run plots are drawn).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import numpy as np
import pandas as pd
import ray
import ray.data
from ray.train import Checkpoint, CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from pipelines import storage, tracking
from pipelines.bundle import ModelBundle, accepts_shape, bundle_files
from pipelines.config import ConfigError, JobConfig, ResumePolicy, TrainConfig
from pipelines.data import (
    SHARD_KEY,
    Normalizer,
    cache,
    load_dataset,
    normalize_dataset,
    rows_at_most,
    split_dataset,
    validate_and_fit,
    with_shard_key,
)
from pipelines.data.components import (
    MAX_VALUES,
    PrincipalComponents,
    check_measurable,
    measurable,
    principal_components,
)
from pipelines.progress import SILENT, Progress, counting, step
from pipelines.provenance import CODE_ROOT, driver_id, git_commit
from pipelines.tracking import plots, promotion
from pipelines.tracking.plot_rows import ScoreSummary, summarize_scores
from pipelines.train import checkpoint as ckpt
from pipelines.train import resume
from pipelines.train.feed import DriverFeed
from pipelines.train.spec import WorkerSpec
from pipelines.train.worker import starting_subspace, train_loop_per_worker

JOB_TAG = "aepipe.job"
GIT_TAG = "aepipe.git_commit"

#: glibc malloc tunables for training workers: serve blocks up to 32 MB (a conv layer's activations at batch 128
#: are a few MB) from the heap and never trim it. With glibc's defaults every step's activations were unmapped
#: when freed and faulted in again: ~70,000 minor faults/s per thread, a fifth of the CPU in the kernel, and half
#: the conv training speed of this setting on the bench host (see README, design notes).
KEEP_FREED_MEMORY = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"

Log = Callable[[str], None]
T = TypeVar("T")


def worker_env(tc: TrainConfig) -> dict[str, str]:
    """Environment variables the training worker processes start with (read by the dynamic loader at exec)."""
    return {"GLIBC_TUNABLES": KEEP_FREED_MEMORY} if tc.keep_freed_memory else {}


@dataclass
class TrainResult:
    """What a finished training job produced."""

    run_id: str
    model_name: str
    model_version: str | None
    aliases: dict[str, str]
    bundle_dir: str
    metrics: dict[str, float]
    threshold: float
    """The anomaly threshold calibrated on the validation scores (``score > threshold``: anomalous)."""


@dataclass
class PreparedData:
    """The corpus made ready for the workers."""

    splits: dict[str, ray.data.Dataset]
    """``train`` and ``val``: normalized ``x`` and the row's shard key (held in the object store when ``cached``)."""
    val_rows: ray.data.Dataset
    """Validation rows as read (un-normalized, with labels when present): plots and the input example."""
    normalizer: Normalizer
    records: int
    skipped: int
    cached: bool
    latent_dim: int | None = None
    """The code size measured from the training split (``data.latent_variance``); None when not asked for."""
    principal: PrincipalComponents | None = None
    """The training split's principal components: measured for ``data.latent_variance`` or for a model that starts
    from them (``train.principal_start``); None when neither asked."""


def _check_shape(job: JobConfig, sample_shape: tuple[int, ...]) -> None:
    """Samples must match model.input_shape, or be flat with as many values (784 -> (1, 28, 28))."""
    expected = tuple(job.model["input_shape"])
    if not accepts_shape(sample_shape, expected):
        raise ConfigError(
            f"{job.data_path}: samples have shape {sample_shape} but model.input_shape is "
            f"{expected}; set model.input_shape={list(sample_shape)}"
        )


def _cache_decision(job: JobConfig, sample_shape: tuple[int, ...]) -> cache.CacheDecision:
    """Whether the splits will be held in memory, decided before the corpus is read (so that the validation pass
    can keep the rows): ``auto`` judges by an upper bound on the records (:func:`rows_at_most`)."""
    rows = rows_at_most(job.data, job.data_path) if job.data.cache == "auto" else 0
    return cache.decide(job.data.cache, rows, sample_shape, job.data.cache_max_fraction)


def _starts_principal(job: JobConfig, families: Sequence[str]) -> bool:
    """Whether a model of one of ``families`` trained by ``job`` starts at the principal subspace."""
    from aecore import model_class

    return job.train.principal_start and any(model_class(family).principal_start for family in families)


def prepare_data(
    job: JobConfig, log: Log, progress: Progress = SILENT, families: Sequence[str] | None = None
) -> PreparedData:
    """Validate the corpus (bad input stops here, or is quarantined, before training), split it by id, fit the
    normalizer on the training split and cache both splits when they fit; measure the training split's principal
    components when the job sizes its code from them or one of the ``families`` it trains (default: the job's
    ``model.name``) starts from them.

    The validation pass is the only read of the files before training (:func:`validate_and_fit`): it fits the
    normalizer too, and when the splits are cached it keeps the good records in the object store, from which the
    cached splits are made. Streamed, every epoch then reads the files again."""
    for path in (job.data_path, job.checkpoint_path):  # an unusable store stops here, before any work
        storage.check_reachable(path)
    quarantine = storage.join(job.checkpoint_path, "quarantine", job.name)  # beside the checkpoints: any node's
    corpus = load_dataset(job.data, job.data_path, quarantine_dir=quarantine)
    if job.data.on_bad_records == "fail" or job.data.source != "parquet":
        _check_shape(job, corpus.sample_shape)  # a model.input_shape that does not suit the corpus: say so
    if job.data.source == "parquet":  # read at the model's size: a shard of other lengths is bad wherever it sorts
        shape = tuple(job.model["input_shape"])
        corpus = load_dataset(job.data, job.data_path, quarantine_dir=quarantine, for_model=shape)
    caching = _cache_decision(job, corpus.sample_shape)
    dc = job.data
    values = int(np.prod(corpus.sample_shape))
    if dc.latent_variance is not None:  # a setting that cannot work stops before the corpus is read
        check_measurable(values, job.data_path)
    with step(progress, "validating the corpus, fitting normalization") as task, counting(task) as counter:
        corpus, normalizer = validate_and_fit(
            corpus, dc.val_fraction, dc.normalize, dc.normalize_scope, keep=caching.in_memory, counter=counter
        )
    assert corpus.report is not None  # validate_and_fit always reports
    log(f"corpus: {corpus.report.records} records ({corpus.report.skipped} skipped) in {job.data_path}")
    train_ds, val_ds = split_dataset(corpus.dataset, dc.val_fraction)
    normalized = {
        name: normalize_dataset(with_shard_key(ds), normalizer).select_columns(["x", SHARD_KEY])
        for name, ds in (("train", train_ds), ("val", val_ds))
    }
    log(f"training input: {caching.reason}")
    with step(progress, "caching the splits" if caching.in_memory else "planning the streamed splits"):
        splits = cache.prepare(normalized, caching)
        # cached: the validation rows as read are kept too, so that the records the pass kept can be released
        val_rows = val_ds.materialize() if caching.in_memory else val_ds
    starts = _starts_principal(job, families or [job.model["name"]])
    if starts and not measurable(values):
        log(f"model starts from random weights: samples of {values} values are too large for principal components "
            f"(at most {MAX_VALUES})")  # fmt: skip
    latent_dim, principal = None, None
    if dc.latent_variance is not None or (starts and measurable(values)):
        with step(progress, "principal components of the training split"):
            principal = principal_components(splits["train"], values)
    if dc.latent_variance is not None and principal is not None:
        latent_dim = principal.holding(dc.latent_variance)
        log(f"code size: {latent_dim} principal components hold {dc.latent_variance:.0%} of the training split's "
            "variance (model.latent_dim)")  # fmt: skip
    report = corpus.report
    return PreparedData(
        splits, val_rows, normalizer, report.records, report.skipped, caching.in_memory, latent_dim, principal
    )


def sized(job: JobConfig, data: PreparedData) -> JobConfig:
    """``job`` with the code size measured from its data when it asked for one (``data.latent_variance``)."""
    if data.latent_dim is None:
        return job
    return job.model_copy(update={"model": {**job.model, "latent_dim": data.latent_dim}})


def open_run(job: JobConfig, decision: resume.Decision, current: resume.Fingerprints, commit: str) -> str:
    """Continue the run ``decision`` names or start a new one; either way record this driver and ``commit``.

    A run stays unfinished (RUNNING after a killed driver, FAILED after too many worker failures) until a
    driver completes it; continuing it continues, because the Ray run name is derived from the run id, the same
    Ray Train run and its latest checkpoint. A new run records the fingerprints that
    :mod:`pipelines.train.resume` compares. ``aepipe.git_commit`` is the code of the latest driver (a continued
    run may resume with a fix); ``mlflow.source.git.commit`` stays the code that started the run.
    """
    uri = job.tracking_uri
    provenance = {GIT_TAG: commit, resume.DRIVER_TAG: driver_id()}
    if decision.run_id is not None:
        tracking.reopen_run(uri, decision.run_id)
        tracking.set_tags(uri, decision.run_id, provenance)
        return decision.run_id
    resolved = {"data_path": job.data_path, "checkpoint_path": job.checkpoint_path, "tracking_uri": uri}
    return tracking.start_run(
        uri,
        job.tracking.experiment,
        job.name,
        {**job.model_dump(mode="json"), "resolved": resolved},
        tags={
            JOB_TAG: job.name,
            "aepipe.model": job.model["name"],
            "aepipe.data.source": job.data.source,
            "aepipe.data.path": job.data_path,
            resume.CONFIG_TAG: current.config,
            resume.CORPUS_TAG: current.corpus,
            "mlflow.source.git.commit": commit,
            **provenance,
        },
        artifact_root=job.resolve("mlartifacts"),
    )


def ray_run_name(job: JobConfig, run_id: str) -> str:
    """The Ray Train run's name: the job's, made unique by the MLflow run it belongs to."""
    return f"{job.name}-{run_id[:8]}"


def _use_gpu(job: JobConfig) -> bool:
    """One GPU per worker (NCCL) when configured, or by default when the cluster has GPUs; else gloo on CPU."""
    use = job.train.use_gpu if job.train.use_gpu is not None else ray.cluster_resources().get("GPU", 0) >= 1
    if not use and job.train.precision == "fp16":
        raise ConfigError("train.precision=fp16 needs GPU workers (train.use_gpu); on CPU use bf16 or fp32")
    return bool(use)


def _trainer(job: JobConfig, spec: WorkerSpec, splits: dict[str, ray.data.Dataset]) -> TorchTrainer:
    tc = job.train
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=spec.as_loop_config(),
        scaling_config=ScalingConfig(
            num_workers=tc.num_workers, use_gpu=_use_gpu(job), resources_per_worker={"CPU": tc.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=ray_run_name(job, spec.run_id),
            storage_path=job.checkpoint_path,
            checkpoint_config=CheckpointConfig(
                num_to_keep=tc.keep_checkpoints, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
            ),
            failure_config=FailureConfig(max_failures=tc.max_failures),
            worker_runtime_env={"env_vars": worker_env(tc)},  # type: ignore[call-arg]  # Train V2's RunConfig
        ),
        datasets=dict(splits),
        # Only a streamed training split goes through Ray's streaming_split; every other split reaches each
        # worker whole and the worker keeps the rows it owns by shard key (pipelines/train/input.py)
        dataset_config=DataConfig(datasets_to_split=[] if spec.keep_in_worker else ["train"]),
    )


def _fit(
    job: JobConfig, spec: WorkerSpec, splits: dict[str, ray.data.Dataset], feed: DriverFeed
) -> list[tuple[Checkpoint, dict[str, Any]]]:
    """Train on Ray, following rank 0's progress; the run's kept checkpoints with their metrics. A failed fit
    marks the MLflow run FAILED."""
    try:
        with feed.following():
            result = _trainer(job, spec, splits).fit()
    except Exception:
        tracking.end_run(spec.tracking_uri, spec.run_id, "FAILED")
        raise
    return list(result.best_checkpoints or [])


class _Aside(Generic[T]):
    """``work(log)`` on a thread of its own beside the driver's; the lines it logs are held until :meth:`result`, so
    that they keep their place in the console."""

    def __init__(self, name: str, work: Callable[[Log], T]) -> None:
        self.lines: list[str] = []
        self.given = False
        self.value: T | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,), name=f"aepipe-{name}", daemon=True)
        self.thread.start()

    def _run(self, work: Callable[[Log], T]) -> None:
        try:
            self.value = work(self.lines.append)
        except BaseException as exc:  # raised in the driver's thread by result()
            self.error = exc

    def result(self, log: Log) -> T:
        """Wait for the work; log its lines (on the first call); its value, or its exception raised."""
        self.thread.join()
        if not self.given:
            self.given = True
            for line in self.lines:
                log(line)
        if self.error is not None:
            raise self.error
        return cast(T, self.value)


def _export_bundle(job: JobConfig, run_id: str, best: Checkpoint) -> Path:
    """The best checkpoint as a local model bundle (its optimizer state stays with the checkpoint)."""
    bundle_dir = Path(job.resolve("outputs")) / "models" / run_id / tracking.BUNDLE_ARTIFACT
    best.to_directory(str(bundle_dir))
    (bundle_dir / ckpt.STATE_FILE).unlink()
    return bundle_dir


def _finish(
    job: JobConfig,
    spec: WorkerSpec,
    data: PreparedData,
    kept: list[tuple[Checkpoint, dict[str, Any]]],
    log: Log,
    progress: Progress,
) -> TrainResult:
    """Export the best checkpoint, plot, log the model, register it and close the MLflow run."""
    uri, run_id, tr = job.tracking_uri, spec.run_id, job.tracking
    best_ckpt, best_metrics = min(kept, key=lambda cm: cm[1]["val_loss"])
    for path in ckpt.prune_unregistered(spec.run_dir, [c.path for c, _ in kept]):
        log(f"removed unregistered checkpoint {path} (left by an interrupted attempt)")
    bundle_dir = _export_bundle(job, run_id, best_ckpt)
    bundle = ModelBundle.load(bundle_dir)
    # the pictures and labelled metrics do not change the registered model: drawn while it is logged and registered
    pictures = _Aside(
        "plots",
        lambda aside_log: _plot_validation(job, run_id, bundle, bundle_dir, data, best_metrics, aside_log, progress),
    )
    with step(progress, "logging and registering the model"):
        example = input_example(data.val_rows.take_batch(2, batch_format="numpy"))
        version = tracking.log_model(uri, run_id, bundle_dir, example, tr.registered_model, tr.registry_uri)
    decision = None
    if version is not None:
        held_out = data.val_rows.select_columns(["x"]).take_batch(tr.gate_rows, batch_format="numpy")["x"]
        decision = promotion.register_version(
            uri, tr, version, best_metrics, bundle=bundle, held_out=held_out, run_id=run_id
        )
    pictures.result(log)
    if decision is not None:
        log(f"champion gate: {'passed' if decision.passed else 'not passed'} ({decision.reason})")
    tracking.end_run(uri, run_id)
    return TrainResult(
        run_id,
        tr.registered_model,
        version,
        tracking.aliases(uri, tr.registered_model, tr.registry_uri),
        str(bundle_dir),
        {k: float(v) for k, v in best_metrics.items()},
        float(bundle.calibration["threshold"]),
    )


def _plan_resume(job: JobConfig, log: Log) -> tuple[resume.Decision, resume.Fingerprints]:
    """:func:`pipelines.train.resume.plan`, saying why an unfinished run is not continued."""
    decision, current = resume.plan(job, JOB_TAG)
    if decision.reason:
        log(decision.reason)
    return decision, current


def run_training(
    job: JobConfig, log: Log = print, *, code_commit: str | None = None, progress: Progress = SILENT
) -> TrainResult:
    """Train ``job`` on the connected Ray cluster and register the model; needs ``ray.init``.

    ``log`` gets the lines worth keeping (one per step and per epoch), ``progress`` the live state of the long
    steps (see :mod:`pipelines.progress`).

    ``code_commit``: the commit of this code when git cannot tell (a Ray job's working_dir comes without
    ``.git``); the run records git's answer for :data:`~pipelines.provenance.CODE_ROOT` first, else this, else
    ``unknown``.

    Raises:
        ConfigError: a setting that cannot work with this corpus or cluster; ``train.resume=require`` and no
            unfinished run of the job to continue (before the corpus is read).
        DataError: bad input (``on_bad_records=fail``), naming the file and row.
    """
    # MLflow's first answer (a new SQLite store creates its tables: seconds) comes while the corpus is read; a job
    # that must continue a run learns that it cannot before the corpus is read
    planning = _Aside("resume-plan", lambda aside_log: _plan_resume(job, aside_log))
    if job.train.resume == ResumePolicy.require:
        planning.result(log)

    def after_planning(line: str) -> None:  # the plan's line, if any, stays before the data pass's
        planning.result(log)
        log(line)

    data = prepare_data(job, after_planning, progress)
    job = sized(job, data)
    decision, current = planning.result(log)
    run_id = open_run(job, decision, current, git_commit(CODE_ROOT) or code_commit or "unknown")
    uri = job.tracking_uri
    counts = {
        "data_records": data.records,
        "data_skipped_records": data.skipped,
        "data_cached_in_memory": float(data.cached),
    }
    tracking.log_metrics(uri, run_id, counts, step=0)
    run_name = ray_run_name(job, run_id)
    feed = DriverFeed(job.train.epochs, log, progress)
    start = starting_subspace(job, data.principal)
    if start is not None:
        log(f"{job.model['name']} model starts at the training split's {len(start.components)} principal components "
            "(train.principal_start)")  # fmt: skip
    spec = WorkerSpec(
        job=job,
        normalizer=data.normalizer,
        run_id=run_id,
        tracking_uri=uri,
        run_dir=f"{job.checkpoint_path.rstrip('/')}/{run_name}",
        keep_in_worker=data.cached,
        records=data.records,
        progress=feed.queue,
        principal=start,
    )
    log(f"MLflow run {run_id} ({uri}); Ray Train run {run_name} under {job.checkpoint_path}")
    kept = _fit(job, spec, data.splits, feed)
    return _finish(job, spec, data, kept, log, progress)


def _plot_validation(
    job: JobConfig,
    run_id: str,
    bundle: ModelBundle,
    bundle_dir: Path,
    data: PreparedData,
    best_metrics: dict[str, Any],
    log: Log,
    progress: Progress,
) -> None:
    """Score the validation split with the exported model; log the labelled metrics (binary labels) and the
    end-of-run pictures."""
    summary = _summarize_validation(job, bundle, bundle_dir, data.val_rows, log, progress)
    if summary is None:
        return
    labelled = summary.labelled.metrics(bundle.threshold, prefix="val_")
    if labelled:  # a binary label column: how well the registered model's score finds the anomalous rows
        tracking.log_metrics(job.tracking_uri, run_id, labelled, step=int(best_metrics.get("epoch", 0)))
        log(_describe_labelled(labelled))
    with step(progress, "plotting"):
        _log_plots(job, run_id, bundle, summary, log=log)


def _summarize_validation(
    job: JobConfig, bundle: ModelBundle, bundle_dir: Path, val_rows: ray.data.Dataset, log: Log, progress: Progress
) -> ScoreSummary | None:
    """Score every validation row with the exported model (:func:`summarize_scores`): the pictures' rows and the
    labelled metrics. None, with a warning, when that fails: neither must cost a finished multi-hour training."""
    try:
        with step(progress, "scoring the validation split"):
            tc = job.train
            return summarize_scores(
                val_rows, bundle_files(bundle_dir), bundle.calibration, n=tc.plot_rows, seed=tc.seed
            )
    except Exception as exc:
        log(f"warning: scoring the validation split failed ({type(exc).__name__}: {exc}); no plots or labelled metrics")
        return None


def _log_plots(job: JobConfig, run_id: str, bundle: ModelBundle, summary: ScoreSummary, log: Log) -> None:
    """Draw the end-of-run pictures from the summary of every validation score and a uniform sample of the
    split, and log them under ``plots/`` (with ``plot_rows.json``: which rows each picture shows)."""
    uri = job.tracking_uri
    try:
        with tempfile.TemporaryDirectory() as tmp:
            plots.render(bundle, summary.sample_batch(), summary, tracking.metric_histories(uri, run_id), tmp)
            tracking.log_artifacts(uri, run_id, tmp, "plots")
    except Exception as exc:  # pictures must never cost a finished multi-hour training
        log(f"warning: plots failed ({type(exc).__name__}: {exc}); the model is still registered")


def _describe_labelled(metrics: dict[str, float]) -> str:
    """One console line of the labelled validation metrics."""
    m = {k.removeprefix("val_"): v for k, v in metrics.items()}
    return (
        f"labelled validation rows: AUROC {m['auroc']:.3f}, average precision {m['average_precision']:.3f}, "
        f"F1 at the threshold {m['f1']:.3f} ({m['labelled_rows']:.0f} rows, {m['anomalous_fraction']:.1%} anomalous)"
    )


def input_example(sample: dict[str, np.ndarray]) -> pd.DataFrame:
    """Two real validation rows as the pyfunc input example (``x`` holds each raw sample, flattened)."""
    return pd.DataFrame({"x": [np.asarray(row, np.float32).reshape(-1).tolist() for row in sample["x"][:2]]})
