"""Writing, verification, commit and reading of score partitions (pipelines/score/publish.py), no Ray."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from jobs.cli import app
from pipelines import storage
from pipelines.data.files import list_files, relative_names
from pipelines.score import publish
from pipelines.score.output import SHARD, OutputSpec, output_schema

SCHEMA_FULL = output_schema("score", pa.string(), 0)


def _inputs(tmp_path, sizes):
    src = tmp_path / "in"
    src.mkdir()
    start = 0
    for i, n in enumerate(sizes):
        ids = [f"r{j}" for j in range(start, start + n)]
        pq.write_table(pa.table({"id": ids, "x": [[0.0]] * n}), src / f"part-{i:05d}.parquet")
        start += n
    return publish.list_shards(str(src))


IDENTITY = {"model_name": "m", "model_version": "1", "mode": "score"}


def _spec(partition, shards, attempt):
    return OutputSpec(str(partition), attempt, SCHEMA_FULL, "m", "1", tuple(s.name for s in shards), (0.5, 1.5))


def _score(spec, shard_index, ids, scores=None):
    """What a scoring actor does with a scored block of one shard: write its file, return the summaries."""
    n = len(ids)
    out = {
        "id": np.asarray(ids, object),
        SHARD: np.full(n, shard_index, np.int32),
        "score": np.asarray(scores if scores is not None else np.arange(n), np.float32),
        "is_anomaly": np.arange(n) >= 2,
    }
    return spec.write(out)


def _marker(shard, summaries, skipped=0):
    files = [{"path": str(f), "rows": int(r)} for f, r in zip(summaries["file"], summaries["rows"], strict=True)]
    rows = sum(f["rows"] for f in files)
    return {**shard.fingerprint, **IDENTITY, "files": files, "output_rows": rows, "skipped": skipped}


def test_shards_have_fingerprints_from_footer_and_stat(tmp_path):
    shards = _inputs(tmp_path, [3, 2])
    assert [(s.name, s.rows) for s in shards] == [("part-00000.parquet", 3), ("part-00001.parquet", 2)]
    st = os.stat(shards[0].path)
    assert (shards[0].size, shards[0].mtime_ns) == (st.st_size, st.st_mtime_ns)
    before = publish.input_fingerprint(shards)
    pq.write_table(pa.table({"id": ["r0"], "x": [[1.0]]}), shards[1].path)  # a shard rewritten
    assert publish.input_fingerprint(publish.list_shards(str(tmp_path / "in"))) != before


def test_actors_write_files_then_one_manifest_commits_exactly_them(tmp_path):
    shards = _inputs(tmp_path, [3, 2])
    part = str(tmp_path / "out")
    spec = _spec(part, shards, publish.new_attempt())
    publish.take_lease(part, spec.attempt)
    first = _score(spec, 0, ["r0", "r1"]), _score(spec, 0, ["r2"])  # one shard over two blocks: two files
    markers = [
        _marker(shards[0], {k: np.concatenate([first[0][k], first[1][k]]) for k in first[0]}),
        _marker(shards[1], _score(spec, 1, ["r3", "r4"])),
    ]
    assert [len(m["files"]) for m in markers] == [2, 1]
    assert all(f["path"].startswith("part-0000") and spec.attempt in f["path"] for m in markers for f in m["files"])
    for m in markers:
        publish.write_marker(part, IDENTITY, m)
    assert publish.read_marker(part, shards[0], IDENTITY)["output_rows"] == 3
    assert publish.read_marker(part, shards[0], {**IDENTITY, "model_version": "2"}) is None
    orphan = _score(spec, 1, ["r3"])["file"][0]  # a killed attempt's file: never listed
    other = _spec(part, shards, "00000000beef")
    older = _score(other, 0, ["r0"])["file"][0]  # an older generation's file

    with pytest.raises(publish.UnpublishedError, match="no _SUCCESS manifest"):
        publish.read_scores(part)
    assert publish.verify(part, markers, SCHEMA_FULL) == 5
    publish.commit(part, spec.attempt, {"shards": markers, "rows": 5, "schema": SCHEMA_FULL.names})
    swept = publish.sweep(part, spec.attempt, IDENTITY, {f["path"] for m in markers for f in m["files"]})
    assert sorted(swept) == sorted([orphan, older])
    publish.release_lease(part, spec.attempt)
    df = publish.read_scores(part)
    assert df["id"].tolist() == ["r0", "r1", "r2", "r3", "r4"] and df["model_version"].unique().tolist() == ["1"]
    assert len(pd.read_parquet(part)) == 5  # plain readers skip _SUCCESS, _markers/ and _LEASE: no orphans left
    assert not os.path.exists(os.path.join(part, publish.MARKERS, publish.identity_key(IDENTITY)))
    assert publish.published_partitions(str(tmp_path)) == [part]


def test_a_marker_whose_files_are_gone_is_scored_again(tmp_path):
    shards = _inputs(tmp_path, [3])
    part = str(tmp_path / "out")
    spec = _spec(part, shards, publish.new_attempt())
    marker = _marker(shards[0], _score(spec, 0, ["r0", "r1", "r2"]))
    publish.write_marker(part, IDENTITY, marker)
    assert publish.read_marker(part, shards[0], IDENTITY) is not None
    os.remove(os.path.join(part, marker["files"][0]["path"]))
    assert publish.read_marker(part, shards[0], IDENTITY) is None


def test_verify_rejects_wrong_counts_and_schema(tmp_path):
    shards = _inputs(tmp_path, [3, 2])
    part = str(tmp_path / "out")
    spec = _spec(part, shards, publish.new_attempt())
    short = [_marker(shards[0], _score(spec, 0, ["r0", "r1"]))]
    with pytest.raises(publish.UnpublishedError, match=r"part-00000\.parquet has 2 rows in its files.* 3 good rows"):
        publish.verify(part, short, SCHEMA_FULL)
    assert publish.verify(part, [{**short[0], "skipped": 1}], SCHEMA_FULL) == 2  # one bad record quarantined
    claimed = [{**short[0], "skipped": 1, "output_rows": 3}]
    with pytest.raises(publish.UnpublishedError, match="the scorers reported 3"):
        publish.verify(part, claimed, SCHEMA_FULL)
    with pytest.raises(publish.UnpublishedError, match="differs from the expected"):
        publish.verify(part, [{**short[0], "skipped": 1}], pa.schema([("id", pa.string())]))


def test_the_run_that_lost_the_lease_publishes_nothing(tmp_path):
    """Two runs aimed at one partition: the later one takes the lease; the earlier stops at its commit, and the
    winner's sweep leaves the partition holding only what its manifest lists."""
    shards = _inputs(tmp_path, [2])
    part = str(tmp_path / "out")
    early, late = _spec(part, shards, "aaaaaaaaaaaa"), _spec(part, shards, "bbbbbbbbbbbb")
    assert publish.take_lease(part, early.attempt) is None
    assert publish.take_lease(part, late.attempt)["attempt"] == early.attempt
    lost = [_marker(shards[0], _score(early, 0, ["r0", "r1"], scores=[9.0, 9.0]))]
    won = [_marker(shards[0], _score(late, 0, ["r0", "r1"]))]
    with pytest.raises(publish.PartitionTakenError, match=r"another scoring run took over.*bbbbbbbbbbbb"):
        publish.commit(part, early.attempt, {"shards": lost, "rows": 2, "schema": SCHEMA_FULL.names})
    with pytest.raises(publish.UnpublishedError):
        publish.read_scores(part)  # nothing was published by the loser
    publish.release_lease(part, early.attempt)  # not its lease any more: a no-op
    assert publish.lease_holder(part)["attempt"] == late.attempt
    publish.commit(part, late.attempt, {"shards": won, "rows": 2, "schema": SCHEMA_FULL.names})
    publish.sweep(part, late.attempt, IDENTITY, {f["path"] for m in won for f in m["files"]})
    assert publish.read_scores(part)["score"].tolist() == [0.0, 1.0]
    assert sorted(os.listdir(part)) == sorted([publish.LEASE, publish.MANIFEST, won[0]["files"][0]["path"]])


def test_partition_without_success_is_refused(tmp_path):
    part = tmp_path / "half-written"
    part.mkdir()
    pq.write_table(pa.table({"id": ["a"], "score": [1.0]}), part / "part-00000.parquet")
    with pytest.raises(publish.UnpublishedError, match="no _SUCCESS manifest"):
        publish.read_scores(str(part))
    shown = CliRunner().invoke(app, ["scores", "show", str(part)])
    assert shown.exit_code == 2 and "no _SUCCESS manifest" in shown.output
    # a manifest that lists a file that is gone is refused too
    storage.write_json(
        str(part / publish.MANIFEST),
        {"format": publish.FORMAT, "shards": [{"files": [{"path": "part-00001.parquet", "rows": 1}]}], "rows": 1},
    )
    with pytest.raises(publish.UnpublishedError, match="missing"):
        publish.read_scores(str(part))


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
