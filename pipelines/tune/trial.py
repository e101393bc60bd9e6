"""One trial of ``aepipe tune``: a training run inside the Ray Tune trial's own process, on the rows every trial
shares.

Why in-process and not a ``TorchTrainer`` per trial: on a small machine every nested trainer is a controller
actor and a worker group asking for CPUs on top of the trial's own, so two concurrent trials already ask for
more than 2 cores hold (DESIGN.md, "Known hazards"), and each trial would pay a worker group's start-up and its Ray
Data iterators. A trial instead holds one process and ``tune.cpus_per_trial`` CPUs, and trains one model
on the arrays the driver put in the object store once (the corpus validated, split, normalized and cached once for
the whole search by :func:`pipelines.train.driver.prepare_data`). It uses the training run's own parts: the seeded
model (:func:`pipelines.train.worker.seeded_model`), every update phase (:func:`aecore.run_update_phases`), the
precision, learning-rate schedule and early-stopping rules (:mod:`pipelines.train.optim`), and the calibrated
bundle (:func:`pipelines.bundle.calibrate`) that the registry takes.

Every epoch is reported to Tune (the ASHA scheduler may stop the trial after any of them) with the objective of
:mod:`pipelines.tune.objective`, and logged to the trial's MLflow run, nested under the search's run. An epoch that
improves the objective is reported with its bundle as the checkpoint: Tune keeps each trial's best one. A trial
restarted after a killed search trains again from its first epoch, in the same MLflow run.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from aecore import Autoencoder, PhaseObjective, make_optimizers, run_update_phases
from pipelines import tracking
from pipelines.bundle import ModelBundle, Normalizer, calibrate
from pipelines.config import JobConfig
from pipelines.data.components import PrincipalComponents
from pipelines.train.metrics import LossSums
from pipelines.train.optim import LRSchedule, Patience, Precision
from pipelines.train.worker import seeded_model, starting_subspace
from pipelines.tune import objective
from pipelines.tune.space import assignment, trial_job

PARENT_TAG = "mlflow.parentRunId"
TRIAL_TAG = "aepipe.tune.trial"


@dataclass(frozen=True)
class TrialData:
    """What every trial shares (put in Ray's object store once per search)."""

    job: JobConfig
    """The search's job config; each trial sets its branch's values on it."""
    parent_run_id: str
    normalizer: Normalizer
    train_x: np.ndarray
    """``[N, *input_shape]`` float32: the normalized training split."""
    val_x: np.ndarray
    """``[M, *input_shape]`` float32: the normalized validation split, the same rows for every trial."""
    val_positive: np.ndarray | None
    """``[M]`` bool: anomalous validation rows (meaningful where ``val_labelled``); None: no usable labels."""
    val_labelled: np.ndarray | None
    """``[M]`` bool: validation rows with a label."""
    principal: PrincipalComponents | None = None
    """The training split's leading principal components, which a trial's linear model starts at; None: random
    initial weights."""


def trial_run_name(job: JobConfig, trial_id: str) -> str:
    return f"{job.name}-{trial_id}"


def _open_run(job: JobConfig, data: TrialData, trial_id: str, values: dict[str, Any]) -> str:
    """The trial's MLflow run, nested under the search's: continued when a restarted search ran it before."""
    uri, key = job.tracking_uri, f"{data.parent_run_id}/{trial_id}"
    found = tracking.find_run(uri, job.tracking.experiment, TRIAL_TAG, key)
    if found is not None:
        tracking.reopen_run(uri, found)
        return found
    tags = {PARENT_TAG: data.parent_run_id, TRIAL_TAG: key, "aepipe.model": job.model["name"]}
    params = {**job.model_dump(mode="json", include={"model", "train"}), "tune": {"values": values}}
    return tracking.start_run(
        uri, job.tracking.experiment, trial_run_name(job, trial_id), params, tags, job.resolve("mlartifacts")
    )


def _train_epoch(
    model: Autoencoder, x: torch.Tensor, job: JobConfig, epoch: int, amp: Precision, optimizers: dict
) -> dict[str, float]:
    """One pass over the training rows ``x`` ``[N, *input_shape]`` in a permutation seeded by (seed, epoch): every
    update phase on every batch, the loss terms under the configured autocast, the steps outside it."""
    tc = job.train
    model.train()
    sums = LossSums(torch.device("cpu"))
    generator = torch.Generator().manual_seed(tc.seed * 1_000_003 + epoch)
    order = torch.randperm(len(x), generator=generator) if tc.shuffle else torch.arange(len(x))
    terms_of = PhaseObjective(model)

    def objective_fn(batch: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
        with amp.autocast():
            terms: dict[str, torch.Tensor] = terms_of(batch, phase)
        return terms

    def step(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        amp.step(loss, optimizer, tc.grad_clip)

    for idx in order.split(tc.batch_size):
        batch = x[idx]
        sums.add(run_update_phases(model, batch, optimizers, objective_fn, step), len(batch))
    return sums.means("train")


@torch.no_grad()
def _validate(model: Autoencoder, x: torch.Tensor, batch_size: int) -> tuple[dict[str, float], np.ndarray]:
    """``val_*`` loss terms, ``val_mse`` (mean squared reconstruction error over every value of every row) and the
    anomaly scores ``[M]`` of the validation rows ``x`` ``[M, *input_shape]``."""
    model.eval()
    sums = LossSums(torch.device("cpu"))
    squared, scores = 0.0, []
    for batch in x.split(batch_size):
        sums.add(model.eval_loss(batch), len(batch))
        squared += float(((model(batch) - batch) ** 2).double().sum())
        scores.append(model.score(batch).float().numpy())
    values = max(x.numel(), 1)
    return {**sums.means("val"), "val_mse": squared / values}, np.concatenate(scores) if scores else np.zeros(0)


def _better(value: float, best: float | None, mode: str) -> bool:
    if not math.isfinite(value):
        return False
    return best is None or (value < best if mode == "min" else value > best)


def run_trial(config: dict[str, Any], data: TrialData) -> None:
    """Ray Tune's function trainable: train the sampled config epoch by epoch, report each epoch."""
    from ray import tune

    values = assignment(config)
    job = trial_job(data.job, values)
    trial_id = tune.get_context().get_trial_id()
    uri, tc, metric = job.tracking_uri, job.train, data.job.tune.metric
    run_id = _open_run(job, data, trial_id, values)
    torch.set_num_threads(max(1, int(data.job.tune.cpus_per_trial)))
    model = seeded_model(job, 0, data.principal)
    optimizers = make_optimizers(model, tc.lr)
    amp, schedule = Precision(tc.precision, torch.device("cpu")), LRSchedule(tc, optimizers)
    stopping = Patience(tc.early_stopping_patience, tc.early_stopping_min_delta)
    train_x, val_x = torch.tensor(data.train_x), torch.tensor(data.val_x)  # writable copies of the shared arrays
    best: float | None = None
    started = time.perf_counter()

    def validated(extra: dict[str, float]) -> tuple[dict[str, float], np.ndarray]:
        """The validation figures (the labelled ones too) with ``extra``, and the validation scores ``[M]``."""
        val, scores = _validate(model, val_x, tc.batch_size)
        metrics = {**extra, **val, "time_elapsed_s": time.perf_counter() - started}
        if data.val_positive is not None and data.val_labelled is not None:
            labelled = data.val_labelled
            metrics.update(objective.ranking_metrics(scores[labelled], data.val_positive[labelled]))
        return metrics, scores

    def report(epoch: int, metrics: dict[str, float], scores: np.ndarray, stop: bool) -> None:
        """Log the epoch to MLflow and report it to Tune, with its bundle when it improves the objective."""
        nonlocal best
        tracking.log_steps_once(uri, run_id, [(epoch, metrics)])
        improved = _better(metrics[metric.value], best, metric.mode)
        best = metrics[metric.value] if improved else best
        result = {**metrics, "epoch": epoch, "run_id": run_id, "early_stop": stop, "best_objective": best}
        if improved:
            calibration = calibrate(scores, tc.threshold_quantile, tc.threshold_k_std)
            with tempfile.TemporaryDirectory(prefix="aepipe-trial-") as folder:
                ModelBundle(model, data.normalizer, calibration, job.data.model_dump(mode="json")).save(folder)
                tune.report(result, checkpoint=tune.Checkpoint.from_directory(folder))
        else:
            tune.report(result)

    if starting_subspace(job, data.principal) is not None:  # started at PCA: the start is a candidate (epoch 0)
        report(0, *validated({"lr": tc.lr}), stop=False)
    for epoch in range(1, tc.epochs + 1):
        lr = schedule.start_epoch(epoch)
        metrics, scores = validated({**_train_epoch(model, train_x, job, epoch, amp, optimizers), "lr": lr})
        schedule.end_epoch(metrics["val_loss"])
        stop = stopping.update(metrics["val_loss"])
        report(epoch, metrics, scores, stop)
        if stop:
            break
    tracking.end_run(uri, run_id)
