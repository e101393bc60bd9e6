"""Every data source against real files: Parquet (list column, tabular, derived ids, file:// URIs), image
folders (PNG/JPEG, grayscale/RGB, resized, folder labels), time series (windows across files), channel
normalization, and the corpus builders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.config import DataConfig
from pipelines.data import corpora, fit_normalizer, load_dataset, validate_corpus


def _rows(cfg: DataConfig, path: str | Path) -> tuple[dict[str, dict], tuple[int, ...]]:
    """Validated canonical rows by id, and the sample shape."""
    corpus = validate_corpus(load_dataset(cfg, str(path)))
    rows = corpus.dataset.take_all()
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows) == corpus.report.records
    return by_id, corpus.sample_shape


@pytest.mark.parametrize("layout", ["fixed_size_list", "list"])
def test_parquet_vector_column(ray_local, tmp_path, layout):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)).astype(np.float32)
    for i, idx in enumerate(np.array_split(np.arange(30), 3)):
        vec = (
            pa.FixedSizeListArray.from_arrays(pa.array(x[idx].reshape(-1)), 5)
            if layout == "fixed_size_list"
            else pa.array([row.tolist() for row in x[idx]], pa.list_(pa.float64()))
        )
        pq.write_table(
            pa.table({"id": pa.array(idx), "x": vec, "label": pa.array(idx % 3)}), tmp_path / f"p{i}.parquet"
        )
    rows, shape = _rows(DataConfig(), tmp_path)
    assert shape == (5,)
    assert sorted(rows) == sorted(str(i) for i in range(30))  # integer ids become strings
    for i in range(30):
        np.testing.assert_array_equal(rows[str(i)]["x"], x[i])
        assert rows[str(i)]["label"] == i % 3


def test_parquet_tabular_columns_with_derived_ids(ray_local, tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("part-00000.parquet", "sub/part-00001.parquet"):
        pq.write_table(pa.table({"a": [1, 2, 3], "note": ["u", "v", "w"], "c": [0.5, 1.5, 2.5]}), tmp_path / name)
    cfg = DataConfig(feature_columns=["c", "a"], id_column=None, derive_ids=True, label_column=None)
    rows, shape = _rows(cfg, tmp_path)
    assert shape == (2,)
    assert sorted(rows) == sorted(
        f"{f}:{r}" for f in ("part-00000.parquet", "sub/part-00001.parquet") for r in range(3)
    )
    np.testing.assert_array_equal(rows["sub/part-00001.parquet:2"]["x"], [2.5, 3.0])
    assert "label" not in rows["part-00000.parquet:0"]


def test_file_uri_reads_the_same_rows_as_a_local_path(ray_local, tmp_path):
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    corpora.write_vector_shards(tmp_path, np.array([f"r{i}" for i in range(10)]), x, None, shards=2)
    local, _ = _rows(DataConfig(), tmp_path)
    remote, _ = _rows(DataConfig(), tmp_path.as_uri())
    assert tmp_path.as_uri().startswith("file:///") and sorted(local) == sorted(remote)
    for i in local:
        np.testing.assert_array_equal(local[i]["x"], remote[i]["x"])


def _image_folder(root: Path) -> None:
    (root / "cat").mkdir(parents=True)
    (root / "dog" / "old").mkdir(parents=True)
    Image.new("RGB", (10, 6), (200, 100, 50)).save(root / "cat" / "a.png")
    Image.new("L", (4, 4), 128).save(root / "cat" / "b.jpg", quality=95)
    Image.fromarray(np.tile(np.arange(0, 250, 25, dtype=np.uint8), (10, 1))).save(root / "dog" / "old" / "c.png")
    Image.new("RGB", (8, 8), (0, 0, 255)).save(root / "top.jpeg")


def test_image_folder_png_jpeg_resized_with_folder_labels(ray_local, tmp_path):
    _image_folder(tmp_path)
    rgb, shape = _rows(DataConfig(source="images", image_size=(8, 8), color_mode="rgb"), tmp_path)
    assert shape == (3, 8, 8)
    assert {i: r["label"] for i, r in rgb.items()} == {
        "cat/a.png": "cat",
        "cat/b.jpg": "cat",
        "dog/old/c.png": "old",
        "top.jpeg": None,
    }
    np.testing.assert_array_equal(
        rgb["cat/a.png"]["x"], np.broadcast_to(np.array([200, 100, 50])[:, None, None], (3, 8, 8))
    )
    assert np.abs(rgb["cat/b.jpg"]["x"] - 128).max() <= 2  # JPEG is lossy
    c = rgb["dog/old/c.png"]["x"]
    np.testing.assert_array_equal(c[0], c[2])  # a grayscale file read as RGB has equal channels
    assert (np.diff(c[0], axis=1) > 0).all()  # the left-to-right ramp survives resizing 10 -> 8

    gray, shape = _rows(DataConfig(source="images", image_size=(5, 7), label_from_folder=False), tmp_path)
    assert shape == (1, 5, 7) and "label" not in gray["cat/a.png"]
    # ITU-R 601-2 luma, as Pillow converts: 200*.299 + 100*.587 + 50*.114 = 124.2
    assert np.abs(gray["cat/a.png"]["x"] - 124).max() <= 1


def _series_files(root: Path, timestamps) -> None:
    """Series ``s-a`` (value t) and ``s-b`` (value 100 + t), 10 steps each, even steps in one file and odd in
    another, rows shuffled; ``is_anomaly`` is set at step 5 of ``s-a``."""
    rows = [
        {
            "series_id": s,
            "timestamp": timestamps[t],
            "value": off + t,
            "neg": -float(t),
            "is_anomaly": int(s == "s-a" and t == 5),
        }
        for s, off in (("s-a", 0.0), ("s-b", 100.0))
        for t in range(10)
    ]
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=0)
    steps = df["timestamp"].map({ts: i for i, ts in enumerate(timestamps)})
    df[steps % 2 == 0].to_parquet(root / "even.parquet")
    df[steps % 2 == 1].to_parquet(root / "odd.parquet")


@pytest.mark.parametrize("kind", ["datetime", "integer"])
def test_series_windows_reassemble_series_spread_over_files(ray_local, tmp_path, kind):
    stamps = list(pd.date_range("2024-01-01", periods=10, freq="h")) if kind == "datetime" else list(range(0, 100, 10))
    _series_files(tmp_path, stamps)
    cfg = DataConfig(source="timeseries", value_columns=["value", "neg"], window=4, stride=2, label_column="is_anomaly")
    rows, shape = _rows(cfg, tmp_path)
    assert shape == (4, 2)
    starts = [0, 2, 4, 6]
    label = (lambda t: pd.Timestamp(t).isoformat()) if kind == "datetime" else str
    expected = {f"{s}@{label(stamps[t])}": (s, t) for s in ("s-a", "s-b") for t in starts}
    assert sorted(rows) == sorted(expected)
    assert "s-a@2024-01-01T02:00:00" in rows or kind == "integer"
    for window_id, (series, start) in expected.items():
        x = rows[window_id]["x"]
        offset = 0.0 if series == "s-a" else 100.0
        np.testing.assert_array_equal(x[:, 0], offset + np.arange(start, start + 4))  # ordered, one series only
        np.testing.assert_array_equal(x[:, 1], -np.arange(start, start + 4))
        assert rows[window_id]["label"] == int(series == "s-a" and start <= 5 < start + 4)


def test_series_tail_rows_get_a_window_aligned_to_the_end(ray_local, tmp_path):
    stamps = list(range(0, 100, 10))
    _series_files(tmp_path, stamps)
    cfg = DataConfig(source="timeseries", value_columns=["value", "neg"], window=4, stride=4)
    rows, _ = _rows(cfg, tmp_path)
    # 10 rows, windows [0, 4) and [4, 8) every 4 rows; rows 8 and 9 are scored by the window ending the series
    assert sorted(rows) == sorted(f"{s}@{t}" for s in ("s-a", "s-b") for t in (0, 40, 60))
    np.testing.assert_array_equal(rows["s-a@60"]["x"][:, 0], [6, 7, 8, 9])
    covered = {t for start in (0, 4, 6) for t in range(start, start + 4)}
    assert covered == set(range(10))


def test_channel_normalization_is_per_channel(ray_local, tmp_path):
    corpora.write_synthetic(tmp_path, "images", rows=24, shards=2, anomaly_fraction=0.25, seed=3, size=8, channels=3)
    # make channels differ: the green channel of every image is scaled by 0.5
    for png in tmp_path.rglob("*.png"):
        px = np.asarray(Image.open(png)).astype(np.float32)
        px[..., 1] *= 0.5
        Image.fromarray(px.astype(np.uint8)).save(png)
    corpus = validate_corpus(
        load_dataset(DataConfig(source="images", image_size=(8, 8), color_mode="rgb"), str(tmp_path))
    )
    x = np.stack([r["x"] for r in corpus.dataset.take_all()]).astype(np.float64)  # [24, 3, 8, 8]
    norm = fit_normalizer(corpus.dataset, "standard", "channel")
    shift, scale = np.asarray(norm.shift), np.asarray(norm.scale)
    assert shift.shape == (3, 8, 8) and (shift == shift[:, :1, :1]).all()  # one value per channel
    np.testing.assert_allclose(shift[:, 0, 0], x.mean(axis=(0, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(scale[:, 0, 0], x.std(axis=(0, 2, 3)), rtol=1e-5)
    z = norm.apply(x)
    np.testing.assert_allclose(z.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=(0, 2, 3)), 1, atol=1e-4)
    minmax = fit_normalizer(corpus.dataset, "minmax", "channel")
    np.testing.assert_allclose(np.asarray(minmax.scale)[:, 0, 0], x.max(axis=(0, 2, 3)) - x.min(axis=(0, 2, 3)))


def test_real_corpus_builders(ray_local, tmp_path):
    assert corpora.write_digits_parquet(tmp_path / "digits", shards=3) == 1797
    rows, shape = _rows(DataConfig(), tmp_path / "digits")
    from sklearn.datasets import load_digits

    assert shape == (64,) and len(rows) == 1797
    np.testing.assert_array_equal(rows["digits-0042"]["x"], load_digits().data[42])

    assert corpora.write_mnist_images(tmp_path / "png", limit=12) == 12
    x, y = corpora.mnist_arrays()
    rows, shape = _rows(DataConfig(source="images"), tmp_path / "png")
    assert shape == (1, 28, 28) and len(rows) == 12
    for i in range(12):
        row = rows[f"{y[i]}/mnist-{i:05d}.png"]
        assert row["label"] == str(y[i])
        np.testing.assert_array_equal(row["x"].reshape(-1), x[i])  # PNG is lossless, no resize at 28x28
