"""The rows behind the end-of-run pictures, chosen so that they represent the validation split whatever its
read order (corpora exported sorted by class, date or customer are common).

:func:`summarize_scores` makes one pass over the split in a Ray Data actor that histograms every row's score
per label, keeps the best and worst reconstructed rows and a couple of rows of every label, and draws a seeded
uniform sample of the whole split by a salted hash of the id (the same rows for any shard layout or worker
count, about ``n`` of them), and keeps every labelled row's score and label for the labelled metrics
(:mod:`pipelines.labelled`). Only these small per-block summaries reach the driver, never the split's rows,
except for a small split (:data:`IN_PROCESS_ROWS`), which the driver summarizes itself, a batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import ray
import ray.data

from pipelines.bundle import ModelBundle
from pipelines.labelled import MAX_EXACT_ROWS, MAX_LABELS, LabelledScores, anomalous_label, label_strings, sample_mask

#: Rows of each label kept for the reconstructions and the code map.
PER_LABEL = 2
#: Histogram resolution (the AUROC of binary labels is read from it; the picture shows coarser bins).
BINS = 1000
#: A validation split of at most this many rows is summarized in the calling process (the driver, which has the
#: model's code loaded), a batch at a time: starting the actor, a process that imports torch, took seconds of every
#: training run's fixed cost, scoring that many rows here a fraction of one (bench/train_overhead.py).
IN_PROCESS_ROWS = 20_000

Row = dict[str, Any]
"""One validation row: ``id``, ``x`` (raw, ``input_shape``), ``score`` and ``label`` (None without labels)."""


def _sample_mask(ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """True for about ``fraction`` of the ids, chosen by a hash salted with ``seed`` (not the split's hash)."""
    return sample_mask(ids, fraction, f"aepipe-plot{seed % 100_000:05d}")


@dataclass
class ScoreSummary:
    """Every validation score, histogrammed per label, with the extreme rows and a few rows per label."""

    edges: np.ndarray
    """Bin edges ``[BINS + 1]``."""
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    """Label (``""`` without labels) -> rows per bin ``[BINS]``."""
    best: Row | None = None
    worst: Row | None = None
    examples: dict[str, list[Row]] = field(default_factory=dict)
    """Up to :data:`PER_LABEL` rows of each label (empty without labels or with too many labels)."""
    sample: list[Row] = field(default_factory=list)
    """The uniform sample's rows."""
    labelled: LabelledScores = field(default_factory=LabelledScores)
    """Every labelled row's score and label (a uniform sample above :data:`pipelines.labelled.MAX_EXACT_ROWS`)."""

    @property
    def total(self) -> int:
        return int(sum(c.sum() for c in self.counts.values()))

    def sample_batch(self) -> dict[str, np.ndarray]:
        """The sample as a batch: ``id`` [N], ``x`` [N, ...] and ``label`` [N] when there are labels."""
        rows = self.sample or [r for r in (self.best, self.worst) if r is not None]  # a tiny split may sample none
        if not rows:
            return {}
        batch = {"id": np.array([r["id"] for r in rows]), "x": np.stack([r["x"] for r in rows])}
        if rows[0]["label"] is not None:
            batch["label"] = np.array([r["label"] for r in rows])
        return batch

    @property
    def labels(self) -> list[str]:
        return sorted(k for k in self.counts if k != "")

    def collapse_labels(self) -> None:
        """Treat the label column as an identifier: one histogram, no per-label rows."""
        self.counts = {"": np.sum(list(self.counts.values()), axis=0)} if self.counts else {}
        self.examples = {}

    def merge(self, other: ScoreSummary) -> None:
        """Add another block's summary (in place)."""
        for label, counts in other.counts.items():
            previous = self.counts.get(label)
            self.counts[label] = counts if previous is None else previous + counts
        # too many labels overall, or a block that had too many: no per-label pictures
        if len(self.counts) > MAX_LABELS or ("" in self.counts and len(self.counts) > 1):
            self.collapse_labels()
        if other.best is not None and (self.best is None or other.best["score"] < self.best["score"]):
            self.best = other.best
        if other.worst is not None and (self.worst is None or other.worst["score"] > self.worst["score"]):
            self.worst = other.worst
        self.sample += other.sample
        self.labelled.merge(other.labelled)
        for label, rows in other.examples.items():
            if label in self.counts:  # not collapsed
                kept = self.examples.setdefault(label, [])
                kept += rows[: PER_LABEL - len(kept)]

    def positive_label(self) -> str | None:
        """With exactly two labels, the anomalous one (:func:`pipelines.labelled.anomalous_label`)."""
        return anomalous_label({k: int(v.sum()) for k, v in self.counts.items()})

    def auroc(self) -> float | None:
        """AUROC of the score for binary labels, from the histogram (ties within a bin count half)."""
        pos = self.positive_label()
        if pos is None:
            return None
        p = self.counts[pos].astype(np.float64)
        q = np.sum([c for k, c in self.counts.items() if k != pos], axis=0).astype(np.float64)
        if p.sum() == 0 or q.sum() == 0:
            return None
        below = np.cumsum(q) - q  # negatives in lower bins
        return float((p * (below + 0.5 * q)).sum() / (p.sum() * q.sum()))


def row_at(batch: dict[str, np.ndarray], scores: np.ndarray, i: int) -> Row:
    """Row ``i`` of a batch of raw rows, with its score."""
    label = batch["label"][i] if "label" in batch else None
    return {"id": batch["id"][i], "x": np.asarray(batch["x"][i]), "score": float(scores[i]), "label": label}


def summarize_batch(
    bundle: ModelBundle,
    batch: dict[str, np.ndarray],
    edges: np.ndarray,
    sample_fraction: float = 1.0,
    seed: int = 0,
    label_fraction: float = 1.0,
) -> ScoreSummary:
    """The summary of one batch of raw validation rows (``id`` [B], ``x`` [B, ...], ``label`` [B]?), with the
    rows the seeded hash picks for the sample (``sample_fraction`` of them) and the scores and labels of
    ``label_fraction`` of the rows (another seeded hash) for the labelled metrics."""
    scores = bundle.infer(batch["x"])["score"].astype(np.float64)
    clipped = np.clip(scores, edges[0], edges[-1])
    labels = label_strings(batch["label"]) if "label" in batch else np.full(len(scores), "")
    summary = ScoreSummary(edges)
    if "label" in batch:
        keep = sample_mask(batch["id"], label_fraction, "aepipe-labelled")
        summary.labelled = LabelledScores.of(scores, batch["label"], keep)
    distinct = np.unique(labels)
    for label in distinct if len(distinct) <= MAX_LABELS else []:
        members = labels == label
        summary.counts[str(label)] = np.histogram(clipped[members], edges)[0]
        if label != "":
            summary.examples[str(label)] = [row_at(batch, scores, i) for i in np.flatnonzero(members)[:PER_LABEL]]
    if len(distinct) > MAX_LABELS:
        summary.counts[""] = np.histogram(clipped, edges)[0]
    summary.sample = [
        row_at(batch, scores, int(i)) for i in np.flatnonzero(_sample_mask(batch["id"], sample_fraction, seed))
    ]
    if len(scores):
        summary.best = row_at(batch, scores, int(np.argmin(scores)))
        summary.worst = row_at(batch, scores, int(np.argmax(scores)))
    return summary


class _Summarizer:
    """Ray Data actor: loads the bundle once, returns one :class:`ScoreSummary` per block."""

    def __init__(
        self,
        bundle_files: ray.ObjectRef[dict[str, bytes]],
        edges: np.ndarray,
        sample_fraction: float,
        seed: int,
        label_fraction: float,
    ) -> None:
        self.bundle = ModelBundle.from_files(ray.get(bundle_files))
        self.bundle.model.eval()
        self.edges, self.sample_fraction, self.seed, self.label_fraction = edges, sample_fraction, seed, label_fraction

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        summary = summarize_batch(self.bundle, batch, self.edges, self.sample_fraction, self.seed, self.label_fraction)
        return {"summary": np.array([summary], dtype=object)}


def score_edges(calibration: dict[str, Any]) -> np.ndarray:
    """Histogram edges ``[BINS + 1]`` over the validation scores' range (from the calibration's quantiles)."""
    quantiles = calibration["baseline_quantiles"]
    lo, hi = float(quantiles[0]), float(quantiles[-1])
    return np.linspace(lo, hi if hi > lo else lo + 1.0, BINS + 1)


def summarize_scores(
    val_rows: ray.data.Dataset, bundle_files: dict[str, bytes], calibration: dict[str, Any], *, n: int, seed: int
) -> ScoreSummary:
    """One pass over ``val_rows`` (raw rows with ``id``, ``x`` and maybe ``label``) with the trained bundle,
    sampling about ``n`` rows: in an actor, or here for a split of at most :data:`IN_PROCESS_ROWS` rows."""
    edges = score_edges(calibration)
    rows = max(int(calibration["val_count"]), 1)
    summarizer_kwargs: dict[str, Any] = {
        "bundle_files": ray.put(bundle_files),
        "edges": edges,
        "sample_fraction": min(1.0, n / rows),
        "seed": seed,
        "label_fraction": min(1.0, MAX_EXACT_ROWS / rows),
    }
    total = ScoreSummary(edges)
    if rows <= IN_PROCESS_ROWS:
        summarizer = _Summarizer(**summarizer_kwargs)
        for batch in val_rows.iter_batches(batch_size=1024, batch_format="numpy"):
            total.merge(summarizer(batch)["summary"][0])
        return total
    summaries = val_rows.map_batches(
        _Summarizer,
        fn_constructor_kwargs=summarizer_kwargs,
        batch_format="numpy",
        batch_size=1024,
        compute=ray.data.ActorPoolStrategy(size=1),
        num_cpus=1,
    )
    for batch in summaries.iter_batches(batch_size=None, batch_format="numpy"):
        for summary in batch["summary"]:
            total.merge(summary)
    return total
