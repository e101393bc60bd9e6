"""Training stage: ``train_loop_per_worker`` runs on every Ray Train worker; ``run_training`` is the driver.

Each worker reads its Ray Data shard through :class:`ShardInput` (streamed every epoch, or streamed once and
kept when the splits are cached), reshuffled every epoch; the model is wrapped in DDP through a thin
:class:`PhaseObjective` so that every optimizer phase a family declares goes through DDP's gradient sync.
Rank 0 alone logs to MLflow and writes checkpoints.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from torch import nn

from aecore import Autoencoder, build_model
from pipelines import tracking
from pipelines.bundle import ModelBundle, calibrate
from pipelines.config import ConfigError, JobConfig, TrainConfig
from pipelines.data import (
    Normalizer,
    cache,
    fit_normalizer,
    load_dataset,
    normalize_dataset,
    split_dataset,
    validate_corpus,
)
from pipelines.tracking import plots, promotion
from pipelines.train import checkpoint as ckpt
from pipelines.train.faults import FaultInjector
from pipelines.train.input import ShardInput
from pipelines.train.optim import LRSchedule, Patience, Precision

JOB_TAG = "aepipe.job"


class PhaseObjective(nn.Module):
    """``forward(x, phase)`` = the model's loss terms for one update phase (what DDP wraps)."""

    def __init__(self, model: Autoencoder):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, phase: str) -> dict[str, torch.Tensor]:
        return self.model.phase_loss(x, phase)


# ---------------------------------------------------------------------------------------------------
# worker side
# ---------------------------------------------------------------------------------------------------
def _all_reduce_sums(sums: dict[str, float], device: torch.device) -> dict[str, float]:
    """Sum a dict of floats over every rank (same keys on every rank)."""
    if not (dist.is_available() and dist.is_initialized()):
        return dict(sums)
    keys = sorted(sums)
    t = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist(), strict=True))


def _gather(values: np.ndarray) -> np.ndarray:
    """Concatenate a 1-D array from every rank (every rank gets the result)."""
    return np.concatenate(_gather_objects(values))


def _gather_objects(value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on every rank."""
    if not (dist.is_available() and dist.is_initialized()):
        return [value]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, value)
    return parts


def _train_epoch(
    objective: nn.Module,
    model: Autoencoder,
    optimizers: dict,
    amp: Precision,
    job: JobConfig,
    inputs: ShardInput,
    epoch: int,
    before_batch: Callable[[int], None],
) -> tuple[dict[str, float], int]:
    """One pass over this rank's shard; returns summed (loss term x batch size) and the sample count.

    Loss terms are summed on the device and read once at the end, so no step waits on a host copy."""
    model.train()
    phases = model.update_phases()
    sums: dict[str, torch.Tensor] = defaultdict(lambda: torch.zeros((), dtype=torch.float64, device=inputs.device))
    count = 0
    for b, x in enumerate(inputs.batches(job.train.batch_size, epoch, shuffle=job.train.shuffle)):
        before_batch(b)
        for i, phase in enumerate(phases):
            with amp.autocast():
                terms = objective(x, phase.name)
            amp.step(terms["loss"], optimizers[phase.optimizer], job.train.grad_clip)
            prefix = "" if len(phases) == 1 else f"{phase.name}_"
            for key, value in terms.items():
                sums[f"{prefix}{key}"] += value.detach().double() * len(x)
            if i == 0 and len(phases) > 1:
                sums["loss"] += terms["loss"].detach().double() * len(x)
        count += len(x)
    return {k: float(v) for k, v in sums.items()}, count


@torch.no_grad()
def _evaluate(model: Autoencoder, inputs: ShardInput, batch_size: int) -> tuple[dict[str, float], int, np.ndarray]:
    """Validation loss terms (summed x batch size), sample count and per-sample scores on this shard (fp32)."""
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    scores, count = [], 0
    for x in inputs.batches(batch_size, epoch=0, shuffle=False):
        for key, value in model.loss(x).items():
            sums[key] += float(value) * len(x)
        scores.append(model.score(x).float().cpu().numpy())
        count += len(x)
    return sums, count, np.concatenate(scores) if scores else np.zeros(0, np.float32)


def _mean_metrics(prefix: str, sums: dict[str, float], count_key: str = "__count__") -> dict[str, float]:
    n = max(sums.pop(count_key), 1.0)
    return {f"{prefix}_{k}": v / n for k, v in sums.items()}


def _validation(model, inputs: ShardInput, batch_size: int) -> tuple[dict[str, float], np.ndarray]:
    sums, count, scores = _evaluate(model, inputs, batch_size)
    sums = _all_reduce_sums({**_ensure_keys(sums, model), "__count__": count}, inputs.device)
    return _mean_metrics("val", sums), _gather(scores)


def _ensure_keys(sums: dict[str, float], model: Autoencoder) -> dict[str, float]:
    # A rank with an empty shard must still contribute every key to the all-reduce.
    return {**dict.fromkeys(("loss",), 0.0), **sums}


@dataclass
class _Loop:
    """The stateful parts of one worker's training loop (everything a checkpoint must carry)."""

    model: Autoencoder
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


def _metrics_to_log(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if k != "epoch"}


#: glibc malloc tunables for training workers: serve blocks up to 32 MB (a conv layer's activations at batch 128
#: are a few MB) from the heap and never trim it. With glibc's defaults every step's activations were unmapped
#: when freed and faulted in again: ~70,000 minor faults/s per thread, a fifth of the CPU in the kernel, and half
#: the conv training speed of this setting on the bench host (see README, design notes).
KEEP_FREED_MEMORY = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967296"


def worker_env(tc: TrainConfig) -> dict[str, str]:
    """Environment variables the training worker processes start with (read by the dynamic loader at exec)."""
    return {"GLIBC_TUNABLES": KEEP_FREED_MEMORY} if tc.keep_freed_memory else {}


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every worker: build, (resume,) train, validate, report + checkpoint each epoch, stop early."""
    job = JobConfig.model_validate(config["job"])
    tc = job.train
    normalizer = Normalizer(**config["normalizer"])
    run_id, tracking_uri = config["run_id"], config["tracking_uri"]
    ctx = ray.train.get_context()
    rank, world_size = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(tc.threads_per_worker or max(1, round(tc.cpus_per_worker)))
    ckpt.seed_everything(tc.seed + rank)
    device = ray.train.torch.get_device()

    model = build_model(job.model)  # seeded by the model config: identical initial weights on every rank
    optimizers = {name: torch.optim.Adam(params, lr=tc.lr) for name, params in model.optimizer_params().items()}
    objective = ray.train.torch.prepare_model(
        PhaseObjective(model),
        parallel_strategy_kwargs={
            "find_unused_parameters": len(model.update_phases()) > 1,
            "bucket_cap_mb": tc.ddp_bucket_cap_mb or (25.0 if device.type == "cuda" else 1.0),
        },
    )
    model = objective.module.model if hasattr(objective, "module") else objective.model
    loop = _Loop(
        model,
        optimizers,
        Precision(tc.precision, device),
        LRSchedule(tc, optimizers),
        Patience(tc.early_stopping_patience, tc.early_stopping_min_delta),
    )
    faults = FaultInjector(tc.fault_injection, config["run_dir"])
    keep, shape = bool(config["keep_in_worker"]), model.config.input_shape
    train_in, val_in = (
        ShardInput(
            ray.train.get_dataset_shard(name), shape, device, keep, tc.shuffle_buffer, seed=tc.seed * 7919 + rank
        )
        for name in ("train", "val")
    )
    bs = tc.batch_size

    start_epoch = 1
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = ckpt.restore(d, model)
        loop.load(state, rank, world_size, tc.seed)
        start_epoch = int(state["epoch"]) + 1
        if rank == 0:  # the previous attempt may have died between its report and its MLflow log
            tracking.log_metrics_once(tracking_uri, run_id, _metrics_to_log(state["metrics"]), step=state["epoch"])
            tracking.log_metrics(tracking_uri, run_id, {"resumed_from_epoch": state["epoch"]}, step=state["epoch"])
            print(f"[aepipe] resumed from the epoch {state['epoch']} checkpoint", flush=True)
        if loop.stopping.patience is not None and loop.stopping.bad_epochs >= loop.stopping.patience:
            return  # the run had already stopped early
    else:
        initial, _ = _validation(model, val_in, bs)
        if rank == 0:
            tracking.log_metrics_once(tracking_uri, run_id, {"val_loss": initial["val_loss"]}, step=0)
            tracking.set_tags(
                tracking_uri, run_id, {"aepipe.worker.glibc_tunables": os.environ.get("GLIBC_TUNABLES") or "unset"}
            )

    for epoch in range(start_epoch, tc.epochs + 1):
        lr = loop.schedule.start_epoch(epoch)
        t0 = time.perf_counter()
        sums, count = _train_epoch(
            objective,
            model,
            optimizers,
            loop.amp,
            job,
            train_in,
            epoch,
            before_batch=lambda b, epoch=epoch: faults.check(epoch, rank, b),
        )
        sums = _all_reduce_sums({**_ensure_keys(sums, model), "__count__": count}, device)
        samples, train_s = sums["__count__"], time.perf_counter() - t0
        metrics = _mean_metrics("train", sums)
        val_metrics, val_scores = _validation(model, val_in, bs)
        metrics.update(val_metrics)
        metrics.update(
            {
                "epoch": epoch,
                "samples_per_s": samples / max(train_s, 1e-9),
                "lr": lr,
                "time_train_s": train_s,
                "time_epoch_s": time.perf_counter() - t0,
                **{f"model_{k}": v for k, v in model.epoch_metrics().items()},
            }
        )
        loop.schedule.end_epoch(metrics["val_loss"])
        stop = loop.stopping.update(metrics["val_loss"])  # same all-reduced val_loss on every rank
        rngs = _gather_objects(ckpt.rng_state())
        if rank == 0:
            with tempfile.TemporaryDirectory() as tmp:
                calibration = calibrate(val_scores, tc.threshold_quantile, tc.threshold_k_std)
                bundle = ModelBundle(model, normalizer, calibration, job.data.model_dump(mode="json"))
                ckpt.save(tmp, bundle, loop.state(epoch, metrics, rngs))
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
            tracking.log_metrics_once(tracking_uri, run_id, _metrics_to_log(metrics), step=epoch)
            print(
                f"[aepipe] epoch {epoch}/{tc.epochs} train_loss={metrics['train_loss']:.5f} "
                f"val_loss={metrics['val_loss']:.5f} {metrics['samples_per_s']:.0f} samples/s lr={lr:.3g}"
                + (" (early stop)" if stop else ""),
                flush=True,
            )
        else:
            ray.train.report(metrics, checkpoint=None)
        if stop:
            break


# ---------------------------------------------------------------------------------------------------
# driver side
# ---------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What a finished training job produced."""

    run_id: str
    model_name: str
    model_version: str | None
    aliases: dict[str, str]
    bundle_dir: str
    metrics: dict[str, float]


def _open_run(job: JobConfig) -> str:
    """Continue the job's unfinished MLflow run or start a new one.

    A run stays unfinished (RUNNING after a killed driver, FAILED after too many worker failures) until a
    driver completes it, so re-running the same job continues the same MLflow run and, because the Ray run
    name is derived from the run id, the same Ray Train run and its latest checkpoint.
    """
    uri = job.tracking_uri
    previous = tracking.find_run(uri, job.tracking.experiment, JOB_TAG, job.name)
    if previous and tracking.run_status(uri, previous) != "FINISHED":
        tracking.reopen_run(uri, previous)
        return previous
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
        },
        artifact_root=job.resolve("mlartifacts"),
    )


def _ray_run_name(job: JobConfig, run_id: str) -> str:
    return f"{job.name}-{run_id[:8]}"


def _use_gpu(job: JobConfig) -> bool:
    """One GPU per worker (NCCL) when configured, or by default when the cluster has GPUs; else gloo on CPU."""
    use = job.train.use_gpu if job.train.use_gpu is not None else ray.cluster_resources().get("GPU", 0) >= 1
    if not use and job.train.precision == "fp16":
        raise ConfigError("train.precision=fp16 needs GPU workers (train.use_gpu); on CPU use bf16 or fp32")
    return use


def _check_shape(job: JobConfig, sample_shape: tuple[int, ...]) -> None:
    """Samples must match model.input_shape, or be flat with as many values (784 -> (1, 28, 28))."""
    expected = tuple(job.model["input_shape"])
    if sample_shape != expected and sample_shape != (int(np.prod(expected)),):
        raise ConfigError(
            f"{job.data_path}: samples have shape {sample_shape} but model.input_shape is "
            f"{expected}; set model.input_shape={list(sample_shape)}"
        )


def run_training(job: JobConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Driver: read and split the corpus, fit normalization, train on Ray, log, register. Needs ``ray.init``."""
    corpus = load_dataset(job.data, job.data_path, quarantine_dir=job.resolve(f"outputs/quarantine/{job.name}"))
    _check_shape(job, corpus.sample_shape)
    log("validating the corpus ...")
    corpus = validate_corpus(corpus)  # bad input stops here (fail) or is quarantined (skip), before training
    train_ds, val_ds = split_dataset(corpus.dataset, job.data.val_fraction)
    log("fitting normalization on the training split ...")
    normalizer = fit_normalizer(train_ds, job.data.normalize, job.data.normalize_scope)
    train_ds = normalize_dataset(train_ds, normalizer).select_columns(["x"])
    val_rows, val_ds = val_ds, normalize_dataset(val_ds, normalizer).select_columns(["x"])
    caching = cache.decide(job.data.cache, corpus.report.records, corpus.sample_shape, job.data.cache_max_fraction)
    log(f"training input: {caching.reason}")
    splits = cache.prepare({"train": train_ds, "val": val_ds}, caching)

    run_id = _open_run(job)
    uri, tc = job.tracking_uri, job.train
    tracking.log_metrics(
        uri,
        run_id,
        {
            "data_records": corpus.report.records,
            "data_skipped_records": corpus.report.skipped,
            "data_cached_in_memory": float(caching.in_memory),
        },
        step=0,
    )
    run_name = _ray_run_name(job, run_id)
    run_dir = f"{job.checkpoint_path.rstrip('/')}/{run_name}"
    log(f"MLflow run {run_id} ({uri}); Ray Train run {run_name} under {job.checkpoint_path}")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "job": job.model_dump(mode="json"),
            "normalizer": normalizer.__dict__,
            "run_id": run_id,
            "tracking_uri": uri,
            "run_dir": run_dir,
            "keep_in_worker": caching.in_memory,
        },
        scaling_config=ScalingConfig(
            num_workers=tc.num_workers, use_gpu=_use_gpu(job), resources_per_worker={"CPU": tc.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=job.checkpoint_path,
            checkpoint_config=CheckpointConfig(
                num_to_keep=tc.keep_checkpoints, checkpoint_score_attribute="val_loss", checkpoint_score_order="min"
            ),
            failure_config=FailureConfig(max_failures=tc.max_failures),
            worker_runtime_env={"env_vars": worker_env(tc)},
        ),
        datasets=splits,
    )
    try:
        result = trainer.fit()
    except Exception:
        tracking.end_run(uri, run_id, "FAILED")
        raise
    best_ckpt, best_metrics = min(result.best_checkpoints, key=lambda cm: cm[1]["val_loss"])
    for path in ckpt.prune_unregistered(run_dir, [c.path for c, _ in result.best_checkpoints]):
        log(f"removed unregistered checkpoint {path} (left by an interrupted attempt)")
    bundle_dir = Path(job.resolve("outputs")) / "models" / run_id / tracking.BUNDLE_ARTIFACT
    best_ckpt.to_directory(str(bundle_dir))
    (bundle_dir / ckpt.STATE_FILE).unlink()  # optimizer state stays with the checkpoint, not the model
    bundle = ModelBundle.load(bundle_dir)
    sample = val_rows.limit(tc.plot_rows).take_batch(tc.plot_rows, batch_format="numpy")
    _log_plots(job, run_id, bundle, sample, log)
    version = tracking.log_model(
        uri, run_id, bundle_dir, _input_example(sample), job.tracking.registered_model, job.tracking.registry_uri
    )
    if version is not None:
        _register(job, version, best_metrics, log)
    tracking.end_run(uri, run_id)
    return TrainResult(
        run_id,
        job.tracking.registered_model,
        version,
        tracking.aliases(uri, job.tracking.registered_model, job.tracking.registry_uri),
        str(bundle_dir),
        {k: float(v) for k, v in best_metrics.items()},
    )


def _register(job: JobConfig, version: str, metrics: dict[str, Any], log: Callable[[str], None]) -> None:
    """Tag the new version with its metrics, move ``challenger`` to it, ``champion`` when the policy says so."""
    uri, name, reg = job.tracking_uri, job.tracking.registered_model, job.tracking.registry_uri
    tracking.tag_version(
        uri, name, version, {k: v for k, v in metrics.items() if k == "epoch" or k.startswith(("train_", "val_"))}, reg
    )
    first = promotion.CHAMPION not in tracking.aliases(uri, name, reg)
    promotion.promote(uri, name, version, promotion.CHALLENGER, registry_uri=reg)
    decision = promotion.gate(uri, name, version, job.tracking.promote_margin, reg)
    if decision.passed and (first or job.tracking.auto_promote):
        promotion.promote(uri, name, version, promotion.CHAMPION, force=True, registry_uri=reg)
    log(f"champion gate: {'passed' if decision.passed else 'not passed'} ({decision.reason})")


def _log_plots(
    job: JobConfig, run_id: str, bundle: ModelBundle, sample: dict[str, np.ndarray], log: Callable[[str], None]
) -> None:
    """Draw the end-of-run pictures from a bounded validation sample and log them under ``plots/``."""
    uri = job.tracking_uri
    try:
        with tempfile.TemporaryDirectory() as tmp:
            plots.render(bundle, sample["x"], sample.get("label"), tracking.metric_histories(uri, run_id), tmp)
            tracking.log_artifacts(uri, run_id, tmp, "plots")
    except Exception as exc:
        log(f"warning: plots failed ({type(exc).__name__}: {exc}); the model is still registered")


def _input_example(sample: dict[str, np.ndarray]):
    """Two real validation rows as the pyfunc input example (``x`` holds each raw sample, flattened)."""
    import pandas as pd

    return pd.DataFrame({"x": [np.asarray(row, np.float32).reshape(-1).tolist() for row in sample["x"][:2]]})
