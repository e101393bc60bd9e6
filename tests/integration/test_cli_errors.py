"""Input mistakes found by reading the corpus or the registry get one clear line and exit status 2."""

from __future__ import annotations

from tests.support.cli import assert_clean_error, invoke, train


def test_missing_input_path(ray_local, home, tmp_path):
    missing = tmp_path / "nowhere"
    assert_clean_error(train(f"data.path={missing}"), f"input path {missing} does not exist")


def test_empty_input_directory(ray_local, home, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_clean_error(train(f"data.path={empty}"), f"input directory {empty} has no .parquet files")


def test_score_unknown_model(ray_local, home, mnist_small, tmp_path):
    result = invoke(
        "score", "--model", "models:/missing@champion", "--input", str(mnist_small), "--output", str(tmp_path / "o")
    )
    assert_clean_error(result, "cannot resolve models:/missing@champion")
