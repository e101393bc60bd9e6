"""Image folders and time series scored like Parquet corpora: in shards (image folders by sub-folder and in
chunks, time series by file), incrementally, resumably after a kill, on a local disk and on S3. One tiny dense
model per source is trained once for the module, on real PNG files and real Parquet series."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from pipelines.config import ScoreConfig, load_config
from pipelines.data.corpora import write_synthetic
from pipelines.score import inputs, publish
from pipelines.score.driver import ScoreRequest, ScoreResult, run_scoring
from pipelines.train.driver import run_training
from tests.support.s3 import moto_s3

IMAGE_MODEL, SERIES_MODEL = "models:/shards-images@champion", "models:/shards-series@champion"
WINDOW, STRIDE = 8, 4


def _train(home: Path, data: Path, name: str, *overrides: str) -> str:
    """Train and register a 1-epoch dense model on ``data``; returns the tracking URI."""
    job = load_config(
        None,
        [
            f"home={home}",
            f"name={name}",
            f"data.path={data}",
            "model.name=dense",
            "model.hidden=[16]",
            "model.latent_dim=4",
            "train.epochs=1",
            "train.num_workers=1",
            "train.batch_size=32",
            "train.plot_rows=16",
            f"tracking.registered_model={name}",
            *overrides,
        ],
        home=str(home),
    )
    run_training(job, log=lambda _m: None)
    return job.tracking_uri


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """480 real 8x8 PNGs in 8 sub-folders (``0000K/{normal,anomaly}/img-N.png``)."""
    root = tmp_path_factory.mktemp("images")
    write_synthetic(root, "images", rows=480, shards=4, anomaly_fraction=0.1, seed=0, size=8)
    return root


def _series_file(path: Path, steps: range) -> None:
    """Three hourly series over ``steps``: a sine per series, ``series_id, timestamp, value``."""
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(list(steps), unit="h")
    frames = [
        pd.DataFrame({"series_id": f"s-{k}", "timestamp": stamps, "value": np.sin(np.array(steps) / 3.0 + k)})
        for k in range(3)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.concat(frames).to_parquet(path)


@pytest.fixture(scope="module")
def home(ray_local, images, tmp_path_factory):
    """AEPIPE_HOME with a dense image model and a dense time-series model (both champions): its tracking URI."""
    home = tmp_path_factory.mktemp("shards-home")
    series = tmp_path_factory.mktemp("series-train")
    _series_file(series / "part-00000.parquet", range(40))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AEPIPE_HOME", str(home))
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("MLFLOW_REGISTRY_URI", raising=False)
        uri = _train(
            home, images, "shards-images", "data.source=images", "data.image_size=[8,8]", "model.input_shape=[1,8,8]"
        )
        _train(
            home,
            series,
            "shards-series",
            "data.source=timeseries",
            "data.value_columns=[value]",
            f"data.window={WINDOW}",
            f"data.stride={STRIDE}",
            f"model.input_shape=[{WINDOW},1]",
        )
        yield home, uri


def _score(home, inp, out, model: str = IMAGE_MODEL, **kw) -> ScoreResult:
    settings = ScoreConfig(
        images_per_shard=kw.pop("images_per_shard", 1000), on_bad_records=kw.pop("on_bad_records", None)
    )
    req = ScoreRequest(
        model_uri=model, input_path=str(inp), output_path=str(out), tracking_uri=home[1], settings=settings, **kw
    )
    return run_scoring(req, log=lambda _m: None)


def _copy_folders(src: Path, dst: Path, *folders: str) -> None:
    for folder in folders:
        shutil.copytree(src / folder, dst / folder)


def _image_ids(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.png")}


def _tables(out) -> dict[str, pd.DataFrame]:
    """Each shard's scored rows, in order, from the files the manifest lists for it (how a shard's rows split into
    files depends on the blocks a run happened to form)."""
    shards = publish.read_manifest(str(out))["shards"]
    return {
        s["name"]: pd.concat([pq.read_table(out / f["path"]).to_pandas() for f in s["files"]], ignore_index=True)
        for s in shards
    }


def test_incremental_image_folder_scores_only_new_files_and_a_rerun_is_a_noop(home, images, tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    _copy_folders(images, inp, "00000", "00001", "00002")
    first = _score(home, inp, out, incremental=True)
    manifest = publish.read_manifest(str(out))
    # one shard per sub-folder, each recording the files it holds
    assert first.plan == {"to_score": 6, "resumed": 0, "carried": 0} and first.rows == len(_image_ids(inp))
    assert {s["name"].rsplit("/", 1)[0] for s in manifest["shards"]} == {
        f"0000{k}/{label}" for k in range(3) for label in ("normal", "anomaly")
    }
    assert sorted(i[0] for s in manifest["shards"] for i in inputs.read_inputs(str(out), s)) == sorted(_image_ids(inp))
    old = _tables(out)

    _copy_folders(images, inp, "00003")  # tonight's batch folder
    extra = inp / "00000" / "normal" / "img-99999999.png"  # and one late file in an old folder
    shutil.copy(next((images / "00003" / "normal").glob("*.png")), extra)
    (inp / "00003" / "anomaly" / "broken.png").write_bytes(b"not a png")  # quarantined, counted in its shard
    second = _score(home, inp, out, incremental=True, on_bad_records="skip")
    good = _image_ids(inp) - {"00003/anomaly/broken.png"}
    assert second.plan == {"to_score": 3, "resumed": 0, "carried": 6}
    assert second.rows_scored == len(_image_ids(images / "00003")) + 1 and second.rows == len(good)
    broken = [s for s in publish.read_manifest(str(out))["shards"] if s["name"].startswith("00003/anomaly/")]
    assert [(s["skipped"], s["rows"] - s["output_rows"]) for s in broken] == [(1, 1)]
    scores = publish.read_scores(str(out))
    assert scores["id"].is_unique and set(scores["id"]) == good
    tables = _tables(out)
    assert all(tables[name].equals(old[name]) for name in old)  # the published shards were carried, not redone
    late = [s for s in publish.read_manifest(str(out))["shards"] if s["name"].startswith("00000/normal/img-99999999")]
    assert [(s["rows"], [i[0] for i in inputs.read_inputs(str(out), s)]) for s in late] == [
        (1, ["00000/normal/img-99999999.png"])
    ]

    assert _score(home, inp, out, incremental=True).noop  # the same night again: nothing to do


def test_killed_image_run_resumes_from_finished_shards_to_the_same_output(home, images, tmp_path):
    clean = _score(home, images, tmp_path / "clean", images_per_shard=50)
    shards = clean.plan["to_score"]
    assert shards == 4 * (3 + 1)  # ~108 normal images per folder in chunks of 50, ~12 anomalies in one
    out = tmp_path / "out"
    markers = out / publish.MARKERS / "shards-images-v1-both"
    environ = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = ["score", "--model", IMAGE_MODEL, "--input", str(images), "--output", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "jobs.cli", *command, "--shards-per-pass", "1", "--images-per-shard", "50"],
        env={**environ, "AEPIPE_HOME": str(home[0])},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 300
    while not list(markers.glob("*.json")):  # complete markers, not ".NAME.json.tmp-..." being written
        assert proc.poll() is None, proc.stdout.read().decode()
        assert time.time() < deadline, "no shard marker appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and everything it started
    proc.wait()
    done = len(list(markers.glob("*.json")))
    assert 1 <= done < shards and not (out / publish.MANIFEST).exists()

    resumed = _score(home, images, out, images_per_shard=50)
    assert resumed.plan == {"to_score": shards - done, "resumed": done, "carried": 0}
    clean_tables, tables = _tables(tmp_path / "clean"), _tables(out)
    assert tables.keys() == clean_tables.keys()
    assert all(tables[k].equals(clean_tables[k]) for k in tables), "resumed output differs from a clean run"
    listed = {f["path"] for s in publish.read_manifest(str(out))["shards"] for f in s["files"]}
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*.parquet")}
    assert {p for p in on_disk if not p.startswith("_")} == listed  # the killed attempt's orphans were swept


def test_time_series_windows_spanning_files_are_scored_once_by_the_file_holding_their_end(home, tmp_path):
    inp, out, whole = tmp_path / "in", tmp_path / "out", tmp_path / "whole"
    _series_file(inp / "part-00000.parquet", range(24))  # windows start at 0, 4, ..., 16
    first = _score(home, inp, out, model=SERIES_MODEL, incremental=True)
    assert first.rows == 3 * 5
    _series_file(inp / "part-00001.parquet", range(24, 40))  # the series go on: windows 20 ... 32 end here
    second = _score(home, inp, out, model=SERIES_MODEL, incremental=True)
    assert second.plan == {"to_score": 1, "resumed": 0, "carried": 1} and second.rows_scored == 3 * 4
    assert _score(home, inp, out, model=SERIES_MODEL, incremental=True).noop

    _score(home, inp, whole, model=SERIES_MODEL)  # the whole corpus at once: the same windows, the same scores
    got = publish.read_scores(str(out)).set_index("id").sort_index()
    want = publish.read_scores(str(whole)).set_index("id").sort_index()
    assert got.index.is_unique and list(got.index) == list(want.index)
    assert "s-0@2024-01-01T20:00:00" in got.index  # rows 20..27: starts in the first file, ends in the second
    np.testing.assert_allclose(got["score"], want["score"], rtol=1e-5)
    by_shard = _tables(out)
    assert len(by_shard["part-00001.parquet"]) == 12 and "s-0@2024-01-01T20:00:00" in set(
        by_shard["part-00001.parquet"]["id"]
    )


def test_incremental_image_folder_on_s3(home, images, tmp_path):
    with moto_s3(tmp_path) as server:
        server.create_buckets("data", "scores")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_"))}
        env = {**env, **server.env, "AEPIPE_HOME": str(home[0])}
        os.environ.update(server.env)  # for pyarrow here, uploading the corpus
        try:
            fs, _ = pafs.FileSystem.from_uri("s3://data/")
            for folder in ("00000", "00001"):
                pafs.copy_files(str(images / folder), f"data/images/{folder}", pafs.LocalFileSystem(), fs)
            args = ["score", "--model", IMAGE_MODEL, "--input", "s3://data/images", "--output", "s3://scores/img"]
            aepipe = [sys.executable, "-m", "jobs.cli", *args, "--psi-limit", "100", "--incremental", "--partition"]

            def score(partition: str) -> None:
                done = subprocess.run([*aepipe, partition], env=env, capture_output=True, text=True, timeout=600)
                assert done.returncode == 0, done.stdout + done.stderr

            score("dt=2026-12-01")
            pafs.copy_files(str(images / "00002"), "data/images/00002", pafs.LocalFileSystem(), fs)
            score("dt=2026-12-02")
            score("dt=2026-12-03")
            parts = [f"s3://scores/img/dt=2026-12-0{d}" for d in (1, 2)]
            nights = [publish.read_manifest(p) for p in parts]
            held = [
                sorted(i[0] for s in publish.read_manifest(p)["shards"] for i in inputs.read_inputs(p, s))
                for p in parts
            ]
            assert held[0] == sorted(i for i in _image_ids(images) if i.startswith(("00000/", "00001/")))
            assert held[1] == sorted(f"00002/{n}" for n in _image_ids(images / "00002"))
            assert [m["rows"] for m in nights] == [len(held[0]), len(held[1])]
            assert not server.keys("scores", "img/dt=2026-12-03/")
        finally:
            for key in server.env:
                os.environ.pop(key, None)
