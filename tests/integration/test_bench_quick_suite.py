"""The quick benchmark suite's code paths on tiny sizes: quality and peers through the pipeline, and the image folder
bench, end to end."""

from __future__ import annotations

import math

from bench import run as bench_run


def test_quick_suite_runs_quality_and_peers(tmp_path, monkeypatch):
    monkeypatch.setenv("AEPIPE_HOME", str(tmp_path))
    assert bench_run.main(["--quick", "--only", "quality", "peers", "--no-readme"]) == 0
    report = (tmp_path / "bench" / "report.md").read_text()
    peers = [line for line in report.splitlines() if line.startswith("| peers |")]
    assert len(peers) == 8  # 4 detectors x 2 data sets (sklearn digits, series windows; quick leaves MNIST out)
    aurocs = [float(line.split("|")[3]) for line in peers]
    assert all(0.5 < a <= 1.0 for a in aurocs), aurocs
    # aepipe ran through run_training + run_scoring (whose logged AUROC the bench checked against its own)
    assert sum("run_training + run_scoring end to end" in line for line in peers) == 2
    quality = [line for line in report.splitlines() if line.startswith("| quality |")]
    assert len(quality) == 3 and all(math.isfinite(float(line.split("|")[5])) for line in quality)
    assert all("end to end" in line for line in quality)


def test_quick_suite_scores_an_image_folder_in_shards(tmp_path, monkeypatch):
    monkeypatch.setenv("AEPIPE_HOME", str(tmp_path))
    assert bench_run.main(["--quick", "--only", "score_images", "--no-readme"]) == 0
    report = (tmp_path / "bench" / "report.md").read_text()
    rows = [line.split("|") for line in report.splitlines() if line.startswith("| score_images |")]
    values = {cells[2].strip(): float(cells[3]) for cells in rows}
    assert set(values) == {"planning_s", "rows_per_s", "steady_rows_per_s", "driver_peak_mb", "noop_s"}
    assert values["steady_rows_per_s"] > values["rows_per_s"] > 0 and values["planning_s"] > 0 and values["noop_s"] > 0
