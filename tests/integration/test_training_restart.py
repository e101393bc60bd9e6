"""A killed ``aepipe train`` process (its own local Ray) is re-run with the same command and continues the same
MLflow run from its latest checkpoint; early stopping state survives the restart."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from pipelines import tracking
from pipelines.train.driver import JOB_TAG

AEPIPE = str(Path(sys.executable).with_name("aepipe"))
NAME = "restartable"


def _command(data: Path) -> list[str]:
    # min_delta=1 makes every epoch after the first "no improvement": with patience 4 the job stops after
    # epoch 5 of 10, deterministically, so early stopping must carry its counter across the restart.
    return [
        AEPIPE,
        "train",
        "--config",
        "jobs/configs/mnist_dense.yaml",
        f"name={NAME}",
        f"data.path={data}",
        f"tracking.registered_model={NAME}",
        "train.epochs=10",
        "train.batch_size=16",
        "model.hidden=[32]",
        "model.latent_dim=4",
        "train.early_stopping_patience=4",
        "train.early_stopping_min_delta=1.0",
        "train.keep_checkpoints=1",
        "train.checkpoint_every=1",  # the kill comes after a given epoch's checkpoint
    ]


def _latest_checkpoint_epoch(checkpoints: Path) -> int:
    """Epoch of the latest checkpoint the Ray Train controller has registered (0 when none yet)."""
    for snapshot in checkpoints.glob(f"{NAME}-*/checkpoint_manager_snapshot.json"):
        latest = json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}
        return int(latest.get("metrics", {}).get("epoch", 0))
    return 0


def test_restarted_driver_continues_the_same_run(home, mnist_small, tmp_path):
    env = {**os.environ, "AEPIPE_HOME": str(home), "RAY_DEDUP_LOGS": "1"}
    env.pop("RAY_ADDRESS", None)
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen(
            _command(mnist_small), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + 400
        while (
            _latest_checkpoint_epoch(home / "checkpoints") < 2 and first.poll() is None and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        running = first.poll() is None
        # the driver and everything it started (its local Ray). Ray's own processes may sit in other process
        # groups and outlive the driver for a moment (a worker finishing an epoch and registering its
        # checkpoint), so every descendant is killed by id and waited for before the checkpoint is read.
        started = psutil.Process(first.pid).children(recursive=True)
        os.killpg(first.pid, signal.SIGKILL)
        for process in started:
            with contextlib.suppress(psutil.Error):
                process.kill()
        psutil.wait_procs(started, timeout=60)
        first.wait()
    # read after the kill: another epoch can be registered between the poll above and the signal
    killed_at = _latest_checkpoint_epoch(home / "checkpoints")
    assert running and 2 <= killed_at < 5, f"the job was not killed mid-run:\n{log.read_text()[-3000:]}"

    uri = f"sqlite:///{home.resolve() / 'mlflow.db'}"
    run_id = tracking.find_run(uri, "aepipe", JOB_TAG, NAME)
    assert tracking.run_status(uri, run_id) == "RUNNING"  # a killed driver leaves its run open

    second = subprocess.run(_command(mnist_small), env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"run:      {run_id}" in second.stdout

    c = tracking.client(uri)
    runs = c.search_runs([c.get_experiment_by_name("aepipe").experiment_id], f"tags.`{JOB_TAG}` = '{NAME}'")
    assert [r.info.run_id for r in runs] == [run_id] and tracking.run_status(uri, run_id) == "FINISHED"
    # resumed once, from the checkpoint that existed when the driver died; each epoch once; stopped after 5
    assert tracking.metric_history(uri, run_id, "resumed_from_epoch") == [(killed_at, float(killed_at))]
    assert [s for s, _ in tracking.metric_history(uri, run_id, "val_loss")] == [0, 1, 2, 3, 4, 5]
    assert [s for s, _ in tracking.metric_history(uri, run_id, "train_loss")] == [1, 2, 3, 4, 5]
    # keep_checkpoints=1: the best checkpoint, plus the latest when that is a different one
    val = dict(tracking.metric_history(uri, run_id, "val_loss"))
    best = min(range(1, 6), key=val.get)
    run_dir = next((home / "checkpoints").glob(f"{NAME}-*"))
    assert len([d for d in run_dir.glob("checkpoint_*") if d.is_dir()]) == (1 if best == 5 else 2)
    mv = tracking.client(uri).get_model_version(NAME, "1")
    assert mv.run_id == run_id and int(float(mv.tags["epoch"])) == best
