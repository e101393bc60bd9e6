"""make bench-large's corpus and figures (the run itself is outside the suite: an hour on a small machine)."""

from __future__ import annotations

import math

import pyarrow.parquet as pq

from bench import large


def test_corpus_fills_the_size_with_distinct_rows_and_is_written_once(tmp_path, monkeypatch):
    monkeypatch.setattr(large, "SHARD_BYTES", 64 * 1024)  # 1,024 rows of 16 float32 per file
    rows, files = large.write_corpus(tmp_path, gb=4 * 64 * 1024 / 2**30, dim=16)
    assert (rows, files) == (4 * 1024, 4)
    tables = [pq.read_table(p) for p in sorted(tmp_path.glob("*.parquet"))]
    ids = [i for t in tables for i in t.column("id").to_pylist()]
    assert len(ids) == len(set(ids)) == rows
    first, second = (t.column("x").combine_chunks().flatten().to_numpy().reshape(-1, 16) for t in tables[:2])
    assert first.dtype.name == "float32" and not (first == second).all()  # files differ in order and offset
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.parquet")}
    assert large.write_corpus(tmp_path, gb=4 * 64 * 1024 / 2**30, dim=16) == (rows, files)
    assert stamps == {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.parquet")}  # kept, not rewritten


def test_second_half_over_first_half_peaks():
    flat = [(t, 10.0, 100.0) for t in range(10)]
    growing = [(t, float(t + 1), 100.0) for t in range(10)]
    assert large._halves(flat, 1) == 1.0 and large._halves(flat, 2) == 1.0
    assert large._halves(growing, 1) == 10.0 / 5.0
    assert math.isnan(large._halves([], 1))
