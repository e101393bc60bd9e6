"""Bad input, against real broken files: ``fail`` names the file (and row), ``skip`` quarantines every bad
file or row with its reason and leaves the rest usable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.config import DataConfig
from pipelines.data import DataError, corpora, load_dataset, validate_corpus

GOOD = "part-00000.parquet"


def _good_shard(root: Path, n: int = 6) -> np.ndarray:
    x = np.arange(n * 5, dtype=np.float32).reshape(n, 5)
    corpora.write_vector_shards(root, np.array([f"a{i}" for i in range(n)]), x, None, shards=1)
    return x


def _bad_rows(path: Path, ids: list, vectors: list) -> None:
    """Rows with ids ``STEM.ID`` (unique per file; None stays None)."""
    ids = [None if i is None else f"{path.stem}.{i}" for i in ids]
    _write(path, ids, vectors)


def _write(path: Path, ids: list, vectors: list) -> None:
    pq.write_table(pa.table({"id": pa.array(ids, pa.string()), "x": pa.array(vectors, pa.list_(pa.float64()))}), path)


def _valid_bytes(path: Path) -> bytes:
    _bad_rows(path, ["z0", "z1"], [[1.0] * 5, [2.0] * 5])
    return path.read_bytes()


#: name -> (writes part-bad.parquet next to a good shard, the error expected)
PARQUET_CASES = {
    "corrupt file": (
        lambda p: p.write_bytes(b"PAR1 this is not parquet at all PAR1"),
        "part-bad.parquet: not a readable Parquet file",
    ),
    "truncated file": (lambda p: p.write_bytes(_valid_bytes(p)[:-40]), "part-bad.parquet: not a readable Parquet file"),
    "NaN value": (
        lambda p: _bad_rows(p, ["b0", "b1", "b2"], [[0.0] * 5, [0.0] * 5, [1, 2, np.nan, 4, 5]]),
        "part-bad.parquet: row 2 (id 'part-bad.b2'): null, NaN or infinite value",
    ),
    "infinite value": (
        lambda p: _bad_rows(p, ["b0", "b1"], [[0.0] * 5, [1, np.inf, 3, 4, 5]]),
        "part-bad.parquet: row 1 (id 'part-bad.b1'): null, NaN or infinite value",
    ),
    "wrong vector length": (
        lambda p: _bad_rows(p, ["b0", "b1", "b2", "b3"], [[0.0] * 5] * 3 + [[1.0] * 4]),
        "part-bad.parquet: row 3 (id 'part-bad.b3'): vector has length 4, expected 5",
    ),
    "null id": (lambda p: _bad_rows(p, [None, "b1"], [[0.0] * 5, [1.0] * 5]), "part-bad.parquet: row 0: missing id"),
    "missing column": (
        lambda p: pq.write_table(pa.table({"id": ["b0"], "vec": [[0.0] * 5]}), p),
        "part-bad.parquet: column 'x' is missing (columns: id, vec)",
    ),
    "wrong column type": (
        lambda p: pq.write_table(pa.table({"id": ["b0"], "x": ["0,0,0,0,0"]}), p),
        "part-bad.parquet: column 'x' has type string, expected a list of numbers",
    ),
    "duplicate id across shards": (
        lambda p: _write(p, ["b0", "a3"], [[0.0] * 5, [1.0] * 5]),
        "1 ids occur more than once",
    ),
}


@pytest.mark.parametrize("case", list(PARQUET_CASES))
def test_bad_parquet_fails_naming_file_and_row(ray_local, tmp_path, case):
    write, expected = PARQUET_CASES[case]
    _good_shard(tmp_path)
    write(tmp_path / "part-bad.parquet")
    with pytest.raises(DataError) as err:
        validate_corpus(load_dataset(DataConfig(), str(tmp_path)))
    assert expected in str(err.value)
    if case == "duplicate id across shards":  # both copies are located
        assert f"{GOOD}: row 3 (id 'a3'): duplicate id" in str(err.value)
        assert "part-bad.parquet: row 1 (id 'a3'): duplicate id" in str(err.value)


@pytest.mark.parametrize("keep", [False, True], ids=["streamed", "kept"])
def test_a_bad_record_found_in_a_task_is_raised_with_its_message_only(ray_local, tmp_path, keep):
    _good_shard(tmp_path)
    PARQUET_CASES["NaN value"][0](tmp_path / "part-bad.parquet")
    corpus = load_dataset(DataConfig(), str(tmp_path))
    with pytest.raises(DataError) as err:
        validate_corpus(corpus, keep=keep)
    assert type(err.value) is DataError
    assert str(err.value) == f"{tmp_path / 'part-bad.parquet'}: row 2 (id 'part-bad.b2'): null, NaN or infinite value"
    # the pass lets task errors through whole only while it runs: training and scoring keep Ray Data's default
    assert corpus.records.context.raise_original_map_exception is False


def test_empty_directory_and_missing_path(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no data here")
    with pytest.raises(DataError, match=r"input directory .*empty has no \.parquet files"):
        load_dataset(DataConfig(), str(tmp_path / "empty"))
    with pytest.raises(DataError, match=r"input directory .*empty has no \.png/\.jpg/\.jpeg files"):
        load_dataset(DataConfig(source="images"), str(tmp_path / "empty"))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataConfig(), str(tmp_path / "nowhere"))


@pytest.mark.parametrize("keep", [False, True], ids=["streamed", "kept"])  # kept: the pass that fills the cache
def test_skip_quarantines_every_bad_parquet_record(ray_local, tmp_path, keep):
    data, quarantine = tmp_path / "data", tmp_path / "q"
    _good_shard(data)
    for i, (write, _) in enumerate(PARQUET_CASES.values()):
        write(data / f"bad-{i:02d}.parquet")
    corpus = load_dataset(DataConfig(on_bad_records="skip"), str(data), quarantine_dir=str(quarantine))
    corpus = validate_corpus(corpus, keep=keep)

    q = pd.read_parquet(quarantine)
    got = sorted(
        (Path(f).name, int(r), reason.split(" (")[0])
        for f, r, reason in zip(q["file"], q["row"], q["reason"], strict=True)
    )
    expected = sorted(
        [
            ("bad-00.parquet", -1, "not a readable Parquet file"),
            ("bad-01.parquet", -1, "not a readable Parquet file"),
            ("bad-02.parquet", 2, "null, NaN or infinite value"),
            ("bad-03.parquet", 1, "null, NaN or infinite value"),
            ("bad-04.parquet", 3, "vector has length 4, expected 5"),
            ("bad-05.parquet", 0, "missing id"),
            ("bad-06.parquet", -1, "column 'x' is missing"),
            ("bad-07.parquet", -1, "column 'x' has type string, expected a list of numbers"),
            (GOOD, 3, "duplicate id"),
            ("bad-08.parquet", 1, "duplicate id"),  # both copies of 'a3'
        ]
    )
    assert got == expected
    assert corpus.report.skipped == len(expected)
    # the good rows survive: the good shard but a3 (duplicated), and the good rows of the bad files
    good_ids = sorted(r["id"] for r in corpus.dataset.take_all())
    assert good_ids == sorted(
        [
            "a0",
            "a1",
            "a2",
            "a4",
            "a5",
            "bad-02.b0",
            "bad-02.b1",
            "bad-03.b0",
            "bad-04.b0",
            "bad-04.b1",
            "bad-04.b2",
            "bad-05.b1",
            "b0",
        ]
    )
    assert corpus.report.records == len(good_ids)


#: whole-file problems that once stopped the job (or raised Arrow's error) when their file sorted first
FIRST_FILE_CASES = {
    "missing column": (
        lambda p: pq.write_table(pa.table({"id": ["b0", "b1", "b2"], "vec": [[0.0] * 5] * 3}), p),
        "column 'x' is missing",
        3,
    ),
    "wrong column type": (
        lambda p: pq.write_table(pa.table({"id": ["b0", "b1"], "x": ["0,0,0,0,0", "1"]}), p),
        "column 'x' has type string, expected a list of numbers",
        2,
    ),
}


@pytest.mark.parametrize("case", list(FIRST_FILE_CASES))
def test_a_bad_file_sorting_first_is_judged_like_any_other(ray_local, tmp_path, case):
    write, reason, rows = FIRST_FILE_CASES[case]
    _good_shard(tmp_path / "data")
    write(tmp_path / "data" / "a-bad.parquet")  # sorts before part-00000.parquet
    with pytest.raises(DataError, match=f"a-bad.parquet: {reason}"):
        validate_corpus(load_dataset(DataConfig(), str(tmp_path / "data")))

    corpus = validate_corpus(
        load_dataset(DataConfig(on_bad_records="skip"), str(tmp_path / "data"), quarantine_dir=str(tmp_path / "q"))
    )
    q = pd.read_parquet(tmp_path / "q")
    assert [(Path(f).name, r, n) for f, r, n in zip(q["file"], q["reason"], q["rows"], strict=True)] == [
        ("a-bad.parquet", q["reason"][0], rows)
    ]
    assert q["reason"][0].startswith(reason)
    assert corpus.report.skipped == rows  # the file's rows (footer), not one record
    assert corpus.sample_shape == (5,) and sorted(r["id"] for r in corpus.dataset.take_all()) == [
        f"a{i}" for i in range(6)
    ]


def test_skip_needs_a_quarantine_directory(ray_local, tmp_path):
    _good_shard(tmp_path)
    with pytest.raises(ValueError, match="quarantine directory"):
        validate_corpus(load_dataset(DataConfig(on_bad_records="skip"), str(tmp_path)))


def _image_folder_with_bad_files(root: Path) -> None:
    (root / "ok").mkdir(parents=True)
    for i in range(3):
        Image.new("L", (6, 6), 40 * i).save(root / "ok" / f"{i}.png")
    good = root / "ok" / "0.png"
    (root / "ok" / "truncated.png").write_bytes(good.read_bytes()[:30])
    (root / "ok" / "notes.jpg").write_text("this is not an image")


def test_bad_image_files_fail_or_are_quarantined(ray_local, tmp_path):
    data = tmp_path / "images"
    _image_folder_with_bad_files(data)
    with pytest.raises(DataError, match=r"ok/(notes\.jpg|truncated\.png) \(id 'ok/\w+\.\w+'\): not a readable image"):
        validate_corpus(load_dataset(DataConfig(source="images", image_size=(6, 6)), str(data)))
    corpus = validate_corpus(
        load_dataset(
            DataConfig(source="images", image_size=(6, 6), on_bad_records="skip"),
            str(data),
            quarantine_dir=str(tmp_path / "q"),
        )
    )
    q = pd.read_parquet(tmp_path / "q")
    assert sorted(Path(f).name for f in q["file"]) == ["notes.jpg", "truncated.png"]
    assert sorted(q["id"]) == ["ok/notes.jpg", "ok/truncated.png"]
    assert all(r.startswith("not a readable image") for r in q["reason"])
    assert sorted(r["id"] for r in corpus.dataset.take_all()) == ["ok/0.png", "ok/1.png", "ok/2.png"]
    assert (corpus.report.records, corpus.report.skipped) == (3, 2)


def _series(root: Path, name: str, series: str, steps: int, nan_at: int | None = None) -> None:
    values = np.arange(steps, dtype=np.float64)
    if nan_at is not None:
        values[nan_at] = np.nan
    pd.DataFrame(
        {"series_id": series, "timestamp": pd.date_range("2024-01-01", periods=steps, freq="min"), "value": values}
    ).to_parquet(root / name)


def test_bad_series_fail_or_are_quarantined(ray_local, tmp_path):
    data = tmp_path / "series"
    data.mkdir()
    _series(data, "long.parquet", "long", 12)
    _series(data, "short.parquet", "short", 3)
    cfg = DataConfig(source="timeseries", window=4, stride=4)
    with pytest.raises(
        DataError,
        match=r"short\.parquet: row 0 \(id 'short'\): series 'short' has 3 rows .* fewer than one window of 4",
    ):
        validate_corpus(load_dataset(cfg, str(data)))

    _series(data, "gappy.parquet", "gappy", 12, nan_at=5)
    with pytest.raises(DataError, match=r"gappy\.parquet: row 5 \(id 'gappy'\): null, NaN or infinite value"):
        validate_corpus(load_dataset(cfg.model_copy(update={"window": 2}), str(data)))

    corpus = validate_corpus(
        load_dataset(cfg.model_copy(update={"on_bad_records": "skip"}), str(data), quarantine_dir=str(tmp_path / "q"))
    )
    q = pd.read_parquet(tmp_path / "q").sort_values(["file", "row", "id"])
    assert [(Path(f).name, r, i) for f, r, i in zip(q["file"], q["row"], q["id"], strict=True)] == [
        ("gappy.parquet", 5, "gappy"),  # the NaN row itself
        ("gappy.parquet", 7, "gappy@2024-01-01T00:04:00"),  # the window [4, 8) spans it; named at its last row
        ("short.parquet", 0, "short"),  # too short for one window
    ]
    assert sorted(r["id"] for r in corpus.dataset.take_all()) == [
        "gappy@2024-01-01T00:00:00",
        "gappy@2024-01-01T00:08:00",
        "long@2024-01-01T00:00:00",
        "long@2024-01-01T00:04:00",
        "long@2024-01-01T00:08:00",
    ]


@pytest.mark.parametrize("bad_name", ["a-short.parquet", "z-short.parquet"])  # sorting first, or last
def test_training_reads_at_the_models_size_so_a_wrong_length_shard_is_bad_wherever_it_sorts(
    ray_local, tmp_path, bad_name
):
    from pipelines.config import load_config
    from pipelines.train.driver import prepare_data

    _good_shard(tmp_path / "data")
    _bad_rows(tmp_path / "data" / bad_name, ["b0", "b1", "b2"], [[1.0] * 4] * 3)  # 4 values, the model takes 5
    settings = [f"data.path={tmp_path / 'data'}", "model.input_shape=[5]", "model.hidden=[4]", "model.latent_dim=2"]
    job = load_config(None, [*settings, "data.on_bad_records=skip", "name=lengths"], home=str(tmp_path))
    prepared = prepare_data(job, log=lambda _m: None)
    assert (prepared.records, prepared.skipped) == (6, 3)  # the good shard is used, the short one quarantined
    q = pd.read_parquet(tmp_path / "checkpoints" / "quarantine" / "lengths")
    assert set(q["file"].map(lambda f: Path(f).name)) == {bad_name} and q["rows"].sum() == 3
    assert all("length" in reason for reason in q["reason"]), q["reason"].tolist()


@pytest.mark.parametrize("dtype", ["string", "int64"])
def test_repeated_ids_are_found_across_blocks_and_parts(ray_local, dtype):
    """The id count (:func:`pipelines.data.ids.count_ids`) split into several hash parts: ids repeated within a
    block, across blocks and three times are each found once, and every row is counted."""
    from pipelines.data.ids import count_ids

    ids = [*range(1000), 5, 500, 999, 999]  # 5 and 500 in other blocks than their copies, 999 three times
    column = [str(i) for i in ids] if dtype == "string" else ids
    ds = ray_local.data.from_arrow(pa.table({"id": pa.array(column, getattr(pa, dtype)())})).repartition(8)
    counted = count_ids(ds, keep=10, part_rows=300)  # 4 parts
    expected = {"5", "500", "999"} if dtype == "string" else {5, 500, 999}
    assert (counted.rows, counted.repeated, counted.examples) == (1004, 3, expected)
    assert count_ids(ds, keep=2, part_rows=300).examples < expected  # keep bounds what the driver receives
    unique = count_ids(ray_local.data.range(1000), keep=10, part_rows=300)
    assert (unique.rows, unique.repeated, unique.examples) == (1000, 0, frozenset())
