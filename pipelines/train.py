"""Training stage: ``train_loop_per_worker`` runs on every Ray Train worker; ``run_training`` is the driver.

Each worker streams its shard with ``iter_torch_batches``; the model is wrapped in DDP through a thin
:class:`PhaseObjective` so that every optimizer phase a family declares goes through DDP's gradient sync.
Rank 0 alone logs to MLflow and writes checkpoints.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from safetensors.torch import load_model as load_weights
from torch import nn

from aecore import Autoencoder, build_model
from pipelines import registry, tracking
from pipelines.bundle import MODEL_DIR, NORMALIZER_FILE, CALIBRATION_FILE, ModelBundle, calibrate
from pipelines.config import JobConfig
from pipelines.data import Normalizer, fit_normalizer, load_dataset, normalize_dataset, split_dataset

STATE_FILE = "train_state.pt"
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
    return dict(zip(keys, t.tolist()))


def _gather(values: np.ndarray) -> np.ndarray:
    """Concatenate a 1-D array from every rank (every rank gets the result)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, values)
    return np.concatenate(parts)


def _batches(shard, batch_size: int, device: torch.device):
    for batch in shard.iter_torch_batches(batch_size=batch_size, dtypes=torch.float32, device=device):
        yield batch["x"]


def _train_epoch(objective: nn.Module, model: Autoencoder, optimizers: dict, shard, batch_size: int,
                 device: torch.device) -> tuple[dict[str, float], int]:
    """One pass over this rank's shard; returns summed (loss term x batch size) and the sample count."""
    model.train()
    phases = model.update_phases()
    sums: dict[str, float] = defaultdict(float)
    count = 0
    for x in _batches(shard, batch_size, device):
        for i, phase in enumerate(phases):
            terms = objective(x, phase.name)
            optimizer = optimizers[phase.optimizer]
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            prefix = "" if len(phases) == 1 else f"{phase.name}_"
            for key, value in terms.items():
                sums[f"{prefix}{key}"] += float(value.detach()) * len(x)
            if i == 0 and len(phases) > 1:
                sums["loss"] += float(terms["loss"].detach()) * len(x)
        count += len(x)
    return sums, count


@torch.no_grad()
def _evaluate(model: Autoencoder, shard, batch_size: int, device: torch.device) -> tuple[dict[str, float], int, np.ndarray]:
    """Validation loss terms (summed x batch size), sample count and per-sample scores on this shard."""
    model.eval()
    sums: dict[str, float] = defaultdict(float)
    scores, count = [], 0
    for x in _batches(shard, batch_size, device):
        for key, value in model.loss(x).items():
            sums[key] += float(value) * len(x)
        scores.append(model.score(x).float().cpu().numpy())
        count += len(x)
    return sums, count, np.concatenate(scores) if scores else np.zeros(0, np.float32)


def _mean_metrics(prefix: str, sums: dict[str, float], count_key: str = "__count__") -> dict[str, float]:
    n = max(sums.pop(count_key), 1.0)
    return {f"{prefix}_{k}": v / n for k, v in sums.items()}


def _validation(model, shard, batch_size, device) -> tuple[dict[str, float], np.ndarray]:
    sums, count, scores = _evaluate(model, shard, batch_size, device)
    sums = _all_reduce_sums({**_ensure_keys(sums, model), "__count__": count}, device)
    return _mean_metrics("val", sums), _gather(scores)


def _ensure_keys(sums: dict[str, float], model: Autoencoder) -> dict[str, float]:
    # A rank with an empty shard must still contribute every key to the all-reduce.
    return {**{k: 0.0 for k in ("loss",)}, **sums}


def _save_checkpoint(directory: Path, bundle: ModelBundle, optimizers: dict, epoch: int, best_val: float) -> None:
    bundle.save(directory)
    state = {"epoch": epoch, "best_val": best_val,
             "optimizers": {k: o.state_dict() for k, o in optimizers.items()},
             "torch_rng": torch.get_rng_state()}
    torch.save(state, directory / STATE_FILE)


def _restore(checkpoint, model: Autoencoder, optimizers: dict) -> tuple[int, float]:
    """Load weights and optimizer state from a Ray checkpoint; returns (last epoch, best val loss)."""
    with checkpoint.as_directory() as d:
        load_weights(model, str(Path(d) / MODEL_DIR / "model.safetensors"), device=str(next(model.parameters()).device))
        state = torch.load(Path(d) / STATE_FILE, weights_only=True, map_location="cpu")
    for key, opt in optimizers.items():
        opt.load_state_dict(state["optimizers"][key])
    torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"]), float(state["best_val"])


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Runs on every worker: build, (resume,) train ``epochs``, validate, report + checkpoint each epoch."""
    job = JobConfig.model_validate(config["job"])
    normalizer = Normalizer(**config["normalizer"])
    run_id, tracking_uri = config["run_id"], config["tracking_uri"]
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    torch.set_num_threads(max(1, int(round(job.train.cpus_per_worker))))
    torch.manual_seed(job.train.seed + rank)
    device = ray.train.torch.get_device()

    model = build_model(job.model)
    optimizers = {name: torch.optim.Adam(params, lr=job.train.lr) for name, params in model.optimizer_params().items()}
    objective = ray.train.torch.prepare_model(
        PhaseObjective(model), parallel_strategy_kwargs={"find_unused_parameters": len(model.update_phases()) > 1}
    )
    model = objective.module.model if hasattr(objective, "module") else objective.model
    train_shard, val_shard = ray.train.get_dataset_shard("train"), ray.train.get_dataset_shard("val")
    bs = job.train.batch_size

    start_epoch, best_val = 1, float("inf")
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        last_epoch, best_val = _restore(checkpoint, model, optimizers)
        start_epoch = last_epoch + 1
    else:
        initial, _ = _validation(model, val_shard, bs, device)
        if rank == 0:
            tracking.log_metrics(tracking_uri, run_id, {"val_loss": initial["val_loss"]}, step=0)

    for epoch in range(start_epoch, job.train.epochs + 1):
        t0 = time.perf_counter()
        sums, count = _train_epoch(objective, model, optimizers, train_shard, bs, device)
        sums = _all_reduce_sums({**_ensure_keys(sums, model), "__count__": count}, device)
        samples = sums["__count__"]
        elapsed = time.perf_counter() - t0
        metrics = _mean_metrics("train", sums)
        val_metrics, val_scores = _validation(model, val_shard, bs, device)
        metrics.update(val_metrics)
        metrics.update({"epoch": epoch, "samples_per_s": samples / max(elapsed, 1e-9),
                        "lr": optimizers[model.update_phases()[0].optimizer].param_groups[0]["lr"],
                        **{f"model_{k}": v for k, v in model.epoch_metrics().items()}})
        best_val = min(best_val, metrics["val_loss"])
        if rank == 0:
            tracking.log_metrics(tracking_uri, run_id, {k: v for k, v in metrics.items() if k != "epoch"}, step=epoch)
            print(f"[aepipe] epoch {epoch}/{job.train.epochs} train_loss={metrics['train_loss']:.5f} "
                  f"val_loss={metrics['val_loss']:.5f} {metrics['samples_per_s']:.0f} samples/s", flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                calibration = calibrate(val_scores) if len(val_scores) else {}
                bundle = ModelBundle(model, normalizer, calibration, job.data.model_dump(mode="json"))
                _save_checkpoint(Path(tmp), bundle, optimizers, epoch, best_val)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
        else:
            ray.train.report(metrics, checkpoint=None)


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
    """Continue the job's unfinished MLflow run (a restarted driver) or start a new one."""
    uri = job.tracking_uri
    previous = tracking.find_run(uri, job.tracking.experiment, JOB_TAG, job.name)
    if previous and tracking.client(uri).get_run(previous).info.status == "RUNNING":
        return previous
    return tracking.start_run(
        uri, job.tracking.experiment, job.name, job.model_dump(mode="json"),
        tags={JOB_TAG: job.name, "aepipe.model": job.model["name"], "aepipe.data.source": job.data.source,
              "aepipe.data.path": job.data_path},
        artifact_root=job.resolve("mlartifacts"),
    )


def _use_gpu(job: JobConfig) -> bool:
    if job.train.use_gpu is not None:
        return job.train.use_gpu
    return ray.cluster_resources().get("GPU", 0) >= 1


def run_training(job: JobConfig, log: Callable[[str], None] = print) -> TrainResult:
    """Driver: read and split the corpus, fit normalization, train on Ray, log, register. Needs ``ray.init``."""
    corpus = load_dataset(job.data, job.data_path)
    expected = tuple(job.model["input_shape"])
    if corpus.sample_shape != expected:
        raise ValueError(f"{job.data_path}: samples have shape {corpus.sample_shape} but model.input_shape "
                         f"is {expected}; set model.input_shape={list(corpus.sample_shape)}")
    train_ds, val_ds = split_dataset(corpus.dataset, job.data.val_fraction)
    log("fitting normalization on the training split ...")
    normalizer = fit_normalizer(train_ds, job.data.normalize, job.data.normalize_scope)
    train_ds = normalize_dataset(train_ds, normalizer).select_columns(["x"])
    val_ds = normalize_dataset(val_ds, normalizer).select_columns(["x"])

    run_id = _open_run(job)
    uri = job.tracking_uri
    log(f"MLflow run {run_id} ({uri})")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job.model_dump(mode="json"), "normalizer": normalizer.__dict__,
                           "run_id": run_id, "tracking_uri": uri},
        scaling_config=ScalingConfig(num_workers=job.train.num_workers, use_gpu=_use_gpu(job),
                                     resources_per_worker={"CPU": job.train.cpus_per_worker}),
        run_config=RunConfig(
            name=f"{job.name}-{run_id[:8]}", storage_path=job.checkpoint_path,
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="val_loss",
                                               checkpoint_score_order="min"),
            failure_config=FailureConfig(max_failures=1),
        ),
        datasets={"train": train_ds, "val": val_ds},
    )
    try:
        result = trainer.fit()
    except Exception:
        tracking.end_run(uri, run_id, "FAILED")
        raise
    best_ckpt, best_metrics = min(result.best_checkpoints, key=lambda cm: cm[1]["val_loss"])
    bundle_dir = Path(job.resolve("outputs")) / "models" / run_id / tracking.BUNDLE_ARTIFACT
    best_ckpt.to_directory(str(bundle_dir))
    (bundle_dir / STATE_FILE).unlink()  # optimizer state stays with the checkpoint, not the model
    bundle = ModelBundle.load(bundle_dir)
    example = _input_example(bundle)
    version = tracking.log_model(uri, run_id, bundle_dir, example, job.tracking.registered_model,
                                 job.tracking.registry_uri)
    if version is not None:
        name, reg = job.tracking.registered_model, job.tracking.registry_uri
        tracking.tag_version(uri, name, version, {k: best_metrics[k] for k in ("val_loss", "train_loss", "epoch")
                                                   if k in best_metrics}, reg)
        first = registry.CHAMPION not in tracking.aliases(uri, name, reg)
        registry.promote(uri, name, version, registry.CHALLENGER, registry_uri=reg)
        decision = registry.gate(uri, name, version, job.tracking.promote_margin, reg)
        if decision.passed and (first or job.tracking.auto_promote):
            registry.promote(uri, name, version, registry.CHAMPION, force=True, registry_uri=reg)
        log(f"champion gate: {'passed' if decision.passed else 'not passed'} ({decision.reason})")
    tracking.end_run(uri, run_id)
    return TrainResult(run_id, job.tracking.registered_model, version,
                       tracking.aliases(uri, job.tracking.registered_model, job.tracking.registry_uri),
                       str(bundle_dir), {k: float(v) for k, v in best_metrics.items()})


def _input_example(bundle: ModelBundle):
    import pandas as pd

    rng = np.random.default_rng(0)
    x = rng.random((2, *bundle.input_shape), dtype=np.float32)
    return pd.DataFrame({"x": [row.reshape(-1).tolist() for row in x]})
