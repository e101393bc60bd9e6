"""`make bench` / `make bench-quick`: run every benchmark, write a markdown report with plots, and refresh
the README's benchmark table.

Every figure is a ratio against a reference measured in the same run on the same machine. The report goes
to ``$AEPIPE_HOME/bench/report.md`` (plots beside it); the README table between the ``bench:start`` and
``bench:end`` markers is replaced with the suite's own output.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import platform
import time
import traceback
from pathlib import Path

#: Benchmark modules in run order; each exposes ``run(quick, out_dir) -> list[dict]``.
SUITE = [
    "bench.cli_startup",
    "bench.quality",
    "bench.peers",
    "bench.tune_peers",
    "bench.train_throughput",
    "bench.train_overhead",
    "bench.score_throughput",
    "bench.score_images",
    "bench.data_memory",
    "bench.scale",
    "bench.cluster_scoring",
]
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"


def machine() -> str:
    """One line naming the machine: CPU count, memory, accelerator, Python and torch versions."""
    import torch

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.machine()} {os.cpu_count()} cores, {mem_gb:.0f} GiB, {device}; "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def table(rows: list[dict]) -> str:
    """Rows as a markdown table."""
    lines = ["| bench | metric | value | reference | ratio | note |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r['bench']} | {r['metric']} | {_fmt(r.get('value'))} | {_fmt(r.get('reference'))} | "
        f"{_fmt(r.get('ratio'))} | {r.get('note', '')} |"
        for r in rows
    ]
    return "\n".join(lines)


def plot_ratios(rows: list[dict], path: Path) -> None:
    """Horizontal bar chart of every row's ratio."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if isinstance(r.get("ratio"), (int, float))]
    if not shown:
        return
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(shown) + 1.2))
    ax.barh([f"{r['bench']}: {r['metric']}"[:70] for r in shown], [r["ratio"] for r in shown], color="tab:blue")
    ax.axvline(1.0, color="black", lw=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the reference measured in the same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_suite(quick: bool, out_dir: Path, only: list[str] | None = None) -> tuple[list[dict], list[str]]:
    """Run each module; a module that fails is reported as a failure row, never silently skipped."""
    rows, failures = [], []
    for name in SUITE:
        if only and name.split(".")[-1] not in only:
            continue
        t = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        try:
            module_rows = importlib.import_module(name).run(quick=quick, out_dir=out_dir)
        except Exception:
            failures.append(f"{name}:\n{traceback.format_exc()}")
            print(failures[-1], flush=True)
            continue
        rows += module_rows
        print(f"[bench] {name} done in {time.perf_counter() - t:.0f}s", flush=True)
    return rows, failures


def write_report(rows: list[dict], failures: list[str], out_dir: Path, quick: bool, seconds: float) -> str:
    stamp = dt.date.today().isoformat()
    header = f"Measured {stamp} on {machine()}; {'quick' if quick else 'full'} suite, {seconds / 60:.1f} min."
    body = "\n\n".join(
        [f"# aepipe benchmarks\n\n{header}", table(rows), "![ratios](ratios.png)"]
        + ([f"## Failures\n\n```\n{f}\n```" for f in failures])
    )
    (out_dir / "report.md").write_text(body + "\n")
    plot_ratios(rows, out_dir / "ratios.png")
    return f"{header}\n\n{table(rows)}"


def update_readme(readme: Path, summary: str, start: str = README_START, end: str = README_END) -> bool:
    """Replace the README's block between the ``start`` and ``end`` markers with ``summary``; False when the
    markers are missing."""
    text = readme.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{summary}\n{end}{tail}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes, not tens of minutes)")
    parser.add_argument("--only", nargs="*", help="module names to run, e.g. peers quality")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README table")
    args = parser.parse_args(argv)
    out_dir = Path(os.environ.get("AEPIPE_HOME", ".aepipe")) / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    rows, failures = run_suite(args.quick, out_dir, args.only)
    summary = write_report(rows, failures, out_dir, args.quick, time.perf_counter() - t)
    print(summary)
    print(f"\nreport: {out_dir / 'report.md'}")
    if not args.quick and not args.only and not args.no_readme and not failures:
        update_readme(Path(__file__).resolve().parents[1] / "README.md", summary)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
