"""Production training on a real local Ray + MLflow: a worker killed mid-epoch recovers from the last
checkpoint, the run is fully tracked, and the registered pyfunc model scores like the Scorer."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipelines import tracking
from pipelines.bundle import bundle_files
from pipelines.config import load_config
from pipelines.score.actor import Scorer
from pipelines.score.output import SHARD
from pipelines.train.driver import KEEP_FREED_MEMORY, ray_run_name, run_training

EPOCHS = 4


def _job(home: Path, data: Path, name: str, *extra: str):
    return load_config(
        "jobs/configs/mnist_dense.yaml",
        [
            f"name={name}",
            f"data.path={data}",
            f"tracking.registered_model={name}",
            f"train.epochs={EPOCHS}",
            "train.num_workers=2",
            "train.batch_size=32",
            "train.lr=0.005",
            "model.hidden=[32]",
            "model.latent_dim=4",
            "train.lr_schedule=cosine",
            "train.warmup_epochs=1",
            "train.grad_clip=5.0",
            "train.checkpoint_every=1",  # recovery resumes from the epoch before the kill
            *extra,
        ],
        home=str(home),
    )


@pytest.fixture(scope="module")
def trained(ray_local, mnist_small, tmp_path_factory) -> dict[str, tuple]:
    """Two jobs with one seed in one AEPIPE_HOME: undisturbed, and with rank 1 killed in epoch 2."""
    home = tmp_path_factory.mktemp("aepipe-home")
    out = {}
    for name, extra in (("steady", ()), ("faulty", ("train.fault_injection={epoch: 2, rank: 1, after_batches: 2}",))):
        job = _job(home, mnist_small, name, *extra)
        out[name] = (job, run_training(job, log=lambda _: None))
    return out


def _steps(uri: str, run_id: str, key: str) -> list[int]:
    return [s for s, _ in tracking.metric_history(uri, run_id, key)]


def test_killed_worker_resumes_from_last_checkpoint(trained):
    job, faulty = trained["faulty"]
    _, steady = trained["steady"]
    uri = job.tracking_uri
    marker = Path(job.checkpoint_path) / ray_run_name(job, faulty.run_id) / "fault-injected-epoch2-rank1"
    assert marker.is_file(), "the fault was never injected"
    # resumed exactly once, from the epoch-1 checkpoint; every epoch in the history once
    assert tracking.metric_history(uri, faulty.run_id, "resumed_from_epoch") == [(1, 1.0)]
    assert _steps(uri, faulty.run_id, "val_loss") == list(range(EPOCHS + 1))
    for key in ("train_loss", "samples_per_s", "lr"):
        assert _steps(uri, faulty.run_id, key) == list(range(1, EPOCHS + 1)), key
    final = {r.run_id: tracking.metric_history(uri, r.run_id, "val_loss")[-1][1] for r in (faulty, steady)}
    assert abs(final[faulty.run_id] - final[steady.run_id]) / final[steady.run_id] < 0.05, final
    assert tracking.run_status(uri, faulty.run_id) == "FINISHED"


def test_run_is_fully_tracked(trained):
    job, steady = trained["steady"]
    uri = job.tracking_uri
    run = tracking.client(uri).get_run(steady.run_id)
    params, tags = run.data.params, run.data.tags
    assert params["train.epochs"] == str(EPOCHS) and params["model.latent_dim"] == "4"
    assert params["train.lr_schedule"] == "cosine" and params["resolved.data_path"] == job.data_path
    commit = tags["mlflow.source.git.commit"]  # the commit checked out when the run started (HEAD or older)
    assert len(commit) == 40 and subprocess.run(["git", "merge-base", "--is-ancestor", commit, "HEAD"]).returncode == 0
    assert tags["aepipe.data.source"] == "parquet" and tags["aepipe.data.path"] == job.data_path
    assert tags["aepipe.worker.glibc_tunables"] == KEEP_FREED_MEMORY  # the workers started with worker_env(train)
    for key in ("train_loss", "train_reconstruction", "val_reconstruction", "samples_per_s", "lr", "time_epoch_s"):
        assert _steps(uri, steady.run_id, key) == list(range(1, EPOCHS + 1)), key
    lrs = [v for _, v in tracking.metric_history(uri, steady.run_id, "lr")]
    # one warm-up epoch at full lr, then cosine decay from lr
    assert lrs[:2] == pytest.approx([0.005, 0.005]) and all(a > b for a, b in itertools.pairwise(lrs[1:])), lrs
    assert min(v for _, v in tracking.metric_history(uri, steady.run_id, "samples_per_s")) > 0
    val = [v for _, v in tracking.metric_history(uri, steady.run_id, "val_loss")]
    assert val[-1] < 0.8 * val[0], val
    plots = {Path(a.path).name for a in tracking.client(uri).list_artifacts(steady.run_id, "plots")}
    assert plots == {"loss_curves.png", "reconstructions.png", "code_map.png", "score_histogram.png", "plot_rows.json"}
    # default retention: at most 2 checkpoints left in the Ray run directory
    run_dir = Path(job.checkpoint_path) / ray_run_name(job, steady.run_id)
    assert 1 <= len([d for d in run_dir.glob("checkpoint_*") if d.is_dir()]) <= 2


def test_registered_version_and_pyfunc_round_trip(trained, mnist_small):
    job, steady = trained["steady"]
    uri = job.tracking_uri
    assert {k: str(v) for k, v in steady.aliases.items()} == {"champion": "1", "challenger": "1"}
    mv = tracking.client(uri).get_model_version("steady", "1")
    best_val = min(v for s, v in tracking.metric_history(uri, steady.run_id, "val_loss") if s > 0)
    assert float(mv.tags["val_loss"]) == pytest.approx(best_val) and mv.run_id == steady.run_id

    rows = pq.read_table(mnist_small).slice(0, 64).to_pandas()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    info = mlflow.models.get_model_info("models:/steady@champion")
    assert info.signature is not None and info.saved_input_example_info is not None
    local = Path(mlflow.artifacts.download_artifacts("models:/steady@champion"))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert {
        "artifacts/bundle/model/model.safetensors",
        "artifacts/bundle/model/config.json",
        "artifacts/bundle/normalizer.json",
        "artifacts/bundle/calibration.json",
    } <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))], files

    predicted = mlflow.pyfunc.load_model("models:/steady@champion").predict(pd.DataFrame({"x": list(rows["x"])}))
    scorer = Scorer(
        bundle_files(tracking.download_bundle(uri, tracking.resolve_model_uri(uri, "models:/steady/1"))),
        batch_size=1024,
    )
    batch = {"id": rows["id"].to_numpy(), "x": np.stack(rows["x"]).astype(np.float32)}
    expected = scorer.infer({**batch, SHARD: np.zeros(len(rows), np.int32)})
    np.testing.assert_allclose(predicted["score"].to_numpy(), expected["score"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(np.stack(predicted["embedding"]), expected["embedding"], rtol=0, atol=1e-5)
    assert (predicted["is_anomaly"].to_numpy() == expected["is_anomaly"]).all()
    threshold = float(pd.read_json(local / "artifacts/bundle/calibration.json", typ="series")["threshold"])
    assert threshold > 0 and ((predicted["score"] > threshold) == predicted["is_anomaly"]).all()
