"""The search driver: prepare the corpus once, open the search's MLflow run, run the trials with Ray Tune (ASHA),
write the leaderboard and register the best trial's model through the champion gate.

A killed search continues when the same job runs again: the newest unfinished search run of the job whose
fingerprint (the job's settings, tune section included, and the corpus listing) equals this one's is reopened and
its Ray Tune experiment restored from its storage path (finished trials are kept, unfinished ones run again).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray

from aecore import model_class
from pipelines import storage, tracking
from pipelines.bundle import ModelBundle
from pipelines.config import ConfigError, JobConfig
from pipelines.progress import SILENT, Progress, Task
from pipelines.provenance import CODE_ROOT, git_commit
from pipelines.tracking import promotion
from pipelines.train import resume
from pipelines.train.driver import GIT_TAG, PreparedData, input_example, prepare_data, sized
from pipelines.tune import leaderboard, objective
from pipelines.tune.space import Branch, families, param_space, parse_space, raw_space, trial_points
from pipelines.tune.trial import TrialData, run_trial

TUNE_JOB_TAG = "aepipe.tune.job"
FINGERPRINT_TAG = "aepipe.tune.fingerprint"
BEST_RUN_TAG = "aepipe.tune.best_run"
#: The principal components handed to the trials: a linear trial with a larger code starts from random weights.
MAX_SHIPPED_COMPONENTS = 512

Log = Callable[[str], None]


@dataclass
class TuneResult:
    """What a finished search produced."""

    run_id: str
    """The search's MLflow run (the trials' runs are nested under it)."""
    best_run_id: str
    model_name: str
    model_version: str | None
    aliases: dict[str, str]
    metric: str
    rows: list[dict[str, Any]]
    """The leaderboard, best first (see :mod:`pipelines.tune.leaderboard`)."""
    gate: str
    bundle_dir: str


def _fingerprint(job: JobConfig) -> str:
    """Config (tune section included) and corpus listing: what must not change for a search to continue."""
    current = resume.fingerprints(job)
    tuned = json.dumps(job.tune.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(f"{current.config}|{current.corpus}|{tuned}".encode()).hexdigest()


def search_name(job: JobConfig, run_id: str) -> str:
    """The Ray Tune experiment's name under the job's storage path."""
    return f"tune-{job.name}-{run_id[:8]}"


def _open_search(job: JobConfig, fingerprint: str, log: Log) -> tuple[str, bool]:
    """The search's MLflow run and whether its Tune experiment is restored: the newest unfinished search of the job
    with this fingerprint whose experiment can be restored, else a new run."""
    from ray.tune import Tuner

    uri = job.tracking_uri
    commit = git_commit(CODE_ROOT) or "unknown"
    for run in tracking.unfinished_runs(uri, job.tracking.experiment, TUNE_JOB_TAG, job.name):
        path = storage.join(job.checkpoint_path, search_name(job, run.run_id))
        if run.tags.get(FINGERPRINT_TAG) == fingerprint and Tuner.can_restore(path):
            tracking.reopen_run(uri, run.run_id)
            tracking.set_tags(uri, run.run_id, {GIT_TAG: commit})
            log(f"continuing the unfinished search run {run.run_id}")
            return run.run_id, True
        log(f"not continuing search run {run.run_id}: its settings, corpus or stored trials differ")
    params = {**job.model_dump(mode="json"), "resolved": {"data_path": job.data_path, "tracking_uri": uri}}
    tags = {
        TUNE_JOB_TAG: job.name,
        FINGERPRINT_TAG: fingerprint,
        "aepipe.data.source": job.data.source,
        "aepipe.data.path": job.data_path,
        "mlflow.source.git.commit": commit,
        GIT_TAG: commit,
    }
    run_id = tracking.start_run(
        uri, job.tracking.experiment, f"{job.name}-tune", params, tags, job.resolve("mlartifacts")
    )
    return run_id, False


def _rows(ds: ray.data.Dataset, columns: list[str]) -> dict[str, np.ndarray]:
    """Every row of the (small, cached) dataset ``ds``: ``{column: [N, ...]}``."""
    batches = list(ds.select_columns(columns).iter_batches(batch_size=4096, batch_format="numpy"))
    return {c: np.concatenate([b[c] for b in batches]) if batches else np.zeros(0) for c in columns}


def shared_inputs(job: JobConfig, data: PreparedData) -> TrialData:
    """The arrays every trial trains and is judged on: the normalized splits and the validation labels (the
    search's run id is set once that run is open)."""
    if not data.cached:
        raise ConfigError(
            f"{job.data_path}: aepipe tune trains every trial on the corpus held in memory, but it does not fit "
            "(see data.cache and data.cache_max_fraction); tune on a sample of the corpus"
        )
    shape = tuple(job.model["input_shape"])
    train_x = _rows(data.splits["train"], ["x"])["x"].astype(np.float32).reshape(-1, *shape)
    has_label = "label" in data.val_rows.schema().names
    val = _rows(data.val_rows, ["x", "label"] if has_label else ["x"])
    val_x = data.normalizer.apply(val["x"].astype(np.float32).reshape(-1, *shape))
    labelled = objective.labelled_rows(val["label"]) if has_label else None
    positive = None
    if labelled is not None and labelled.any():
        marked = objective.anomalous(val["label"][labelled], job.tune.anomaly_labels)
        if marked is not None:
            positive = np.zeros(len(labelled), bool)
            positive[labelled] = marked
    # the leading components a trial's linear model may start at (a larger code starts from random weights)
    principal = data.principal.leading(MAX_SHIPPED_COMPONENTS) if data.principal is not None else None
    labelled = labelled if positive is not None else None
    return TrialData(job, "", data.normalizer, train_x, val_x, positive, labelled, principal)


class _TrialLines:
    """Ray Tune callback: one line per finished trial, and a bar over the trials."""

    def __init__(self, trials: int, epochs: int, metric: str, log: Log, progress: Progress) -> None:
        from ray.tune import Callback

        self.trials, self.epochs, self.metric, self.log, self.done = trials, epochs, metric, log, 0
        self.bar: Task = progress.task("trials", trials)
        outer = self

        class Lines(Callback):
            def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                outer.finished(trial, None)

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                outer.finished(trial, "failed")

        self.callback = Lines()

    def finished(self, trial: Any, failure: str | None) -> None:
        self.done += 1
        result = trial.last_result or {}
        values = leaderboard.describe(trial.config)
        epoch = int(result.get("epoch", 0))
        if failure:
            how = failure
        elif result.get("early_stop"):
            how = f"early stop at epoch {epoch}"
        elif epoch < self.epochs:
            how = f"stopped by ASHA at epoch {epoch}/{self.epochs}"
        else:
            how = f"{epoch} epochs"
        value = result.get("best_objective")
        figure = f"best {self.metric}={value:.5g} " if isinstance(value, float) else ""
        self.log(f"trial {self.done}/{self.trials} {trial.trial_id} {values}: {figure}({how})")
        self.bar.update(self.done)


def _tuner(
    job: JobConfig, shared: TrialData, branches: list[Branch], points: list[dict], name: str, restore: bool, lines: Any
) -> Any:
    """The Ray Tune search (restored when ``restore``): one trial per point of :func:`trial_points`."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    tn, metric = job.tune, job.tune.metric
    cpus = ray.cluster_resources().get("CPU", 1.0)
    concurrent = tn.max_concurrent or max(1, int(cpus // tn.cpus_per_trial))
    trainable = tune.with_resources(tune.with_parameters(run_trial, data=shared), {"cpu": tn.cpus_per_trial})
    if restore:
        return tune.Tuner.restore(
            storage.join(job.checkpoint_path, name), trainable, resume_unfinished=True, resume_errored=True
        )
    epochs = job.train.epochs
    grace = min(tn.grace_epochs or max(2, epochs // 4), epochs)
    return tune.Tuner(
        trainable,
        param_space=param_space(branches),
        tune_config=tune.TuneConfig(
            metric=metric.value,
            mode=metric.mode,
            num_samples=len(points),
            scheduler=ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=grace),
            search_alg=BasicVariantGenerator(
                points_to_evaluate=points, random_state=tn.seed, max_concurrent=concurrent
            ),
            time_budget_s=tn.time_budget_s,
            reuse_actors=True,  # the next trial runs in a finished trial's process: no new interpreter, torch import
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=job.checkpoint_path,
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=metric.value, checkpoint_score_order=metric.mode
            ),
            callbacks=[lines.callback],
            verbose=0,
        ),
    )


def _close_trial_runs(uri: str, rows: list[dict[str, Any]]) -> None:
    """Trials ASHA stopped never reach their own end: their MLflow runs are closed here."""
    for row in rows:
        run_id = row.get("run_id")
        if run_id and tracking.run_status(uri, run_id) == "RUNNING":
            tracking.end_run(uri, run_id, "FINISHED" if row["status"] != "failed" else "FAILED")


def _log_search(uri: str, run_id: str, space: list[dict[str, Any]], rows: list[dict[str, Any]], metric: str) -> None:
    """The space and the leaderboard (CSV, JSON, a chart) as the search run's artifacts under ``tune/``."""
    import yaml

    with tempfile.TemporaryDirectory(prefix="aepipe-tune-") as tmp:
        folder = Path(tmp)
        (folder / "space.yaml").write_text(yaml.safe_dump(space, sort_keys=False))
        leaderboard.write(folder, rows, metric)
        tracking.log_artifacts(uri, run_id, folder, "tune")


def _register_best(
    job: JobConfig, best: Any, row: dict[str, Any], data: PreparedData, log: Log
) -> tuple[str | None, str, str]:
    """Log the best trial's bundle as its run's model, register it and pass it through the champion gate; returns
    (version, gate verdict, bundle folder)."""
    uri, tr = job.tracking_uri, job.tracking
    run_id = row["run_id"]
    kept = best.best_checkpoints or ([(best.checkpoint, {})] if best.checkpoint else [])
    if not kept:
        raise RuntimeError(f"the best trial {row['trial']} left no checkpoint")
    checkpoint = kept[-1][0]
    bundle_dir = Path(job.resolve("outputs")) / "models" / run_id / tracking.BUNDLE_ARTIFACT
    checkpoint.to_directory(str(bundle_dir))
    bundle = ModelBundle.load(bundle_dir)
    example = input_example(data.val_rows.take_batch(2, batch_format="numpy"))
    version = tracking.log_model(uri, run_id, bundle_dir, example, tr.registered_model, tr.registry_uri)
    verdict = "not registered"
    if version is not None:
        held_out = data.val_rows.select_columns(["x"]).take_batch(tr.gate_rows, batch_format="numpy")["x"]
        metrics = {k: v for k, v in row.items() if isinstance(v, float)}
        decision = promotion.register_version(
            uri, tr, version, metrics, bundle=bundle, held_out=held_out, run_id=run_id
        )
        verdict = f"{'passed' if decision.passed else 'not passed'} ({decision.reason})"
        log(f"champion gate: {verdict}")
    return version, verdict, str(bundle_dir)


def run_tuning(job: JobConfig, log: Log = print, *, source: str = "config", progress: Progress = SILENT) -> TuneResult:
    """Search ``job``'s space on the connected Ray cluster and register the best trial's model; needs ``ray.init``.

    Raises:
        ConfigError: a bad ``tune`` section (naming ``source``), a labelled objective without labels, a corpus too
            large to hold in memory.
        DataError: bad input (``on_bad_records=fail``), naming the file and row.
    """
    branches = parse_space(job, source)
    if job.train.precision == "fp16":
        raise ConfigError(
            f"{source}: aepipe tune trains on CPU, where train.precision=fp16 cannot run; use bf16 or fp32"
        )
    data = prepare_data(job, log, progress, families(branches))
    job = sized(job, data)  # every trial at the code size measured from the data, when the job asked for it
    starting = [f for f in families(branches) if model_class(f).principal_start]
    if data.principal is not None and starting and job.train.principal_start:
        log(f"{', '.join(starting)} trials start at the training split's principal components (train.principal_start)")
    uri, metric = job.tracking_uri, job.tune.metric
    shared = shared_inputs(job, data)
    objective.check_objective(metric, shared.val_positive, source)
    parent, restoring = _open_search(job, _fingerprint(job), log)
    shared = dataclasses.replace(shared, parent_run_id=parent)
    try:
        name = search_name(job, parent)
        log(f"MLflow run {parent} ({uri}); Ray Tune experiment {name} under {job.checkpoint_path}")
        points = trial_points(branches, job.tune.trials, job.tune.seed)
        if len(points) < job.tune.trials:
            log(f"tune.trials={job.tune.trials}, but the space holds {len(points)} distinct settings: one trial each")
        lines = _TrialLines(len(points), job.train.epochs, metric.value, log, progress)
        try:
            results = _tuner(job, shared, branches, points, name, restoring, lines).fit()
        finally:
            lines.bar.close()
        rows = leaderboard.rows(results, metric.value, metric.mode)
        _close_trial_runs(uri, rows)
        _log_search(uri, parent, raw_space(job), rows, metric.value)
        finished = [r for r in rows if r.get(metric.value) is not None and r["status"] != "failed"]
        if not finished:
            raise RuntimeError(f"no trial of search run {parent} finished an epoch; see its trials' errors")
        best = results.get_best_result(metric.value, metric.mode, scope="all")
        row = next(r for r in finished if r["trial"] == best.metrics.get("trial_id"))
    except BaseException:
        tracking.end_run(uri, parent, "FAILED")
        raise
    version, verdict, bundle_dir = _register_best(job, best, row, data, log)
    tracking.set_tags(uri, parent, {BEST_RUN_TAG: row["run_id"], "aepipe.tune.best_version": version or ""})
    tracking.log_metrics(uri, parent, {f"best_{metric.value}": row[metric.value], "trials": len(rows)}, step=0)
    tracking.end_run(uri, parent)
    aliases = tracking.aliases(uri, job.tracking.registered_model, job.tracking.registry_uri)
    return TuneResult(
        parent, row["run_id"], job.tracking.registered_model, version, aliases, metric.value, rows, verdict, bundle_dir
    )
