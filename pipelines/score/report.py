"""What a scoring run records: the partition's manifest, the scoring run's metrics and its pictures (the score
histogram against the threshold, the highest-scored rows next to their reconstructions)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from pipelines import storage, tracking
from pipelines.bundle import ModelBundle
from pipelines.config import DataConfig
from pipelines.labelled import LabelledScores
from pipelines.score import publish
from pipelines.score.drift import DriftReport, ScoreSketch, baseline_cdf
from pipelines.score.plan import Plan
from pipelines.score.top import TopRows

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class RunOutcome:
    """What one scoring run did, as the manifest and the scoring run's metrics report it."""

    model: tracking.ResolvedModel
    requested_uri: str
    mode: str
    input_path: str
    shards: list[publish.Shard]
    """Every input shard of the corpus (the input fingerprint)."""
    plan: Plan
    markers: list[dict[str, Any]]
    """Every shard the partition holds: carried over, resumed and newly scored, sorted by name."""
    this_run: list[dict[str, Any]]
    """The shards this run scored or resumed."""
    rows: int
    rows_scored: int
    score_seconds: float
    warmup_seconds: float
    warmup_rows: int
    drift: DriftReport | None
    run_id: str
    top: TopRows
    """The highest-scored rows this run scored (not those of resumed shards, scored by a killed run)."""
    labelled: LabelledScores = field(default_factory=LabelledScores)
    """The scores and labels of the labelled rows this run scored (not those of resumed shards)."""

    @property
    def steady_rows_per_s(self) -> float:
        """Rows per second after each pass's first batch."""
        rows, seconds = self.rows_scored - self.warmup_rows, self.score_seconds - self.warmup_seconds
        return rows / seconds if seconds > 0 and rows > 0 else 0.0


def manifest(outcome: RunOutcome, schema: pa.Schema, seconds: float) -> dict[str, Any]:
    """The ``_SUCCESS`` manifest of the partition (JSON)."""
    o = outcome
    return {
        "model": {
            "name": o.model.name,
            "version": o.model.version,
            "mode": o.mode,
            "requested": o.requested_uri,
            "run_id": o.model.run_id,
        },
        "input": {
            "path": o.input_path,
            "fingerprint": publish.input_fingerprint(o.shards),
            "shards": [s.fingerprint for s in o.shards],
        },
        "shards": [{k: v for k, v in m.items() if k != "sketch"} for m in o.markers],
        "rows": o.rows,
        "schema": schema.names,
        "plan": o.plan.summary(),
        "drift": None if o.drift is None else {**o.drift.metrics(), "reason": o.drift.reason},
        "scoring_run_id": o.run_id,
        "published_at": datetime.now(UTC).isoformat(),
        "timings": {"seconds": seconds, "scoring_seconds": o.score_seconds, "warmup_seconds": o.warmup_seconds},
    }


def merged_sketch(edges: np.ndarray | None, markers: list[dict[str, Any]]) -> ScoreSketch | None:
    """The score sketch of every row the markers summarize; None without edges (``embed`` mode)."""
    if edges is None:
        return None
    total = ScoreSketch.empty(edges)
    for m in markers:
        if m.get("sketch"):
            total = total.merge(ScoreSketch.from_dict(edges, m["sketch"]))
    return total


def run_metrics(outcome: RunOutcome, sketch: ScoreSketch | None, threshold: float) -> dict[str, float]:
    """Counts, rates and the score distribution of the rows this run scored; with a binary label column, the
    labelled metrics of their scores (``auroc``, ``average_precision``, ``f1`` of ``score > threshold``)."""
    o = outcome
    metrics: dict[str, float] = {
        "rows": o.rows,
        "rows_scored": o.rows_scored,
        "shards_scored": len(o.this_run) - len(o.plan.resumed),
        "shards_resumed": len(o.plan.resumed),
        "shards_carried": len(o.plan.carried),
        "data_skipped_records": sum(m.get("skipped", 0) for m in o.this_run),
        "rows_per_s": o.rows_scored / o.score_seconds if o.score_seconds > 0 else 0.0,
        "scoring_seconds": o.score_seconds,
        "warmup_seconds": o.warmup_seconds,
        "steady_rows_per_s": o.steady_rows_per_s,
    }
    if sketch is not None and sketch.n:
        metrics["anomaly_rate"] = sum(m.get("anomalies", 0) for m in o.this_run) / sketch.n
        metrics["score_mean"] = sketch.mean()
        levels = sketch.quantile(np.asarray(QUANTILES))
        metrics.update({f"score_p{int(q * 100):02d}": float(v) for q, v in zip(QUANTILES, levels, strict=True)})
    if o.drift is not None:
        metrics.update(o.drift.metrics())
    metrics.update(o.labelled.metrics(threshold))
    return metrics


def feature_names(data_cfg: DataConfig) -> list[str] | None:
    """Names of a sample's features for the gallery: a window's value columns or the tabular feature columns;
    None for images and vector columns (a square vector is drawn as an image)."""
    if data_cfg.source == "timeseries":
        return list(data_cfg.value_columns)
    return list(data_cfg.feature_columns) if data_cfg.source == "parquet" and data_cfg.feature_columns else None


def log_run(
    tracking_uri: str,
    outcome: RunOutcome,
    sketch: ScoreSketch | None,
    bundle: ModelBundle,
    data_cfg: DataConfig,
    partition: str,
) -> None:
    """Metrics, the drift tag and the manifest on the scoring run, and under ``plots/`` the score histogram
    against the baseline and the gallery of the highest-scored rows."""
    tracking.log_metrics(tracking_uri, outcome.run_id, run_metrics(outcome, sketch, bundle.threshold), step=0)
    drifted = bool(outcome.drift and outcome.drift.drifted)
    tracking.set_tags(tracking_uri, outcome.run_id, {"aepipe.drift": str(drifted).lower()})
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "manifest.json").write_bytes(storage.read_bytes(storage.join(partition, publish.MANIFEST)))
        tracking.log_artifacts(tracking_uri, outcome.run_id, tmp, "scoring")
    with tempfile.TemporaryDirectory() as tmp:
        if sketch is not None and sketch.n:
            plot_scores(sketch, bundle.calibration, Path(tmp) / "score_histogram.png")
        if len(outcome.top):
            from pipelines.tracking.plots import render_top  # matplotlib: only once there is something to draw

            top, names = outcome.top, feature_names(data_cfg)
            render_top(bundle, top.ids, top.scores, top.x, names, tmp)
        if any(Path(tmp).iterdir()):
            tracking.log_artifacts(tracking_uri, outcome.run_id, tmp, "plots")


def plot_scores(sketch: ScoreSketch, calibration: dict[str, Any], path: Path) -> Path:
    """Fraction of scored rows vs validation baseline per bin (50 bins), with the anomaly threshold."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    q = np.asarray(calibration["baseline_quantiles"])
    lo, hi = sketch.quantile(np.asarray([0.005, 0.995]))
    lo, hi = min(lo, q[0]), max(hi, q[-1])
    grid = np.linspace(lo, hi, 51)
    scored = np.diff(np.interp(grid, sketch.edges, sketch.cdf()))
    base = np.diff(baseline_cdf(q, grid))
    fig = Figure(figsize=(7, 4), dpi=90)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.stairs(base, grid, label="validation baseline")
    ax.stairs(scored, grid, label=f"scored ({sketch.n} rows)")
    ax.axvline(calibration.get("threshold", hi), color="red", linestyle="--", label="anomaly threshold")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("fraction of rows")
    ax.set_title("scores of the rows this run scored vs the model's validation scores", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
