"""The synthetic corpus builders: reproducible by seed, with known planted anomalies."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.data import corpora


def _table(path: Path) -> pa.Table:
    return pq.read_table(path)


@pytest.mark.parametrize("kind, shape", [("vectors", {"dim": 6}), ("series", {"length": 50})])
def test_synthetic_corpora_are_reproducible_with_known_anomalies(tmp_path, kind, shape):
    planted = corpora.write_synthetic(tmp_path / "a", kind, rows=500, shards=3, anomaly_fraction=0.1, seed=7, **shape)
    corpora.write_synthetic(tmp_path / "b", kind, rows=500, shards=3, anomaly_fraction=0.1, seed=7, **shape)
    corpora.write_synthetic(tmp_path / "c", kind, rows=500, shards=3, anomaly_fraction=0.1, seed=8, **shape)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == [f"part-{i:05d}.parquet" for i in range(3)]
    for f in files:
        assert _table(tmp_path / "a" / f).equals(_table(tmp_path / "b" / f))
    assert not _table(tmp_path / "a" / files[0]).equals(_table(tmp_path / "c" / files[0]))
    df = pd.read_parquet(tmp_path / "a")
    assert len(df) == 500 and int(df["is_anomaly"].sum()) == planted
    assert abs(planted / 500 - 0.1) <= 0.02
    if kind == "series":  # each series spans every shard
        assert all(pd.read_parquet(tmp_path / "a" / f)["series_id"].nunique() == 10 for f in files)


def test_synthetic_images_use_label_folders(tmp_path):
    planted = corpora.write_synthetic(tmp_path, "images", rows=40, shards=2, anomaly_fraction=0.25, seed=1, size=8)
    assert planted == 10
    assert len(list(tmp_path.glob("*/anomaly/*.png"))) == 10 and len(list(tmp_path.glob("*/normal/*.png"))) == 30
    with pytest.raises(ValueError, match="unknown synthetic kind 'audio'"):
        corpora.write_synthetic(tmp_path, "audio", rows=1, shards=1)
