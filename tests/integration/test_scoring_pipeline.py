"""Whole-corpus scoring on real Ray + MLflow: exactly-once publication, resume after a kill, incremental
nightly mode, shape errors and the drift alarm. One tiny model is trained once for the module."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from pipelines import tracking
from pipelines.config import ScoreConfig
from pipelines.data.corpora import mnist_arrays, write_vector_shards
from pipelines.data.reads import logging_reads, read_counts
from pipelines.score import publish

MODEL = "models:/scoring-test@champion"


def _cli(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(ray_local, mnist_small, tmp_path_factory):
    """AEPIPE_HOME with one registered 1-epoch dense model (champion) trained on ``mnist_small``."""
    home = tmp_path_factory.mktemp("scoring-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEPIPE_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        result = _cli(
            "train",
            "--config",
            "jobs/configs/mnist_dense.yaml",
            f"data.path={mnist_small}",
            "train.epochs=1",
            "train.batch_size=64",
            "model.hidden=[64]",
            "model.latent_dim=8",
            "tracking.registered_model=scoring-test",
        )
        assert result.exit_code == 0, result.output
        yield home


@pytest.fixture()
def env(trained, monkeypatch):
    monkeypatch.setenv("AEPIPE_HOME", str(trained))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return trained


def _corpus(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _score(inp: Path, out: Path, *extra: str, model: str = MODEL):
    return _cli("score", "--model", model, "--input", str(inp), "--output", str(out), *extra)


def _tables(out: Path) -> dict[str, pa.Table]:
    """Each input shard's scored rows, read from the files the partition's manifest lists for it."""
    shards = publish.read_manifest(str(out))["shards"]
    return {s["name"]: pa.concat_tables([pq.read_table(out / f["path"]) for f in s["files"]]) for s in shards}


def _data_files(out: Path) -> set[str]:
    """Every Parquet file in the partition directory itself (not in its ``_`` folders or nested partitions)."""
    return {p.name for p in out.glob("*.parquet")}


def _listed(out: Path) -> set[str]:
    return {f["path"] for s in publish.read_manifest(str(out))["shards"] for f in s["files"]}


@pytest.fixture(scope="module")
def clean(trained, mnist_small, tmp_path_factory):
    """One uninterrupted scoring of ``mnist_small``: (input, output, CLI result, reads of each input file)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEPIPE_HOME", str(trained))
        base = tmp_path_factory.mktemp("clean")
        inp = _corpus(mnist_small, base / "in")
        with logging_reads(str(base / "reads")):
            result = _score(inp, base / "out")
        yield inp, base / "out", result, read_counts(str(base / "reads"))


def test_publishes_one_file_per_shard_and_rerun_is_idempotent(env, clean):
    inp, out, first, reads = clean
    assert first.exit_code == 0, first.output  # the training distribution raises no drift alarm
    # the corpus fits the object store: the validation pass keeps its records, and scoring reads them there
    assert reads == {f"part-{i:05d}.parquet": 1 for i in range(4)}
    manifest = publish.read_manifest(str(out))
    assert (
        manifest["rows"] == 600 and manifest["model"]["version"] == "1" and manifest["model"]["name"] == "scoring-test"
    )
    assert [s["name"] for s in manifest["shards"]] == [f"part-{i:05d}.parquet" for i in range(4)]
    # the actors wrote each shard's rows under the shard's name; the manifest lists exactly the files on disk
    assert all(f["path"].startswith(s["name"][:-8]) for s in manifest["shards"] for f in s["files"])
    assert _data_files(out) == _listed(out)
    assert [s["rows"] for s in manifest["shards"]] == [150] * 4
    assert manifest["drift"]["drift_alarm"] == 0.0 and manifest["drift"]["drift_psi"] < 0.2
    df = publish.read_scores(str(out))
    assert len(df) == 600 and df["id"].is_unique and set(df["id"]) == {f"mnist-{i:05d}" for i in range(600)}
    assert list(df.columns) == ["id", "score", "is_anomaly", "embedding", "model_name", "model_version"]
    assert np.stack(df["embedding"]).shape == (600, 8) and (df["score"] > 0).all()
    assert df["is_anomaly"].dtype == bool and df["is_anomaly"].sum() < 30
    # the first shard's output rows are that shard's input rows, in order
    assert (
        _tables(out)["part-00000.parquet"].column("id").to_pylist()
        == pq.read_table(inp / "part-00000.parquet").column("id").to_pylist()
    )

    # the scoring run: rows, throughput, anomaly rate, quantiles, drift metrics, histogram
    uri = f"sqlite:///{env / 'mlflow.db'}"
    run = tracking.client(uri).get_run(manifest["scoring_run_id"])
    m = run.data.metrics
    assert m["rows"] == 600 and m["rows_scored"] == 600 and m["rows_per_s"] > 0 and m["drift_alarm"] == 0
    # the actor pool's start-up is reported apart from the rate once rows flow (4 shards: >1 batch)
    assert 0 < m["warmup_seconds"] < m["scoring_seconds"] and m["steady_rows_per_s"] > m["rows_per_s"]
    assert manifest["timings"]["warmup_seconds"] == pytest.approx(m["warmup_seconds"])
    assert m["anomaly_rate"] == pytest.approx(df["is_anomaly"].mean())
    assert m["score_p50"] == pytest.approx(df["score"].median(), rel=0.05)
    assert run.data.tags["aepipe.drift"] == "false" and run.info.status == "FINISHED"
    arts = {a.path for a in tracking.client(uri).list_artifacts(run.info.run_id, "scoring")}
    assert arts == {"scoring/manifest.json"}
    # runs:/RUN_ID/model names the same pinned version as the alias did
    pinned = tracking.resolve_model_uri(uri, f"runs:/{manifest['model']['run_id']}/model")
    assert (pinned.name, pinned.version) == ("scoring-test", "1")

    before = _tables(out)
    again = _score(inp, out)
    assert again.exit_code == 0, again.output
    after = _tables(out)
    assert after.keys() == before.keys() and all(after[k].equals(before[k]) for k in before)
    assert len(publish.read_scores(str(out))) == 600
    # the older generation's files are gone: the directory holds what the new manifest lists, no lease
    assert _data_files(out) == _listed(out) and not (out / publish.LEASE).exists()

    shown = _cli("scores", "show", str(out), "--rows", "2")
    assert shown.exit_code == 0 and '"rows": 600' in shown.output and "mnist-00000" in shown.output


def test_scoring_run_draws_the_highest_scored_rows(env, clean, tmp_path):
    _, out, _, _ = clean
    manifest = publish.read_manifest(str(out))
    run_id, uri = manifest["scoring_run_id"], f"sqlite:///{env / 'mlflow.db'}"
    plots = {a.path for a in tracking.client(uri).list_artifacts(run_id, "plots")}
    assert plots == {"plots/score_histogram.png", "plots/top_anomalies.png", "plots/top_anomalies.json"}
    local = Path(tracking.client(uri).download_artifacts(run_id, "plots", str(tmp_path)))
    assert all((local / name).stat().st_size > 20_000 for name in ("score_histogram.png", "top_anomalies.png"))

    shows = json.loads((local / "top_anomalies.json").read_text())
    published = publish.read_scores(str(out)).sort_values(["score", "id"], ascending=[False, True])
    k = ScoreConfig().gallery_size
    assert shows["kind"] == "images" and len(shows["ids"]) == k  # MNIST rows, 784 values: 28 x 28 pictures
    # the 4 shards were scored by separate blocks; their candidates merge to the corpus's own top k
    assert shows["ids"] == published["id"].head(k).tolist()
    assert shows["scores"] == pytest.approx(published["score"].head(k).tolist(), rel=1e-6)


def test_shards_scored_in_several_passes_publish_what_one_pass_does(env, clean, tmp_path):
    inp, out, _, _ = clean
    result = _score(inp, tmp_path / "out", "score.shards_per_pass=3")  # 4 shards: a pass of 3, then one of 1
    assert result.exit_code == 0, result.output
    one, several = _tables(out), _tables(tmp_path / "out")
    assert several.keys() == one.keys()
    for name in one:
        assert several[name].select(["id", "score", "embedding"]).equals(one[name].select(["id", "score", "embedding"]))


def test_killed_run_resumes_to_the_same_output(env, clean, tmp_path):
    inp, clean_out, _, _ = clean
    out = tmp_path / "out"
    markers = out / publish.MARKERS / "scoring-test-v1-both"
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs.cli",
            "score",
            "--model",
            MODEL,
            "--input",
            str(inp),
            "--output",
            str(out),
            "--shards-per-pass",
            "1",
        ],
        env=environ,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )

    def committed() -> list[Path]:  # complete markers, not one still being written (".NAME.json.tmp-...")
        return list(markers.glob("*.json"))

    deadline = time.time() + 240
    while not committed():
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "no shard marker appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    done = len(committed())
    assert 1 <= done < 4 and not (out / publish.MANIFEST).exists()

    resumed = _score(inp, out)  # the rest in one pass: a shard's scores do not depend on the pass
    assert resumed.exit_code == 0, resumed.output
    manifest = publish.read_manifest(str(out))
    assert manifest["plan"] == {"to_score": 4 - done, "resumed": done, "carried": 0}
    clean_tables, tables = _tables(clean_out), _tables(out)
    assert tables.keys() == clean_tables.keys()
    assert all(tables[k].equals(clean_tables[k]) for k in tables), "resumed output differs from a clean run"
    assert _data_files(out) == _listed(out)  # the killed attempt's unfinished files were swept


def test_incremental_scores_only_new_shards_and_rerun_is_a_noop(env, clean, tmp_path):
    # night 1 is the clean run (copies keep names, sizes and mtimes: the shards' fingerprints)
    inp, out = _corpus(clean[0], tmp_path / "in"), _corpus(clean[1], tmp_path / "out")
    first_files = _tables(out)["part-00000.parquet"], publish.read_manifest(str(out))["shards"][0]["files"]

    # night 2: two new shards with new ids (drift alarms are tested below; switched off here)
    x, y = mnist_arrays()
    ids = np.array([f"night2-{i:05d}" for i in range(200)])
    write_vector_shards(tmp_path / "night2", ids, x[:600:3], y[:600:3], shards=2)
    for i, f in enumerate(sorted((tmp_path / "night2").glob("*.parquet"))):
        shutil.move(f, inp / f"part-{4 + i:05d}.parquet")

    second = _score(inp, out, "--incremental", "--psi-limit", "100", "--ks-alpha", "1e-300")
    assert second.exit_code == 0, second.output
    manifest = publish.read_manifest(str(out))
    assert manifest["plan"] == {"to_score": 2, "resumed": 0, "carried": 4}
    assert manifest["rows"] == 800 and len(publish.read_scores(str(out))) == 800
    assert publish.read_manifest(str(out))["shards"][0]["files"] == first_files[1]  # carried over, not rescored
    assert _tables(out)["part-00000.parquet"].equals(first_files[0]) and _data_files(out) == _listed(out)

    third = _score(inp, out, "--incremental")
    assert third.exit_code == 0 and "no-op" in third.output
    assert publish.read_manifest(str(out)) == manifest

    # a nightly partition holds only what no earlier partition has; here nothing
    assert "no-op" in _score(inp, out, "--incremental", "--partition", "dt=night3").output
    assert not (out / "dt=night3").exists()


def test_incremental_refuses_a_new_shard_that_repeats_a_published_id(env, clean, tmp_path):
    """The new shard is valid on its own; only the check across the shards the partition will list (carried and
    new, :func:`pipelines.data.ids.count_ids`) sees the repeated ids, and the published manifest stays as it was."""
    inp, out = _corpus(clean[0], tmp_path / "in"), _corpus(clean[1], tmp_path / "out")
    before = publish.read_manifest(str(out))
    x, y = mnist_arrays()
    ids = np.array([f"night2-{i:05d}" for i in range(98)] + ["mnist-00000", "mnist-00599"])  # 2 of the first night
    write_vector_shards(tmp_path / "night2", ids, x[:100], y[:100], shards=1)
    shutil.move(next((tmp_path / "night2").glob("*.parquet")), inp / "part-00004.parquet")

    result = _score(inp, out, "--incremental", "--psi-limit", "100", "--ks-alpha", "1e-300")
    assert result.exit_code == 2, result.output
    assert "ids occur in more than one shard (e.g. mnist-00000, mnist-00599)" in result.output
    assert publish.read_manifest(str(out)) == before


def _second_version(home: Path) -> str:
    """Register the champion's bundle again as a new version (no run of its own); its models:/ URI."""
    uri = f"sqlite:///{home / 'mlflow.db'}"
    v1 = tracking.resolve_model(uri, MODEL)
    v2 = tracking.client(uri).create_model_version(v1.name, v1.source)
    return f"models:/{v1.name}/{v2.version}"


def test_incremental_after_a_new_champion_scores_only_new_shards_and_rescore_scores_all(env, clean, tmp_path):
    inp, out = _corpus(clean[0], tmp_path / "in"), _corpus(clean[1], tmp_path / "out")  # v1 published 4 shards
    x, y = mnist_arrays()
    write_vector_shards(tmp_path / "new", np.array([f"new-{i:05d}" for i in range(100)]), x[:100], y[:100], shards=1)
    shutil.move(tmp_path / "new" / "part-00000.parquet", inp / "part-00004.parquet")
    newer = _second_version(env)
    quiet = ("--psi-limit", "100", "--ks-alpha", "1e-300")

    night = _score(inp, out, "--incremental", "--partition", "dt=night2", *quiet, model=newer)
    assert night.exit_code == 0, night.output
    manifest = publish.read_manifest(str(out / "dt=night2"))
    assert manifest["plan"] == {"to_score": 1, "resumed": 0, "carried": 0}  # not the 4 shards v1 scored
    assert manifest["rows"] == 100 and manifest["model"]["version"] == newer.rsplit("/", 1)[1]

    again = _score(inp, out, "--incremental", "--partition", "dt=night3", model=newer)
    assert again.exit_code == 0 and "no-op" in again.output

    rescored = _score(inp, out, "--rescore", "--partition", "dt=rescore", *quiet, model=newer)
    assert rescored.exit_code == 0, rescored.output
    assert publish.read_manifest(str(out / "dt=rescore"))["plan"] == {"to_score": 4, "resumed": 0, "carried": 0}
    assert "no-op" in _score(inp, out, "--rescore", model=newer).output


def test_shape_mismatch_fails_before_any_work(env, tmp_path):
    ids = np.array([f"s{i}" for i in range(20)])
    write_vector_shards(tmp_path / "in", ids, np.random.default_rng(0).random((20, 100), dtype=np.float32), None, 2)
    result = _score(tmp_path / "in", tmp_path / "out")
    assert result.exit_code == 2
    assert "samples have shape (100,) but the model expects (784,)" in result.output
    assert not any(tmp_path.glob("*out*"))  # nothing staged, nothing published

    # an actor pool that reserves every CPU would starve the read tasks: refused up front
    hang = _score(tmp_path / "in", tmp_path / "out", "--concurrency", "2", "--num-cpus", "1")
    assert hang.exit_code == 2 and "the job would hang" in hang.output


def test_drift_alarm_on_shifted_inputs(env, mnist_small, tmp_path):
    x, y = mnist_arrays()
    noisy = np.clip(x[:600] * 0.5 + np.random.default_rng(0).normal(100, 40, x[:600].shape), 0, 255).astype(np.float32)
    ids = np.array([f"mnist-{i:05d}" for i in range(600)])
    write_vector_shards(tmp_path / "in", ids, noisy, y[:600], shards=4)
    result = _score(tmp_path / "in", tmp_path / "out")
    assert result.exit_code == 3, result.output
    assert "DRIFT ALARM" in result.output
    manifest = publish.read_manifest(str(tmp_path / "out"))  # still published: the data is valid, it moved
    assert manifest["drift"]["drift_alarm"] == 1.0 and manifest["drift"]["drift_psi"] > 1.0
    run = tracking.client(f"sqlite:///{env / 'mlflow.db'}").get_run(manifest["scoring_run_id"])
    assert run.data.tags["aepipe.drift"] == "true" and run.data.metrics["drift_psi"] > 1.0
