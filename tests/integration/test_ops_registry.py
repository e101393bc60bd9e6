"""The registry CLI against a real ``mlflow server`` on loopback: list, show, compare, promote (gate, margin,
--force), runs list; and a basic-auth server where a wrong password is one clear error and never echoed."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from aecore import build_model
from jobs.cli import app
from pipelines import tracking
from pipelines.bundle import ModelBundle, Normalizer, calibrate
from tests.support.services import BIN, free_port, start, stop, wait_http

runner = CliRunner()
MODEL, EXPERIMENT = "ops-registry", "ops"
VAL_LOSS = {"1": 0.5, "2": 0.6, "3": 0.4}


def mlflow_server(root: Path, extra: list[str] = (), env: dict[str, str] | None = None):
    """Start ``mlflow server`` (SQLite backend, proxied artifacts under ``root``) on a free loopback port."""
    port = free_port()
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "art"),
        *extra,
    ]
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    proc = start(cmd, {**base, **(env or {})}, root / "server.log")
    wait_http(f"http://127.0.0.1:{port}/health", proc, root / "server.log")
    return proc, f"http://127.0.0.1:{port}"


def register(uri: str, tmp: Path, val_loss: float) -> str:
    """One finished run with metrics and a tiny real model bundle, registered as a new version of MODEL."""
    run_id = tracking.start_run(uri, EXPERIMENT, f"val-{val_loss}", {"model": {"name": "dense"}}, tags={})
    tracking.log_metrics(uri, run_id, {"val_loss": val_loss, "train_loss": val_loss + 0.05}, step=1)
    model = build_model({"name": "dense", "input_shape": [6], "hidden": [4], "latent_dim": 2})
    x = np.random.default_rng(0).random((16, 6), dtype=np.float32)
    with torch.no_grad():
        scores = model.score(torch.from_numpy(x)).numpy()
    bundle = ModelBundle(model, Normalizer("none"), calibrate(scores), {}).save(tmp / run_id / "bundle")
    version = tracking.log_model(uri, run_id, bundle, pd.DataFrame({"x": list(x[:2].astype(np.float64))}), MODEL)
    tracking.end_run(uri, run_id)
    return version


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory):
    """A real MLflow server holding three versions of MODEL (val_loss 0.5, 0.6, 0.4) and their runs."""
    root = tmp_path_factory.mktemp("mlflow-server")
    proc, uri = mlflow_server(root)
    try:
        runs = {}
        for v, loss in VAL_LOSS.items():
            assert register(uri, root, loss) == v
            runs[v] = tracking.resolve_model(uri, f"models:/{MODEL}/{v}").run_id
        yield uri, runs
    finally:
        stop(proc)


@pytest.fixture(scope="module", autouse=True)
def _restore_mlflow_env():
    """mlflow.set_tracking_uri / set_registry_uri (called by log_model) also set these variables; undo that."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def cli(*args: str, env: dict[str, str | None] | None = None):
    """``aepipe ARGS`` in-process; the registry is the tracking server unless ``env`` says otherwise."""
    return runner.invoke(app, list(args), env={"MLFLOW_REGISTRY_URI": None, **(env or {})}, catch_exceptions=False)


def table(output: str) -> dict[str, list[str]]:
    """Rows of a printed rich table, keyed by their first cell."""
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in output.splitlines() if line.startswith("│")]
    return {r[0]: r[1:] for r in rows}


def test_list_show_compare_runs(registry_server):
    uri, runs = registry_server
    listing = cli("models", "list", "--tracking-uri", uri)
    assert listing.exit_code == 0, listing.output
    assert table(listing.output)[MODEL][0] == "1, 2, 3"

    show = cli("models", "show", MODEL, env={"MLFLOW_TRACKING_URI": uri})
    assert show.exit_code == 0, show.output
    rows = table(show.output)  # version -> aliases, status, val_loss, train_loss, source run, created
    assert sorted(rows) == ["1", "2", "3"]
    for v, (_, status, val, train, run_id, _) in rows.items():
        assert (status, float(val), float(train), run_id) == (
            "READY",
            VAL_LOSS[v],
            pytest.approx(VAL_LOSS[v] + 0.05),
            runs[v],
        )

    compare = cli("models", "compare", MODEL, "1", "2", "--tracking-uri", uri)
    assert compare.exit_code == 0, compare.output
    assert [float(v) for v in table(compare.output)["val_loss"]] == pytest.approx([0.5, 0.6, 0.1])
    assert [float(v) for v in table(compare.output)["train_loss"]] == pytest.approx([0.55, 0.65, 0.1])

    listing = cli("runs", "list", "--experiment", EXPERIMENT, "--tracking-uri", uri)
    assert listing.exit_code == 0, listing.output
    listed = table(listing.output)  # run id -> name, status, started, val_loss, train_loss
    assert {r: (row[0], row[1], float(row[3])) for r, row in listed.items()} == {
        runs[v]: (f"val-{loss}", "FINISHED", loss) for v, loss in VAL_LOSS.items()
    }

    missing = cli("models", "show", "no-such-model", "--tracking-uri", uri)
    assert missing.exit_code == 2 and "no registered model named 'no-such-model'" in missing.output


def test_promote_with_and_without_the_gate(registry_server):
    uri, _ = registry_server
    champion = lambda: tracking.aliases(uri, MODEL).get("champion")

    first = cli("models", "promote", MODEL, "1", "--tracking-uri", uri)
    assert first.exit_code == 0 and "no champion yet" in first.output and champion() == "1"

    # an explicit promotion has no rows of its own: it needs the held-out comparison the version's training
    # run recorded against the current champion (v2 was registered without one)
    unmeasured = cli("models", "promote", MODEL, "2", "--tracking-uri", uri)
    assert unmeasured.exit_code == 1, unmeasured.output
    assert "v2 was compared on held-out rows with no champion, not with the current champion v1" in unmeasured.output
    assert champion() == "1"

    forced = cli("models", "promote", MODEL, "2", "--force", "--tracking-uri", uri)
    assert forced.exit_code == 0 and champion() == "2"

    # as its training run's gate records it, v3 (0.4) beat v2 (0.6) on v3's held-out rows, but not by the 50%
    # margin: 0.4 > 0.6 x 0.5 = 0.3
    figures = {"gate_champion": "2", "gate_challenger_score": 0.4, "gate_champion_score": 0.6}
    tracking.tag_version(uri, MODEL, "3", figures)
    margin = cli("models", "promote", MODEL, "3", "--margin", "0.5", "--tracking-uri", uri)
    assert margin.exit_code == 1 and "= 0.3" in margin.output and champion() == "2"
    better = cli("models", "promote", MODEL, "3", "--tracking-uri", uri)
    assert better.exit_code == 0 and champion() == "3"

    other = cli("models", "promote", MODEL, "1", "--alias", "shadow", "--tracking-uri", uri)
    assert other.exit_code == 0 and tracking.aliases(uri, MODEL) == {"champion": "3", "shadow": "1"}

    unknown = cli("models", "promote", MODEL, "9", "--tracking-uri", uri)
    assert unknown.exit_code == 2 and "has no version 9 (versions: 1, 2, 3)" in unknown.output


def test_basic_auth_wrong_password_is_refused_and_never_echoed(tmp_path):
    admin_password = secrets.token_urlsafe(18)
    wrong = secrets.token_urlsafe(18)
    ini = tmp_path / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{tmp_path / 'basic_auth.db'}\nadmin_username = admin\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    proc, uri = mlflow_server(
        tmp_path,
        ["--app-name", "basic-auth"],
        env={
            "MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        },
    )
    creds = tmp_path / "credentials"
    creds.write_text(f"[mlflow]\nmlflow_tracking_username = admin\nmlflow_tracking_password = {admin_password}\n")
    clean = {
        "MLFLOW_TRACKING_USERNAME": None,
        "MLFLOW_TRACKING_PASSWORD": None,
        "AEPIPE_CREDENTIALS_FILE": None,
        "MLFLOW_TRACKING_URI": uri,
    }
    try:
        anonymous = cli("runs", "list", env=clean)
        assert anonymous.exit_code == 2
        assert f"error: MLflow rejected the credentials for {uri} (HTTP 401)" in anonymous.output

        bad = cli(
            "models", "list", env={**clean, "MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": wrong}
        )
        assert bad.exit_code == 2, bad.output
        assert f"error: MLflow rejected the credentials for {uri} (HTTP 401)" in bad.output
        assert wrong not in bad.output and admin_password not in bad.output

        embedded = cli("models", "list", "--tracking-uri", uri.replace("//", f"//admin:{wrong}@"), env=clean)
        assert embedded.exit_code == 2 and "embeds credentials" in embedded.output and wrong not in embedded.output

        # the right password, from a credentials file: an empty registry, then a run made with it
        good = cli("models", "list", env={**clean, "AEPIPE_CREDENTIALS_FILE": str(creds)})
        assert good.exit_code == 0 and "no registered models" in good.output, good.output
        os.environ.update(MLFLOW_TRACKING_USERNAME="admin", MLFLOW_TRACKING_PASSWORD=admin_password)
        try:
            run_id = tracking.start_run(uri, "ops-auth", "authed", {"train": {"epochs": 1}}, tags={})
            tracking.log_metrics(uri, run_id, {"val_loss": 0.25}, step=1)
            run = tracking.client(uri).get_run(run_id)
        finally:
            os.environ.pop("MLFLOW_TRACKING_USERNAME"), os.environ.pop("MLFLOW_TRACKING_PASSWORD")
        assert run.data.params["train.epochs"] == "1"
        assert not [k for k, v in {**run.data.params, **run.data.tags}.items() if admin_password in v]
        runs = cli("runs", "list", "--experiment", "ops-auth", env={**clean, "AEPIPE_CREDENTIALS_FILE": str(creds)})
        assert runs.exit_code == 0 and table(runs.output)[run_id][:2] == ["authed", "RUNNING"], runs.output
        assert float(table(runs.output)[run_id][3]) == 0.25 and admin_password not in runs.output
    finally:
        stop(proc)
