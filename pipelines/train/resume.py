"""Whether a training job continues an unfinished MLflow run of the same name (``train.resume``).

Continuing a run continues its latest checkpoint: weights, optimizer, schedule, early stopping. That is right
only for the same training on the same corpus, so every run records two fingerprints as tags
(:data:`CONFIG_TAG`, :data:`CORPUS_TAG`) and a job continues only an unfinished run whose fingerprints equal its
own: ``auto`` starts a new run otherwise (and says why), ``never`` always starts one, ``require`` stops with an
error instead of starting one.

The config fingerprint covers what is trained: the ``data``, ``model`` and ``train`` sections (ids, features,
windows, normalization, split, bad-record policy, every hyperparameter, the seed, the worker count, the device
and precision), except :data:`NOT_FINGERPRINTED`: settings that change where the input is held, how fast or
how often things are retried, kept or drawn, not what the weights become. Outside it as well: the job ``name``
(the key runs are found by), ``home`` and ``storage_path`` (where state lives), ``tracking`` (registration,
after training) and ``score``. ``data.path`` is left to the corpus fingerprint, which stands for the files
wherever they lie (:func:`pipelines.data.files.corpus_fingerprint`: names relative to the root, sizes,
modification times).

Which runs can be continued: FAILED and KILLED runs, and RUNNING runs whose driver is gone (a killed driver
leaves its run RUNNING). Each driver records itself on its run (:data:`DRIVER_TAG`: host, pid, process start
time); a RUNNING run whose driver still runs on this host belongs to a concurrent job of the same name and is
never taken, so two drivers of one job never share a run or its checkpoint folder (the Ray Train run is named
after the MLflow run id). A driver on another host cannot be checked and counts as gone: start concurrent
jobs of one name from one host (or with ``train.resume=never``). Two drivers starting within the same moment
may both take the same FAILED run: MLflow offers no compare-and-set to claim it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from pipelines import tracking
from pipelines.config import ConfigError, JobConfig, ResumePolicy
from pipelines.data.files import corpus_fingerprint
from pipelines.provenance import driver_alive, driver_id

CONFIG_TAG = "aepipe.config_fingerprint"
CORPUS_TAG = "aepipe.corpus_fingerprint"
DRIVER_TAG = "aepipe.driver"

#: Dotted config keys (and everything under them) that the config fingerprint leaves out.
NOT_FINGERPRINTED = (
    "data.path",  # the corpus fingerprint stands for the corpus
    "data.cache",  # where the input is held (memory or streamed)
    "data.cache_max_fraction",
    "train.resume",  # this policy itself
    "train.cpus_per_worker",  # resources and speed
    "train.threads_per_worker",
    "train.keep_freed_memory",
    "train.ddp_bucket_cap_mb",
    "train.checkpoint_every",  # how often state is saved and metrics sent
    "train.checkpoint_every_s",
    "train.metrics_flush_s",
    "train.keep_checkpoints",  # retention, retries and pictures
    "train.max_failures",
    "train.plot_rows",
    "train.fault_injection",  # tests kill a worker, then re-run without it
)


@dataclass(frozen=True)
class Fingerprints:
    """This job's fingerprints, and the settings behind the config one (to name what changed)."""

    config: str
    corpus: str
    settings: dict[str, str]
    """The fingerprinted settings, flattened as the run's params are (``model.hidden`` -> ``"[32]"``)."""


@dataclass(frozen=True)
class Decision:
    """Which run the job continues, if any, and why an unfinished run is not continued."""

    run_id: str | None
    """The run to continue; None = start a new run."""
    reason: str | None = None
    """``not resuming run ID: WHY`` when an unfinished run of the job exists but is not continued."""


def _fingerprinted(key: str) -> bool:
    return not any(key == skip or key.startswith(f"{skip}.") for skip in NOT_FINGERPRINTED)


def fingerprint_settings(job: JobConfig) -> dict[str, str]:
    """The settings the config fingerprint covers, as flattened ``key -> str(value)`` (the run params' form)."""
    sections = job.model_dump(mode="json", include={"data", "model", "train"})
    return {k: v for k, v in tracking.flatten(sections).items() if _fingerprinted(k)}


def config_fingerprint(job: JobConfig) -> str:
    """SHA-256 hex digest of :func:`fingerprint_settings`."""
    return hashlib.sha256(json.dumps(sorted(fingerprint_settings(job).items())).encode()).hexdigest()


def fingerprints(job: JobConfig) -> Fingerprints:
    """The job's config and corpus fingerprints (lists the corpus; a missing path raises DataError)."""
    return Fingerprints(config_fingerprint(job), corpus_fingerprint(job.data_path), fingerprint_settings(job))


def changed_settings(params: dict[str, str], settings: dict[str, str]) -> list[str]:
    """The fingerprinted keys whose value differs between an earlier run's ``params`` and ``settings``, sorted."""
    recorded = {k: v for k, v in params.items() if k.split(".")[0] in ("data", "model", "train") and _fingerprinted(k)}
    return sorted(k for k in recorded.keys() | settings.keys() if recorded.get(k) != settings.get(k))


def other_driver_running(recorded: str) -> bool:
    """Whether the driver a run records is alive and is not this process (a run this process left unfinished
    in an earlier call is free to continue)."""
    return recorded != driver_id() and driver_alive(recorded)


def why_not(run: tracking.RunRecord, current: Fingerprints, running: Callable[[str], bool]) -> str | None:
    """Why this job cannot continue ``run``; None when it can. ``running(driver)``: whether that driver is alive."""
    tags = run.tags
    if CONFIG_TAG not in tags or CORPUS_TAG not in tags:
        return "it records no fingerprints (started by an older aepipe)"
    if tags[CONFIG_TAG] != current.config:
        changed = changed_settings(run.params, current.settings)
        return "the config changed" + (f" ({', '.join(changed)})" if changed else "")
    if tags[CORPUS_TAG] != current.corpus:
        return "the corpus changed (a file under data.path was added, removed or rewritten)"
    driver = tags.get(DRIVER_TAG, "")
    if run.status == "RUNNING" and running(driver):
        host, _, rest = driver.partition("/")
        return f"its driver (pid {rest.partition('/')[0]} on {host}) is still running"
    return None


def decide(
    job: JobConfig,
    runs: list[tracking.RunRecord],
    current: Fingerprints,
    running: Callable[[str], bool] = other_driver_running,
) -> Decision:
    """Continue the newest of the job's unfinished ``runs`` (newest first) that :func:`why_not` allows, per
    ``job.train.resume``.

    Raises:
        ConfigError: ``require`` and no run can be continued (the message says why).
    """
    policy = job.train.resume
    if policy == ResumePolicy.never:
        return Decision(None)
    newest: tuple[str, str] | None = None
    for run in runs:
        why = why_not(run, current, running)
        if why is None:
            return Decision(run.run_id)
        newest = newest or (run.run_id, why)
    if policy == ResumePolicy.require:
        if newest is None:
            raise ConfigError(
                f"train.resume=require: job {job.name} has no unfinished run in experiment {job.tracking.experiment}"
            )
        raise ConfigError(f"train.resume=require: cannot continue run {newest[0]}: {newest[1]}")
    return Decision(None, None if newest is None else f"not resuming run {newest[0]}: {newest[1]}")


def plan(job: JobConfig, job_tag: str) -> tuple[Decision, Fingerprints]:
    """The job's fingerprints, and the decision over its unfinished runs (runs tagged ``job_tag`` = name)."""
    current = fingerprints(job)
    runs = tracking.unfinished_runs(job.tracking_uri, job.tracking.experiment, job_tag, job.name)
    return decide(job, runs, current), current
