"""The training loop every Ray Train worker runs: set up, resume, run epochs.

Each worker reads its Ray Data shards through :class:`ShardInput` (streamed every epoch, or streamed once and
kept when the splits are cached), reshuffled every epoch. Validation rows, and training rows when cached, are
owned by rank through a hash of the id (:class:`RowOwner`): every row counts once, and a training rank with
fewer rows repeats some so that every rank takes the same number of steps. The model is wrapped in DDP through
:class:`aecore.PhaseObjective`, so every optimizer phase a family declares goes through DDP's gradient sync.
Every rank reports to Ray Train only with a checkpoint: rank 0 alone writes checkpoints (on the epochs
:class:`~pipelines.train.cadence.CheckpointCadence` names, uploaded in the background, plus the best epoch since the
previous checkpoint, held in memory until then) and sends metrics to MLflow in batches
(:class:`~pipelines.train.cadence.MetricsBuffer`). A report without a checkpoint would buy nothing (Ray Train V2
keeps only the metrics attached to checkpoints) and cost up to 2 s: the worker's result queue holds one report and
the controller takes one per poll, every ``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S`` (Ray's default 2 s; 0.5 s as aepipe
runs, :data:`jobs.runtime.RAY_DEFAULTS`), so reporting every epoch of a 5 ms epoch made it a 2 s one
(``bench/train_overhead.py``).
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch

from aecore import Autoencoder, PhaseObjective, build_model, make_optimizers, model_class, run_update_phases
from pipelines import tracking
from pipelines.bundle import ModelBundle, calibrate
from pipelines.config import JobConfig
from pipelines.data.components import PrincipalComponents
from pipelines.train import checkpoint as ckpt
from pipelines.train.cadence import CheckpointCadence, MetricsBuffer
from pipelines.train.faults import FaultInjector
from pipelines.train.feed import WorkerFeed
from pipelines.train.input import RowOwner, ShardInput
from pipelines.train.metrics import LossSums, gather_array, gather_objects, max_over_ranks, sum_over_ranks_
from pipelines.train.optim import LRSchedule, Patience, Precision
from pipelines.train.spec import WorkerSpec


@dataclass
class _LoopState:
    """The stateful parts of one worker's loop: everything a checkpoint must carry besides the weights."""

    optimizers: dict[str, torch.optim.Optimizer]
    amp: Precision
    schedule: LRSchedule
    stopping: Patience

    def state(self, epoch: int, metrics: dict[str, float], rngs: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "epoch": epoch,
            "metrics": metrics,
            "rng": rngs,
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "scaler": self.amp.scaler.state_dict(),
            "schedule": self.schedule.state_dict(),
            "stopping": self.stopping.state_dict(),
        }

    def load(self, state: dict[str, Any], rank: int, world_size: int, seed: int) -> None:
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        self.amp.scaler.load_state_dict(state["scaler"])
        self.schedule.load_state_dict(state["schedule"])
        self.stopping.load_state_dict(state["stopping"])
        if len(state["rng"]) == world_size:
            ckpt.set_rng_state(state["rng"][rank])
        else:  # a different number of workers: fresh, still deterministic, streams
            ckpt.seed_everything(seed + rank + 1000 * state["epoch"])

    @property
    def stopped_early(self) -> bool:
        return self.stopping.patience is not None and self.stopping.bad_epochs >= self.stopping.patience


def ddp_options(model: Autoencoder, bucket_cap_mb: float | None, device: torch.device) -> dict[str, Any]:
    """``DistributedDataParallel`` keyword arguments for ``model`` on ``device``."""
    return {
        # only some parameters get gradients in each phase of a several-phase family
        "find_unused_parameters": len(model.update_phases()) > 1,
        # small buckets on CPU let the gradient exchange overlap the backward pass
        "bucket_cap_mb": bucket_cap_mb or (25.0 if device.type == "cuda" else 1.0),
    }


def starting_subspace(job: JobConfig, principal: PrincipalComponents | None) -> PrincipalComponents | None:
    """The leading ``model.latent_dim`` of the ``principal`` components that ``job``'s model starts at: None when the
    family cannot (:attr:`aecore.Autoencoder.principal_start`), ``train.principal_start`` is off, or the code is
    larger than the components at hand."""
    k = int(job.model["latent_dim"])
    if principal is None or not job.train.principal_start or k > len(principal.components):
        return None
    return principal.leading(k) if model_class(job.model["name"]).principal_start else None


def seeded_model(job: JobConfig, rank: int, principal: PrincipalComponents | None = None) -> Autoencoder:
    """Seed this rank's python, numpy and torch generators with ``train.seed + rank`` (so dropout, corruption,
    masks and VAE noise differ between ranks) and build the model with initial weights from ``train.seed``
    alone: identical on every rank, and building leaves the rank's generators as seeded. A model that can starts at
    the ``principal`` subspace instead (:func:`starting_subspace`)."""
    ckpt.seed_everything(job.train.seed + rank)
    model = build_model(job.model, seed=job.train.seed)
    start = starting_subspace(job, principal)
    if start is not None:
        model.start_at_principal_subspace(torch.from_numpy(start.mean), torch.from_numpy(start.components))
    return model


def _warm_tracking(spec: WorkerSpec) -> None:
    with contextlib.suppress(Exception):  # the real calls report what fails
        tracking.run_status(spec.tracking_uri, spec.run_id)


def _loggable(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k != "epoch"}


@dataclass
class _Snapshot:
    """One epoch's checkpoint contents: the model (a copy while held in memory), its loop state and the
    validation scores the calibration is drawn from (every rank's; empty on ranks other than 0)."""

    epoch: int
    metrics: dict[str, float]
    model: Autoencoder
    state: dict[str, Any]
    val_scores: np.ndarray


@dataclass
class _Worker:
    """One rank's model, inputs and loop state, and the steps of its loop."""

    spec: WorkerSpec
    rank: int
    world_size: int
    device: torch.device
    model: Autoencoder
    objective: torch.nn.Module
    """The DDP-wrapped :class:`PhaseObjective` the train steps call."""
    loop: _LoopState
    train_in: ShardInput
    val_in: ShardInput
    faults: FaultInjector
    cadence: CheckpointCadence
    metrics_out: MetricsBuffer | None
    """Rank 0's buffer of epochs on their way to MLflow; None on other ranks."""
    feed: WorkerFeed
    """Progress for the driver's console (rank 0 sends; the others hold an empty feed)."""
    pad_to: int = 0
    """Rows every rank's training epoch yields (its own, repeated): the largest owned shard; 0 = no padding."""
    best_val: float = math.inf
    """The lowest val_loss of any epoch so far."""
    pending_best: _Snapshot | None = None
    """The epoch with ``best_val`` when no checkpoint holds it yet: written before the next checkpoint."""
    checkpointed: int = 0
    """The latest epoch this worker reported a checkpoint of (0 = none)."""
    epochs_started: float = 0.0
    """``time.perf_counter()`` as this attempt's first epoch began."""

    @classmethod
    def set_up(cls, spec: WorkerSpec) -> _Worker:
        """Threads, seeds, the model in DDP, optimizers and controls, this rank's shards."""
        tc = spec.job.train
        ctx = ray.train.get_context()
        rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
        if rank == 0:  # MLflow's first contact in this process (its store, a schema check) while the model is built
            threading.Thread(target=_warm_tracking, args=(spec,), name="aepipe-mlflow-warm", daemon=True).start()
        torch.set_num_threads(tc.threads_per_worker or max(1, round(tc.cpus_per_worker)))
        model = seeded_model(spec.job, rank, spec.principal)
        device = ray.train.torch.get_device()
        optimizers = make_optimizers(model, tc.lr)
        objective = ray.train.torch.prepare_model(
            PhaseObjective(model), parallel_strategy_kwargs=ddp_options(model, tc.ddp_bucket_cap_mb, device)
        )
        wrapped = getattr(objective, "module", objective)  # DDP holds the module; one worker gets it bare
        assert isinstance(wrapped, PhaseObjective)
        model = wrapped.model  # now on the worker's device
        loop = _LoopState(
            optimizers,
            Precision(tc.precision, device),
            LRSchedule(tc, optimizers),
            Patience(tc.early_stopping_patience, tc.early_stopping_min_delta),
        )
        owner = RowOwner(rank, world_size)
        train_in, val_in = (
            ShardInput(
                ray.train.get_dataset_shard(name),
                model.config.input_shape,
                device,
                keep=spec.keep_in_worker,
                shuffle_buffer=tc.shuffle_buffer,
                seed=tc.seed * 7919 + rank,
                owner=owner if owned else None,
            )
            for name, owned in (("train", spec.keep_in_worker), ("val", True))
        )
        pad_to = max_over_ranks(train_in.load(tc.batch_size)) if spec.keep_in_worker else 0
        faults = FaultInjector(tc.fault_injection, spec.run_dir)
        out = MetricsBuffer(spec.tracking_uri, spec.run_id, tc.metrics_flush_s) if rank == 0 else None
        cadence = CheckpointCadence(tc)
        feed = WorkerFeed(spec.progress if rank == 0 else None)
        parts = (model, objective, loop, train_in, val_in, faults, cadence, out, feed)
        return cls(spec, rank, world_size, device, *parts, pad_to=pad_to)

    def resume(self) -> int | None:
        """The first epoch to run: after the latest checkpoint's, or 1 for a fresh run (whose initial validation
        loss is logged as step 0). None when the checkpointed run had already stopped early."""
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            self._log_initial_validation()
            return 1
        with checkpoint.as_directory() as d:
            state = ckpt.restore(d, self.model)
        self.loop.load(state, self.rank, self.world_size, self.spec.job.train.seed)
        epoch = int(state["epoch"])
        self.best_val = float(state.get("best_val_loss", state["metrics"]["val_loss"]))
        self.checkpointed = epoch
        if self.rank == 0:  # the previous attempt may have died between its report and its MLflow send
            uri, run_id = self.spec.tracking_uri, self.spec.run_id
            unsent = state.get("unsent") or [(epoch, _loggable(state["metrics"]))]
            tracking.log_steps_once(uri, run_id, [(int(e), m) for e, m in unsent])
            tracking.log_metrics(uri, run_id, {"resumed_from_epoch": epoch}, step=epoch)
            self.feed.note(f"resumed from the epoch {epoch} checkpoint")
        return None if self.loop.stopped_early else epoch + 1

    def run_epochs(self, start: int) -> None:
        """Train, validate and report each epoch from ``start``; stop early when patience runs out."""
        self.epochs_started = time.perf_counter()
        for epoch in range(start, self.spec.job.train.epochs + 1):
            if self._run_epoch(epoch):
                break
        if self.metrics_out is not None:
            self.metrics_out.flush()

    def _run_epoch(self, epoch: int) -> bool:
        """One epoch; True when early stopping ends the run."""
        lr = self.loop.schedule.start_epoch(epoch)
        t0 = time.perf_counter()
        sums = self._train_epoch(epoch).all_reduce()
        train_s = time.perf_counter() - t0
        val_metrics, local_scores = self._validate()
        sum_over_ranks_(self.model.epoch_tallies())  # e.g. codebook usage: every rank's batches, not rank 0's
        metrics: dict[str, float] = {
            **sums.means("train"),
            **val_metrics,
            **self._row_counts(sums, int(val_metrics["val_rows"])),
            "epoch": epoch,
            "samples_per_s": sums.count / max(train_s, 1e-9),
            "lr": lr,
            "time_train_s": train_s,
            "time_epoch_s": time.perf_counter() - t0,
            # since this attempt's first epoch began: what the checkpoints and reports between epochs add shows here
            "time_elapsed_s": time.perf_counter() - self.epochs_started,
            **{f"model_{k}": v for k, v in self.model.epoch_metrics().items()},
        }
        self.loop.schedule.end_epoch(metrics["val_loss"])
        stop = self.loop.stopping.update(metrics["val_loss"])  # the same all-reduced val_loss on every rank
        self._report(epoch, metrics, local_scores, stop)
        return stop

    def _row_counts(self, train: LossSums, val_rows: int) -> dict[str, float]:
        """This epoch's distinct training rows (every rank's), the samples repeated to even out the ranks' steps,
        and the training rows no rank read (``streaming_split(equal=True)`` drops up to ``world_size - 1``)."""
        return {
            "train_rows": train.rows,
            "train_rows_repeated": train.count - train.rows,
            "train_rows_dropped": self.spec.records - val_rows - train.rows,
        }

    def _train_epoch(self, epoch: int) -> LossSums:
        """One pass over this rank's training shard: every update phase on every batch."""
        tc = self.spec.job.train
        self.model.train()
        sums = LossSums(self.device)
        total = math.ceil(self.pad_to / tc.batch_size) if self.pad_to else None
        for b, x in enumerate(self.train_in.batches(tc.batch_size, epoch, shuffle=tc.shuffle, pad_to=self.pad_to)):
            self.faults.check(epoch, self.rank, b, self.checkpointed)
            terms = run_update_phases(self.model, x, self.loop.optimizers, self._objective, self._step)
            sums.add(terms, len(x))
            self.feed.batches(epoch, b + 1, total)
        sums.rows = self.train_in.epoch_rows
        return sums

    def _objective(self, x: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
        """One phase's loss terms through DDP, under the configured autocast."""
        with self.loop.amp.autocast():
            terms: dict[str, torch.Tensor] = self.objective(x, phase)
        return terms

    def _step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        self.loop.amp.step(loss, optimizer, self.spec.job.train.grad_clip)

    @torch.no_grad()
    def _validate(self) -> tuple[dict[str, float], np.ndarray]:
        """Validation loss terms (``val_*``: exact means over every validation row, each read by the one rank that
        owns it), ``val_rows``, and this rank's per-sample scores (fp32)."""
        self.model.eval()
        sums = LossSums(self.device)
        scores: list[np.ndarray] = []
        for x in self.val_in.batches(self.spec.job.train.batch_size, epoch=0, shuffle=False):
            sums.add(self.model.eval_loss(x), len(x))
            scores.append(self.model.score(x).float().cpu().numpy())
        local = np.concatenate(scores) if scores else np.zeros(0, np.float32)
        sums.rows = self.val_in.epoch_rows
        total = sums.all_reduce()
        return {**total.means("val"), "val_rows": total.rows}, local

    def _log_initial_validation(self) -> None:
        """Log the initial val_loss as step 0. A model started at the principal subspace (PCA's reconstruction, the
        optimum of a linear model's squared error) is a candidate itself: held as the best epoch so far, epoch 0, so
        that the noise of the optimizer's steps around that optimum cannot make the registered model worse."""
        initial, local_scores = self._validate()
        if self.spec.principal is not None:
            self.best_val = initial["val_loss"]
            self.pending_best = self._capture(0, {**initial, "epoch": 0}, local_scores, hold=True)
        if self.rank == 0:
            uri, run_id = self.spec.tracking_uri, self.spec.run_id
            tracking.log_metrics_once(uri, run_id, {"val_loss": initial["val_loss"]}, step=0)
            tunables = os.environ.get("GLIBC_TUNABLES") or "unset"
            tracking.set_tags(uri, run_id, {"aepipe.worker.glibc_tunables": tunables})

    def _report(self, epoch: int, metrics: dict[str, float], local_scores: np.ndarray, stop: bool) -> None:
        """Buffer the epoch's metrics for MLflow; when the cadence says so, report a checkpoint of it to Ray Train on
        every rank (after the pending best epoch's, if any), else keep a new best epoch in memory and report nothing
        (see the module docstring). Every rank takes the same branch (val_loss is all-reduced; the time rule is rank
        0's), so all call ``report`` equally often."""
        improved = metrics["val_loss"] < self.best_val
        self.best_val = min(self.best_val, metrics["val_loss"])
        if self.metrics_out is not None:
            self.metrics_out.add(epoch, _loggable(metrics))
        if gather_objects(self.cadence.due(epoch, stop))[0]:
            if self.pending_best is not None and not improved:  # superseded when this epoch is the new best
                self._write(self.pending_best)
            self._write(self._capture(epoch, metrics, local_scores, hold=False))
            self.pending_best = None
            self.cadence.written()
            if self.metrics_out is not None:
                self.metrics_out.flush()
        elif improved:
            self.pending_best = self._capture(epoch, metrics, local_scores, hold=True)
        self.feed.epoch(epoch, metrics, stop)

    def _capture(self, epoch: int, metrics: dict[str, float], local_scores: np.ndarray, hold: bool) -> _Snapshot:
        """This epoch's checkpoint contents (collective: every rank calls it). ``hold``: copies of the weights and
        the loop state, kept in memory while training goes on."""
        rngs = gather_objects(ckpt.rng_state())  # every rank's generators, so a restart replays the same draws
        scores = gather_array(local_scores)
        if self.rank != 0:
            return _Snapshot(epoch, metrics, self.model, {}, scores[:0])
        unsent = list(self.metrics_out.pending) if self.metrics_out is not None else []
        state = {**self.loop.state(epoch, metrics, rngs), "best_val_loss": self.best_val, "unsent": unsent}
        if hold:
            return _Snapshot(epoch, dict(metrics), copy.deepcopy(self.model), copy.deepcopy(state), scores)
        return _Snapshot(epoch, metrics, self.model, state, scores)

    def _write(self, snap: _Snapshot) -> None:
        """Report ``snap`` to Ray Train: rank 0 with its checkpoint (written to a local folder that Ray uploads in
        the background and then deletes), the others without."""
        self.checkpointed = snap.epoch
        if self.rank != 0:
            ray.train.report(snap.metrics, checkpoint=None)
            return
        tc = self.spec.job.train
        folder = tempfile.mkdtemp(prefix="aepipe-checkpoint-")
        calibration = calibrate(snap.val_scores, tc.threshold_quantile, tc.threshold_k_std)
        data = self.spec.job.data.model_dump(mode="json")
        ckpt.save(folder, ModelBundle(snap.model, self.spec.normalizer, calibration, data), snap.state)
        ray.train.report(
            snap.metrics,
            checkpoint=ray.train.Checkpoint.from_directory(folder),
            checkpoint_upload_mode=ray.train.CheckpointUploadMode.ASYNC,
        )


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every worker: set up, resume (or start), run the epochs."""
    worker = _Worker.set_up(config["spec"])
    start = worker.resume()
    if start is not None:
        worker.run_epochs(start)
