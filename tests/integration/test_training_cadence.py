"""Checkpoints on a cadence (``train.checkpoint_every``) and metrics sent to MLflow in batches: only the due epochs
(and the best epoch) are checkpointed, every epoch's metrics reach MLflow exactly once, an epoch without a checkpoint
waits for nothing, and a worker killed between checkpoints resumes from the latest one without logging any epoch
twice."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines import tracking
from pipelines.config import load_config
from pipelines.train.checkpoint import STATE_FILE
from pipelines.train.driver import ray_run_name, run_training

EPOCHS = 10


def _job(home: Path, data: Path, name: str, *extra: str):
    return load_config(
        "jobs/configs/mnist_dense.yaml",
        [
            f"name={name}",
            f"data.path={data}",
            f"tracking.registered_model={name}",
            f"train.epochs={EPOCHS}",
            "train.num_workers=1",
            "train.cpus_per_worker=1",
            "train.batch_size=64",
            "model.hidden=[16]",
            "model.latent_dim=4",
            "train.checkpoint_every=5",
            "train.checkpoint_every_s=null",
            f"train.keep_checkpoints={EPOCHS}",  # keep every checkpoint written, to count them
            *extra,
        ],
        home=str(home),
    )


@pytest.fixture(scope="module")
def runs(ray_local, mnist_small, tmp_path_factory) -> dict[str, tuple]:
    """Two jobs in one AEPIPE_HOME: undisturbed, and with the worker killed in epoch 7 (metrics sent every epoch)."""
    home = tmp_path_factory.mktemp("aepipe-home")
    faulty = ("train.metrics_flush_s=0", "train.fault_injection={epoch: 7, rank: 0, after_batches: 1}")
    out = {}
    for name, extra in (("cadence", ()), ("cadence-faulty", faulty)):
        job = _job(home, mnist_small, name, *extra)
        out[name] = (job, run_training(job, log=lambda _: None))
    return out


def _checkpoint_epochs(job, run_id: str) -> list[int]:
    """The epoch of every checkpoint folder the run left, sorted."""
    run_dir = Path(job.checkpoint_path) / ray_run_name(job, run_id)
    states = [torch.load(d / STATE_FILE, weights_only=True) for d in run_dir.glob("checkpoint_*") if d.is_dir()]
    return sorted(int(s["epoch"]) for s in states)


def _steps(uri: str, run_id: str, key: str) -> list[int]:
    return [s for s, _ in tracking.metric_history(uri, run_id, key)]


def test_only_due_and_best_epochs_are_checkpointed(runs):
    job, result = runs["cadence"]
    history = dict(tracking.metric_history(job.tracking_uri, result.run_id, "val_loss"))
    best = min((e for e in history if e >= 1), key=lambda e: history[e])
    # each due epoch (5, 10), preceded by the best epoch up to it when that came after the previous checkpoint
    expected = {5, EPOCHS}
    for due, previous in ((5, 0), (EPOCHS, 5)):
        best_so_far = min(range(1, due + 1), key=lambda e: history[e])
        expected |= {best_so_far} if best_so_far > previous else set()
    assert _checkpoint_epochs(job, result.run_id) == sorted(expected)
    assert result.metrics["epoch"] == best  # the registered model is the best epoch's


def test_every_epoch_is_logged_once(runs):
    job, result = runs["cadence"]
    assert _steps(job.tracking_uri, result.run_id, "val_loss") == list(range(EPOCHS + 1))
    for key in ("train_loss", "samples_per_s", "lr", "time_epoch_s"):
        assert _steps(job.tracking_uri, result.run_id, key) == list(range(1, EPOCHS + 1)), key


def test_epochs_without_a_checkpoint_wait_for_nothing(runs):
    """Epochs 2 to 4 are not checkpointed, so they report nothing to Ray Train and follow each other as fast as they
    train. Reporting each epoch kept the ends of epochs 1 and 4 at least 2 s apart: the controller takes one report
    per poll, every 2 s, and a worker's queue holds one."""
    job, result = runs["cadence-faulty"]  # metrics sent as each epoch ends: their timestamps time the epochs
    history = tracking.client(job.tracking_uri).get_metric_history(result.run_id, "val_loss")
    ended_ms = {m.step: m.timestamp for m in history}
    assert ended_ms[4] - ended_ms[1] < 1500


def test_killed_worker_resumes_from_latest_checkpoint_and_logs_each_epoch_once(runs):
    job, result = runs["cadence-faulty"]
    uri = job.tracking_uri
    marker = Path(job.checkpoint_path) / ray_run_name(job, result.run_id) / "fault-injected-epoch7-rank0"
    assert marker.is_file(), "the fault was never injected"
    assert tracking.metric_history(uri, result.run_id, "resumed_from_epoch") == [(5, 5.0)]
    assert _steps(uri, result.run_id, "val_loss") == list(range(EPOCHS + 1))
    for key in ("train_loss", "samples_per_s", "lr"):
        assert _steps(uri, result.run_id, key) == list(range(1, EPOCHS + 1)), key
    assert tracking.run_status(uri, result.run_id) == "FINISHED"
