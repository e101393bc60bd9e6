"""`make bench-large`: one training epoch (``data.cache=stream``) and one full scoring pass over a synthetic
vector corpus larger than Ray's object store and than the machine's memory (30 GB of Parquet by default).

Outside ``make bench`` and CI: it takes an hour or more on a small machine. Figures, through ``run_training``
and ``run_scoring`` as users run them:

- rows/s of the training epoch (rows / the epoch's ``time_epoch_s`` on the MLflow run) and of the whole
  ``run_training`` call (validation, normalizer, worker start-up, registration included);
- rows/s of the whole ``run_scoring`` call and in its steady state (as the scoring run reports it);
- resident memory of the driver and of Ray's worker processes, sampled every second through both calls: the
  peak of each, and the peak of the run's second half over its first half (1.0 when memory is flat: nothing
  holds the corpus, its ids or its scores in one process).

The corpus (``--dir``, default ``$AEPIPE_HOME/bench-large``) is written once, shard by shard, and kept for
re-runs with the same size. The figures go to ``$AEPIPE_HOME/bench/large.md`` with a memory timeline plot,
and replace the README's ``bench-large`` block.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from bench.memory import PeakMemory

BENCH = "large"
README_START, README_END = "<!-- bench-large:start -->", "<!-- bench-large:end -->"
SHARD_BYTES = 256 * 2**20


def write_corpus(out: Path, gb: float, dim: int) -> tuple[int, int]:
    """Synthetic vectors (``dim`` float32 each) filling ``gb`` GiB in 256 MiB files, written once; returns
    (rows, files).

    Drawing 30 GiB of fresh noise costs longer than the bench, so one block of rows near a low-rank subspace is
    drawn once and each file holds it in its own row order, shifted by its own offset, under its own ids.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    per_file = SHARD_BYTES // (4 * dim)
    files = max(1, round(gb * 2**30 / SHARD_BYTES))
    stamp = out / "_corpus.json"
    wanted = {"rows": per_file * files, "files": files, "dim": dim}
    if stamp.exists() and json.loads(stamp.read_text()) == wanted:
        return per_file * files, files
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    t = time.perf_counter()
    rng = np.random.default_rng(0)
    block = rng.normal(size=(per_file, 8)) @ rng.normal(size=(8, dim)) + 0.05 * rng.normal(size=(per_file, dim))
    block = block.astype(np.float32)
    for f in range(files):
        frng = np.random.default_rng([0, f])
        x = block[frng.permutation(per_file)] + frng.normal(scale=0.1, size=dim).astype(np.float32)
        ids = pa.array([f"vec-{f:05d}-{i:06d}" for i in range(per_file)])
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)
        pq.write_table(pa.table({"id": ids, "x": vectors}), out / f"part-{f:05d}.parquet")
    stamp.write_text(json.dumps(wanted))
    print(f"[bench] large: wrote {per_file * files:,} rows in {files} files in {time.perf_counter() - t:.0f}s")
    return per_file * files, files


def _halves(samples: list[tuple[float, float, float]], column: int) -> float:
    """Peak of the second half of the samples over the peak of the first half."""
    half = len(samples) // 2
    first = max((s[column] for s in samples[:half]), default=0.0)
    second = max((s[column] for s in samples[half:]), default=0.0)
    return second / first if first > 0 else float("nan")


def _phase(name: str, mem: PeakMemory, rows: int, seconds: float) -> dict[str, float]:
    return {
        f"{name}_s": seconds,
        f"{name}_rows_per_s": rows / seconds,
        f"{name}_driver_peak_mib": mem.driver_peak_mib,
        f"{name}_workers_peak_mib": mem.workers_peak_mib,
        f"{name}_driver_second_vs_first_half": _halves(mem.samples, 1),
        f"{name}_workers_second_vs_first_half": _halves(mem.samples, 2),
    }


def measure(root: Path, data: Path, rows: int, dim: int) -> tuple[dict[str, float], dict[str, list]]:
    """Train one streamed epoch and score the corpus; returns figures and the memory timelines."""
    from pipelines import tracking
    from pipelines.config import load_config
    from pipelines.score.driver import ScoreRequest, run_scoring
    from pipelines.train.driver import run_training

    job = load_config(
        None,
        [
            f"home={root}",
            "name=bench-large",
            f"data.path={data}",
            "data.label_column=null",
            "data.normalize=standard",
            "data.cache=stream",
            "model.name=dense",
            f"model.input_shape=[{dim}]",
            "model.hidden=[64]",
            "model.latent_dim=16",
            "train.epochs=1",
            "train.batch_size=1024",
            "train.plot_rows=64",
            "tracking.registered_model=bench-large",
        ],
    )
    quiet = lambda _msg: None
    with PeakMemory(interval=1.0) as train_mem:
        t = time.perf_counter()
        trained = run_training(job, log=quiet)
        train_s = time.perf_counter() - t
    epoch_s = tracking.metric_history(job.tracking_uri, trained.run_id, "time_epoch_s")[-1][1]
    print(f"[bench] large: trained in {train_s:.0f}s (epoch {epoch_s:.0f}s)", flush=True)
    req = ScoreRequest(
        model_uri="models:/bench-large@champion",
        input_path=str(data),
        output_path=str(root / "scores"),
        tracking_uri=job.tracking_uri,
    )
    with PeakMemory(interval=1.0) as score_mem:
        t = time.perf_counter()
        scored = run_scoring(req, log=quiet)
        score_s = time.perf_counter() - t
    print(f"[bench] large: scored {scored.rows:,} rows in {score_s:.0f}s", flush=True)
    figures = {
        "train_epoch_rows_per_s": rows / epoch_s,
        **_phase("train", train_mem, rows, train_s),
        **_phase("score", score_mem, scored.rows, score_s),
        "score_steady_rows_per_s": scored.steady_rows_per_s,
        "scored_rows": scored.rows,
    }
    return figures, {"training": train_mem.samples, "scoring": score_mem.samples}


def plot_timelines(timelines: dict[str, list], path: Path) -> None:
    """Driver and worker resident memory through each call, one panel per call."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(timelines), figsize=(6 * len(timelines), 3.5), squeeze=False)
    for ax, (name, samples) in zip(axes[0], timelines.items(), strict=True):
        t = [s[0] for s in samples]
        ax.plot(t, [s[1] for s in samples], label="driver (above its start)")
        ax.plot(t, [s[2] for s in samples], label="Ray workers (sum)")
        ax.set_title(name)
        ax.set_xlabel("seconds")
        ax.set_ylabel("resident MiB")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(figures: dict[str, float], corpus: dict[str, float]) -> str:
    """Markdown: the corpus and the figures of one run."""
    f = figures
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')}: {corpus['gib_on_disk']:.1f} GiB of Parquet "
        f"({corpus['rows']:,} rows of {corpus['dim']} float32 in {corpus['files']} files) against "
        f"{corpus['memory_gib']:.0f} GiB of memory and a {corpus['object_store_gib']:.1f} GiB object store.",
        "",
        "| call | wall s | rows/s | driver peak MiB | driver 2nd/1st half | workers peak MiB | workers 2nd/1st half |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, label in (("train", "run_training, 1 streamed epoch"), ("score", "run_scoring, every row")):
        lines.append(
            f"| {label} | {f[f'{name}_s']:.0f} | {f[f'{name}_rows_per_s']:,.0f} | {f[f'{name}_driver_peak_mib']:.0f} | "
            f"{f[f'{name}_driver_second_vs_first_half']:.2f} | {f[f'{name}_workers_peak_mib']:.0f} | "
            f"{f[f'{name}_workers_second_vs_first_half']:.2f} |"
        )
    lines += [
        "",
        f"Training epoch alone: {f['train_epoch_rows_per_s']:,.0f} rows/s; scoring steady state: "
        f"{f['score_steady_rows_per_s']:,.0f} rows/s; {int(f['scored_rows']):,} rows scored.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import psutil
    import ray

    from bench.common import ray_workspace
    from bench.run import update_readme

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=30.0, help="corpus size in GiB of float32 vectors")
    parser.add_argument("--dim", type=int, default=4096, help="vector length")
    home = Path(os.environ.get("AEPIPE_HOME", ".aepipe"))
    parser.add_argument("--dir", type=Path, default=home / "bench-large", help="where the corpus is written")
    parser.add_argument("--no-readme", action="store_true", help="do not rewrite the README block")
    args = parser.parse_args(argv)
    rows, files = write_corpus(args.dir, args.gb, args.dim)
    out_dir = home / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    with ray_workspace("aepipe-large-") as root:
        corpus = {
            "rows": rows,
            "files": files,
            "dim": args.dim,
            "gib_on_disk": sum(p.stat().st_size for p in args.dir.glob("*.parquet")) / 2**30,
            "memory_gib": psutil.virtual_memory().total / 2**30,
            "object_store_gib": ray.cluster_resources().get("object_store_memory", 0) / 2**30,
        }
        figures, timelines = measure(root, args.dir, rows, args.dim)
    text = summary(figures, corpus)
    plot_timelines(timelines, out_dir / "large_memory.png")
    (out_dir / "large.md").write_text(f"# bench-large\n\n{text}\n\n![memory](large_memory.png)\n")
    (out_dir / "large.json").write_text(json.dumps({"corpus": corpus, "figures": figures, "timelines": timelines}))
    print(text)
    if not args.no_readme:
        update_readme(Path(__file__).resolve().parents[1] / "README.md", text, README_START, README_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
