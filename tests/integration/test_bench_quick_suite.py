"""The quick benchmark suite's code paths on tiny sizes: quality and peers end to end."""

from __future__ import annotations

import math

from bench import run as bench_run


def test_quick_suite_runs_quality_and_peers(tmp_path, monkeypatch):
    monkeypatch.setenv("AEPIPE_HOME", str(tmp_path))
    assert bench_run.main(["--quick", "--only", "quality", "peers", "--no-readme"]) == 0
    report = (tmp_path / "bench" / "report.md").read_text()
    peers = [line for line in report.splitlines() if line.startswith("| peers |")]
    assert len(peers) == 8  # 4 detectors x 2 data sets
    aurocs = [float(line.split("|")[3]) for line in peers]
    assert all(0.5 < a <= 1.0 for a in aurocs), aurocs
    quality = [line for line in report.splitlines() if line.startswith("| quality |")]
    assert len(quality) == 3 and all(math.isfinite(float(line.split("|")[5])) for line in quality)
