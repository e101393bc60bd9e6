"""``aepipe scores history`` and ``scores show --json`` on two small published partitions (no Ray)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from pipelines import storage
from pipelines.score import publish
from pipelines.score.history import HISTORY_KEYS

runner = CliRunner()


def publish_partition(path: str, shard_rows: list[int], anomalies: list[int], psi: float | None) -> None:
    """A partition as a scoring run publishes it: one data file per shard and the ``_SUCCESS`` manifest."""
    storage.make_dirs(path)
    shards, start = [], 0
    for i, (n, flagged) in enumerate(zip(shard_rows, anomalies, strict=True)):
        name = f"part-{i:05d}-00000000aaaa.parquet"
        ids = [f"r{j}" for j in range(start, start + n)]
        flags = [j < flagged for j in range(n)]
        pq.write_table(
            pa.table({"id": ids, "score": [float(j) for j in range(n)], "is_anomaly": flags}), f"{path}/{name}"
        )
        shards.append({"files": [{"path": name, "rows": n}], "output_rows": n, "anomalies": flagged})
        start += n
    drift = None if psi is None else {"drift_psi": psi, "drift_ks": 0.1, "drift_alarm": float(psi > 0.2), "reason": ""}
    manifest = {
        "format": publish.FORMAT,
        "model": {"name": "m", "version": "2", "mode": "score", "requested": "models:/m@champion", "run_id": "r"},
        "shards": shards,
        "rows": sum(shard_rows),
        "schema": ["id", "score", "is_anomaly"],
        "plan": {"scored": len(shard_rows), "skipped": 0},
        "drift": drift,
        "scoring_run_id": "run-1",
        "published_at": "2026-06-02T01:02:03+00:00",
    }
    storage.write_json(storage.join(path, publish.MANIFEST), manifest)


@pytest.fixture
def output(tmp_path):
    """OUTPUT with two published partitions (10 rows, 1 anomaly, PSI 0.05; 4 rows, 2 anomalies, PSI 0.5) and one
    half-written folder that history leaves out."""
    root = str(tmp_path / "scores")
    publish_partition(f"{root}/dt=2026-06-01", [6, 4], [1, 0], 0.05)
    publish_partition(f"{root}/dt=2026-06-02", [4], [2], 0.5)
    storage.make_dirs(f"{root}/dt=2026-06-03")
    pq.write_table(pa.table({"id": ["x"]}), f"{root}/dt=2026-06-03/part-00000.parquet")
    return root


def test_history_json_lists_every_published_partition(output):
    result = runner.invoke(app, ["scores", "history", output, "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["partition"] for r in rows] == ["dt=2026-06-01", "dt=2026-06-02"]
    assert all(sorted(r) == sorted(HISTORY_KEYS) for r in rows)
    first, second = rows
    assert (first["rows"], first["anomalies"], first["anomaly_rate"], first["psi"], first["drifted"]) == (
        10,
        1,
        pytest.approx(0.1),
        0.05,
        False,
    )
    assert (second["anomaly_rate"], second["drifted"], second["model"]) == (pytest.approx(0.5), True, "m/2")


def test_history_table_and_plot(output, tmp_path):
    plot = str(tmp_path / "history.png")
    result = runner.invoke(app, ["scores", "history", output, "--plot", plot])
    assert result.exit_code == 0, result.output
    assert "dt=2026-06-01" in result.stdout and "10.00%" in result.stdout and "ALARM" in result.stdout
    assert "dt=2026-06-03" not in result.stdout
    with open(plot, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_history_of_nothing_published_is_one_error(tmp_path):
    result = runner.invoke(app, ["scores", "history", str(tmp_path)])
    assert result.exit_code == 2 and "no published partition" in result.output
    result = runner.invoke(app, ["scores", "history", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such scores output" in result.output


def test_show_json_is_one_document(output):
    result = runner.invoke(app, ["scores", "show", f"{output}/dt=2026-06-01", "--json", "--rows", "3"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert sorted(doc) == sorted(["model", "rows", "plan", "drift", "published_at", "scoring_run_id", "shards", "head"])
    assert (doc["rows"], doc["shards"], len(doc["head"])) == (10, 2, 3)
    assert doc["head"][0] == {"id": "r0", "score": 0.0, "is_anomaly": True}
