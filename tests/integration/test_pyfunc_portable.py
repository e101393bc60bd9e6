"""A registered aepipe model loads where aepipe is not installed: ``models:/NAME@champion`` from a real SQLite
registry, loaded by ``mlflow.pyfunc.load_model`` in a fresh virtualenv that cannot import ``aecore``,
``pipelines`` or ``jobs``, predicts what the in-repo scorer predicts without importing Ray; and
``mlflow models serve --env-manager local`` from that virtualenv answers ``POST /invocations``.

How the fresh virtualenv is made and why: ``tests/support/fresh_venv.py``.
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aecore import build_model
from pipelines import tracking
from pipelines.bundle import ModelBundle, Normalizer, calibrate, predict_frame
from pipelines.tracking.promotion import CHAMPION
from tests.support.fresh_venv import LOAD_AND_PREDICT, fresh_venv, isolated_env, serve_and_predict
from tests.support.services import free_port

MODEL, EXPERIMENT, SHAPE = "portable", "portable", 6


def _register(root: Path, uri: str) -> tuple[Path, pd.DataFrame]:
    """Log and register a tiny dense bundle (standard normalization) the way the training driver does, and
    make it champion; returns the bundle directory and a few input rows."""
    run_id = tracking.start_run(uri, EXPERIMENT, "tiny", {"model": {"name": "dense"}}, {}, str(root / "art"))
    model = build_model({"name": "dense", "input_shape": [SHAPE], "hidden": [4], "latent_dim": 2})
    x = np.random.default_rng(0).normal(3.0, 2.0, (32, SHAPE)).astype(np.float32)
    normalizer = Normalizer("standard", x.mean(0).tolist(), x.std(0).tolist())
    with torch.no_grad():
        scores = model.score(torch.from_numpy(normalizer.apply(x))).numpy()
    bundle = ModelBundle(model, normalizer, calibrate(scores, quantile=0.5), {}).save(root / run_id / "bundle")
    rows = pd.DataFrame({"x": list(x[:8].astype(np.float64))})
    version = tracking.log_model(uri, run_id, bundle, rows.head(2), MODEL)
    assert version is not None
    tracking.set_alias(uri, MODEL, CHAMPION, version)
    tracking.end_run(uri, run_id)
    return bundle, rows


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """(root, SQLite tracking URI, bundle dir, input rows, fresh venv, empty working dir)."""
    root = tmp_path_factory.mktemp("portable")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    bundle, rows = _register(root, uri)
    work = root / "work"
    work.mkdir()
    return root, uri, bundle, rows, fresh_venv(root), work


def test_champion_loads_and_predicts_in_a_fresh_venv_without_aepipe(registered):
    root, uri, bundle, rows, venv, work = registered
    (root / "rows.json").write_text(json.dumps([r.tolist() for r in rows["x"]]))
    args = [uri, f"models:/{MODEL}@{CHAMPION}", root / "rows.json", root / "out.json"]
    subprocess.run(
        [venv / "bin" / "python", "-c", LOAD_AND_PREDICT, *args],
        cwd=work,
        env=isolated_env(venv, uri),
        check=True,
        timeout=180,
    )
    got = json.loads((root / "out.json").read_text())
    assert got["leaks_before_load"] == []
    assert "/code/pipelines/bundle.py" in got["bundle_file"] and not Path(got["bundle_file"]).is_relative_to(
        Path(__file__).parents[2]
    )
    assert got["ray_imported"] is False
    want = predict_frame(ModelBundle.load(bundle), rows)
    np.testing.assert_array_equal(got["score"], want["score"].to_numpy())
    np.testing.assert_array_equal(got["is_anomaly"], want["is_anomaly"].to_numpy())
    np.testing.assert_array_equal(np.array(got["embedding"]), np.stack(want["embedding"]))
    assert 0 < sum(got["is_anomaly"]) < len(rows)  # the threshold really splits the rows


def _skip_without_loopback() -> None:
    """Skip when no loopback port can be bound (the model server needs one)."""
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", free_port()))
    except OSError as exc:
        pytest.skip(f"cannot bind a loopback port: {exc}")


def test_models_serve_from_the_fresh_venv_answers_invocations(registered):
    root, uri, bundle, rows, venv, work = registered
    _skip_without_loopback()
    env = {**isolated_env(venv, uri), "TMPDIR": str(work)}
    predictions = serve_and_predict(
        venv, f"models:/{MODEL}@{CHAMPION}", env, [r.tolist() for r in rows["x"]], root / "serve.log"
    )
    want = predict_frame(ModelBundle.load(bundle), rows)
    np.testing.assert_allclose([p["score"] for p in predictions], want["score"].to_numpy(), rtol=1e-12)
    assert [p["is_anomaly"] for p in predictions] == want["is_anomaly"].tolist()
