"""The benchmark runner: report, README table, failures reported."""

from __future__ import annotations

from bench import run as bench_run

ROWS = [
    {"bench": "b", "metric": "m1", "value": 2.0, "reference": 4.0, "ratio": 0.5, "note": "n"},
    {"bench": "b", "metric": "m2", "value": 1.5, "reference": None, "ratio": None, "note": ""},
]


def test_report_table_and_plot(tmp_path):
    summary = bench_run.write_report(ROWS, [], tmp_path, quick=True, seconds=61.0)
    report = (tmp_path / "report.md").read_text()
    assert "| b | m1 | 2 | 4 | 0.5 | n |" in report and "| b | m2 | 1.5 |  |  |  |" in report
    assert "quick suite, 1.0 min" in summary and (tmp_path / "ratios.png").stat().st_size > 1000


def test_readme_block_is_replaced_only_between_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"head\n{bench_run.README_START}\nold\n{bench_run.README_END}\ntail\n")
    assert bench_run.update_readme(readme, "NEW TABLE")
    assert readme.read_text() == f"head\n{bench_run.README_START}\nNEW TABLE\n{bench_run.README_END}\ntail\n"
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not bench_run.update_readme(plain, "x") and plain.read_text() == "no markers\n"


def test_a_failing_module_is_reported_not_skipped(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_run, "SUITE", ["bench.does_not_exist"])
    rows, failures = bench_run.run_suite(quick=True, out_dir=tmp_path)
    assert rows == [] and len(failures) == 1 and "does_not_exist" in failures[0]
