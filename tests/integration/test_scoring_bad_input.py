"""Bad input at scoring, through ``aepipe score``: ``fail`` validates as training does (one ``error:`` line naming
the file and row, exit status 2, nothing published); ``skip`` quarantines each bad file or row with its reason
and input row count, scores the rest, and the published rows plus the quarantined ones are the input rows.
One tiny model of 5-value vectors is trained once for the module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import load_config
from pipelines.data import corpora
from pipelines.score import publish
from pipelines.train.driver import run_training
from tests.integration.test_data_validation import _bad_rows, _good_shard, _write
from tests.support.cli import assert_clean_error, invoke

MODEL = "models:/bad-input-test/1"


@pytest.fixture(scope="module")
def trained(ray_local, tmp_path_factory):
    """AEPIPE_HOME with one registered model of 5-value vectors (``on_bad_records: fail``, the default)."""
    home = tmp_path_factory.mktemp("bad-input-home")
    data = home / "train"
    rng = np.random.default_rng(0)
    corpora.write_vector_shards(data, np.array([f"t{i}" for i in range(60)]), rng.random((60, 5)), None, shards=2)
    job = load_config(
        None,
        [
            f"home={home}",
            "name=bad-input",
            f"data.path={data}",
            "model.input_shape=[5]",
            "model.hidden=[4]",
            "model.latent_dim=2",
            "train.epochs=1",
            "train.num_workers=1",
            "train.batch_size=16",
            "train.plot_rows=16",
            "tracking.registered_model=bad-input-test",
        ],
        home=str(home),
    )
    run_training(job, log=lambda _m: None)
    return home


@pytest.fixture()
def env(trained, monkeypatch):
    monkeypatch.setenv("AEPIPE_HOME", str(trained))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    return trained


def _score(inp: Path, out: Path, *extra: str):
    quiet = ("--psi-limit", "100", "--ks-alpha", "1e-300")  # tiny corpora: no drift alarm
    return invoke("score", "--model", MODEL, "--input", str(inp), "--output", str(out), *quiet, *extra)


#: name -> (writes part-bad.parquet next to a good shard, what the error line says)
FAIL_CASES = {
    "NaN value": (
        lambda p: _bad_rows(p, ["b0", "b1", "b2"], [[0.0] * 5, [0.0] * 5, [1, 2, np.nan, 4, 5]]),
        "part-bad.parquet: row 2 (id 'part-bad.b2'): null, NaN or infinite value",
    ),
    "infinite value": (
        lambda p: _bad_rows(p, ["b0", "b1"], [[0.0] * 5, [1, np.inf, 3, 4, 5]]),
        "part-bad.parquet: row 1 (id 'part-bad.b1'): null, NaN or infinite value",
    ),
    "shard of wrong-length vectors": (
        lambda p: _bad_rows(p, ["b0", "b1", "b2"], [[1.0] * 4] * 3),
        "part-bad.parquet: row 0 (id 'part-bad.b0'): vector has length 4, expected 5",
    ),
    "one ragged row": (
        lambda p: _bad_rows(p, ["b0", "b1", "b2", "b3"], [[0.0] * 5] * 3 + [[1.0] * 6]),
        "part-bad.parquet: row 3 (id 'part-bad.b3'): vector has length 6, expected 5",
    ),
    "null id": (lambda p: _bad_rows(p, [None, "b1"], [[0.0] * 5, [1.0] * 5]), "part-bad.parquet: row 0: missing id"),
    "shard without the id column": (
        lambda p: pq.write_table(pa.table({"x": pa.array([[0.0] * 5], pa.list_(pa.float64()))}), p),
        "part-bad.parquet: column 'id' is missing (columns: x)",
    ),
    "ids repeated across shards": (
        lambda p: _write(p, ["b0", "a3"], [[0.0] * 5, [1.0] * 5]),
        "part-bad.parquet: row 1 (id 'a3'): duplicate id",
    ),
    "string-typed vector column": (
        lambda p: pq.write_table(pa.table({"id": ["b0"], "x": ["0,0,0,0,0"]}), p),
        "part-bad.parquet: column 'x' has type string, expected a list of numbers",
    ),
}


@pytest.mark.parametrize("case", list(FAIL_CASES))
def test_fail_mode_validates_like_training(env, tmp_path, case):
    write, expected = FAIL_CASES[case]
    _good_shard(tmp_path / "in")
    write(tmp_path / "in" / "part-bad.parquet")
    result = _score(tmp_path / "in", tmp_path / "out")
    assert_clean_error(result, expected)
    assert result.output.count("error:") == 1
    assert not publish.published_partitions(str(tmp_path / "out"))  # nothing published
    assert not list(tmp_path.glob("out/**/*.parquet"))  # nor scored
    assert not (tmp_path / "out" / publish.LEASE).exists()  # the lease is let go


def _corrupt_middle(path: Path) -> int:
    """10,000 rows in two row groups, the second one's first page header overwritten: the footer still counts
    every row, reading breaks off part way. Returns the row count."""
    n = 10_000
    x = np.random.default_rng(1).random((n, 5))
    table = pa.table({"id": [f"m{i}" for i in range(n)], "x": pa.array(list(x), pa.list_(pa.float64()))})
    pq.write_table(table, path, row_group_size=n // 2, compression="none")
    offset = pq.ParquetFile(path).metadata.row_group(1).column(1).data_page_offset
    data = bytearray(path.read_bytes())
    data[offset : offset + 16] = b"\xff" * 16
    path.write_bytes(bytes(data))
    return n


def test_skip_mode_quarantines_file_by_file_and_the_counts_add_up(env, tmp_path):
    inp = tmp_path / "in"
    _good_shard(inp)  # part-00000: a0..a5
    _bad_rows(inp / "part-nan.parquet", ["b0", "b1", "b2"], [[0.0] * 5, [0.0] * 5, [1, 2, np.nan, 4, 5]])
    _bad_rows(inp / "part-short.parquet", ["b0", "b1", "b2"], [[1.0] * 4] * 3)  # no good row at all
    pq.write_table(pa.table({"id": ["c0", "c1", "c2"], "vec": [[0.0] * 5] * 3}), inp / "part-nocol.parquet")
    pq.write_table(pa.table({"id": ["s0", "s1"], "x": ["0", "1"]}), inp / "part-str.parquet")
    _write(inp / "part-dup.parquet", ["d0", "a3"], [[0.0] * 5, [1.0] * 5])
    big = _corrupt_middle(inp / "part-torn.parquet")
    inputs = {p.name: pq.ParquetFile(p).metadata.num_rows for p in inp.glob("*.parquet")}
    assert sum(inputs.values()) == 6 + 3 + 3 + 3 + 2 + 2 + big

    result = _score(inp, tmp_path / "out", "--on-bad-records", "skip")
    assert result.exit_code == 0, result.output
    manifest = publish.read_manifest(str(tmp_path / "out"))
    q = pd.read_parquet(tmp_path / "out" / "_quarantine")
    assert manifest["rows"] + int(q["rows"].sum()) == sum(inputs.values())
    for shard in manifest["shards"]:  # per shard too: scored + quarantined = the input shard's rows
        assert shard["output_rows"] + shard["skipped"] == inputs[shard["name"]], shard

    by_file = {
        name: (sorted(reason.split(" (")[0] for reason in g["reason"]), int(g["rows"].sum()))
        for name, g in q.assign(name=[Path(f).name for f in q["file"]]).groupby("name")
    }
    torn_rows = by_file.pop("part-torn.parquet")
    assert torn_rows[0] == ["unreadable from row 4096 on"] and torn_rows[1] == big - 4096
    assert by_file == {
        "part-00000.parquet": (["duplicate id"], 1),
        "part-dup.parquet": (["duplicate id"], 1),
        "part-nan.parquet": (["null, NaN or infinite value"], 1),
        "part-short.parquet": (["vector has length 4, expected 5"] * 3, 3),
        "part-nocol.parquet": (["column 'x' is missing"], 3),
        "part-str.parquet": (["column 'x' has type string, expected a list of numbers"], 2),
    }
    scores = publish.read_scores(str(tmp_path / "out"))
    assert len(scores) == manifest["rows"] == 5 + 2 + 1 + 4096 and scores["id"].is_unique
