"""Staging, verification, publication and reading of score partitions (pipelines/publish.py), no Ray."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from pipelines.data.files import list_files, relative_names
from pipelines.score import publish

SCHEMA = pa.schema([("id", pa.string()), ("score", pa.float32())])


def _inputs(tmp_path, sizes):
    src = tmp_path / "in"
    src.mkdir()
    start = 0
    for i, n in enumerate(sizes):
        ids = [f"r{j}" for j in range(start, start + n)]
        pq.write_table(pa.table({"id": ids, "x": [[0.0]] * n}), src / f"part-{i:05d}.parquet")
        start += n
    return publish.list_shards(str(src))


def _stage(staging, shard, ids, identity):
    w = publish.ShardWriter(staging, shard, SCHEMA)
    w.write(pa.table({"id": ids, "score": np.arange(len(ids), dtype=np.float32)}, schema=SCHEMA))
    return w.commit(identity)


def test_shards_have_fingerprints_from_footer_and_stat(tmp_path):
    shards = _inputs(tmp_path, [3, 2])
    assert [(s.name, s.rows) for s in shards] == [("part-00000.parquet", 3), ("part-00001.parquet", 2)]
    st = os.stat(shards[0].path)
    assert (shards[0].size, shards[0].mtime_ns) == (st.st_size, st.st_mtime_ns)
    before = publish.input_fingerprint(shards)
    pq.write_table(pa.table({"id": ["r0"], "x": [[1.0]]}), shards[1].path)  # a shard rewritten
    assert publish.input_fingerprint(publish.list_shards(str(tmp_path / "in"))) != before


def test_stage_verify_publish_and_read(tmp_path):
    shards = _inputs(tmp_path, [3, 2])
    staging, final = tmp_path / ".out.staging", tmp_path / "out"
    identity = {"model_name": "m", "model_version": "1", "mode": "score"}
    markers = [
        _stage(staging, shards[0], ["r0", "r1", "r2"], identity),
        _stage(staging, shards[1], ["r3", "r4"], identity),
    ]
    assert publish.read_marker(staging, shards[0], identity)["output_rows"] == 3
    assert publish.read_marker(staging, shards[0], {**identity, "model_version": "2"}) is None

    (staging / "part-00009.parquet").write_bytes(b"left by an earlier plan")
    publish.prune(staging, {m["output"] for m in markers})
    assert sorted(p.name for p in staging.glob("*.parquet")) == ["part-00000.parquet", "part-00001.parquet"]
    assert publish.verify(staging, markers, SCHEMA) == 5

    with pytest.raises(publish.UnpublishedError, match="no such scores partition"):
        publish.read_scores(final)
    publish.write_manifest(staging, {"shards": markers, "rows": 5, "schema": SCHEMA.names})
    publish.publish(staging, final)
    assert not staging.exists()
    df = publish.read_scores(final)
    assert df["id"].tolist() == ["r0", "r1", "r2", "r3", "r4"]
    assert len(pd.read_parquet(final)) == 5  # plain readers skip _SUCCESS and _markers/


def test_verify_rejects_wrong_counts_duplicates_and_schema(tmp_path):
    shards = _inputs(tmp_path, [3, 2])
    identity = {"model_name": "m", "model_version": "1", "mode": "score"}
    staging = tmp_path / "s1"
    short = [_stage(staging, shards[0], ["r0", "r1"], identity)]
    with pytest.raises(RuntimeError, match=r"staged 2 rows but input shard part-00000\.parquet has 3 good rows"):
        publish.verify(staging, short, SCHEMA)
    assert publish.verify(staging, [{**short[0], "skipped": 1}], SCHEMA) == 2  # one bad record quarantined

    staging = tmp_path / "s2"
    dup = [_stage(staging, shards[0], ["r0", "r1", "r2"], identity), _stage(staging, shards[1], ["r2", "r9"], identity)]
    with pytest.raises(RuntimeError, match="1 duplicate ids"):
        publish.verify(staging, dup, SCHEMA)
    with pytest.raises(RuntimeError, match="differs from the expected"):
        publish.verify(staging, dup[:1], pa.schema([("id", pa.string()), ("score", pa.float64())]))


def test_partition_without_success_is_refused(tmp_path):
    part = tmp_path / "half-written"
    part.mkdir()
    pq.write_table(pa.table({"id": ["a"], "score": [1.0]}), part / "part-00000.parquet")
    with pytest.raises(publish.UnpublishedError, match="no _SUCCESS manifest"):
        publish.read_scores(part)
    shown = CliRunner().invoke(app, ["scores", "show", str(part)])
    assert shown.exit_code == 2 and "no _SUCCESS manifest" in shown.output
    # a manifest that lists a file that is gone is refused too
    publish.write_manifest(part, {"shards": [{"output": "part-00001.parquet"}], "rows": 1, "schema": ["id"]})
    with pytest.raises(publish.UnpublishedError, match="missing"):
        publish.read_scores(part)


def test_date_partitioned_shards_keep_the_names_training_derives_ids_from(tmp_path):
    """Scoring opens each shard alone but derives ``FILE:ROW`` ids from its name relative to the corpus root,
    the name training gives the same file: two partitions' ``part-00000.parquet`` stay apart."""
    root = tmp_path / "in"
    for dt in ("dt=2024-06-01", "dt=2024-06-02"):
        (root / dt).mkdir(parents=True)
        pq.write_table(pa.table({"x": [[0.0]] * 3}), root / dt / "part-00000.parquet")
    shards = publish.list_shards(str(root))
    training = relative_names(list_files(str(root), (".parquet",)), str(root))
    scoring = [n for s in shards for n in relative_names(list_files(s.path, (".parquet",)), str(root))]
    assert scoring == training == [s.name for s in shards]
    assert training == ["dt=2024-06-01/part-00000.parquet", "dt=2024-06-02/part-00000.parquet"]
