"""The rows behind the end-of-run pictures: a sample that ignores read order, every score counted per label,
extreme rows and rows of every label kept, and the AUROC read from the histogram."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from aecore import build_model
from pipelines.bundle import ModelBundle, Normalizer, calibrate
from pipelines.tracking.plot_rows import MAX_LABELS, ScoreSummary, _sample_mask, score_edges, summarize_batch


def _bundle(n: int = 300, dim: int = 12) -> tuple[ModelBundle, np.ndarray]:
    model = build_model({"name": "dense", "input_shape": [dim], "hidden": [8], "latent_dim": 2}).eval()
    x = np.random.default_rng(0).normal(size=(n, dim)).astype(np.float32)
    x[: n // 10] *= 4  # a tenth far out: the anomalous rows
    with torch.no_grad():
        scores = model.score(torch.from_numpy(x)).numpy()
    return ModelBundle(model, Normalizer("none"), calibrate(scores), {}), x


def _summary(
    bundle: ModelBundle, x: np.ndarray, labels: np.ndarray, blocks: int, fraction: float = 1.0
) -> ScoreSummary:
    ids = np.array([f"row-{i}" for i in range(len(x))])
    edges = score_edges(bundle.calibration)
    total = ScoreSummary(edges)
    for part in np.array_split(np.arange(len(x)), blocks):
        batch = {"id": ids[part], "x": x[part], "label": labels[part]}
        total.merge(summarize_batch(bundle, batch, edges, sample_fraction=fraction, seed=3))
    return total


def test_the_sample_ignores_read_order_and_is_about_the_asked_fraction():
    ids = np.array([f"id-{i}" for i in range(20_000)])
    mask = _sample_mask(ids, 0.05, seed=7)
    assert abs(mask.mean() - 0.05) < 0.01
    # the same ids are chosen whatever order or blocks they arrive in
    order = np.random.default_rng(1).permutation(len(ids))
    assert set(ids[order][_sample_mask(ids[order], 0.05, seed=7)]) == set(ids[mask])
    # spread over a sorted export: every tenth of the read order gets its share
    assert all(abs(part.mean() - 0.05) < 0.02 for part in np.array_split(mask, 10))
    assert set(ids[_sample_mask(ids, 0.05, seed=8)]) != set(ids[mask])


def test_every_row_is_counted_per_label_and_every_label_keeps_rows():
    bundle, x = _bundle()
    labels = np.repeat(np.arange(10), 30)  # sorted by label, like MNIST as shipped
    summary = _summary(bundle, x, labels, blocks=7, fraction=0.2)
    assert summary.total == 300
    sample = summary.sample_batch()
    assert 40 <= len(sample["id"]) <= 80 and set(sample["label"].tolist()) >= set(range(1, 9))
    assert {k: int(v.sum()) for k, v in summary.counts.items()} == {str(i): 30 for i in range(10)}
    assert sorted(summary.examples) == [str(i) for i in range(10)]
    assert all(len(rows) == 2 for rows in summary.examples.values())
    with torch.no_grad():
        scores = bundle.model.score(torch.from_numpy(x)).numpy()
    assert summary.best is not None and summary.worst is not None
    assert summary.best["score"] == pytest.approx(scores.min(), rel=1e-5)
    assert summary.worst["score"] == pytest.approx(scores.max(), rel=1e-5)


def test_binary_labels_give_the_auroc_of_the_score():
    bundle, x = _bundle()
    labels = np.array(["anomaly"] * 30 + ["normal"] * 270)
    summary = _summary(bundle, x, labels, blocks=3)
    with torch.no_grad():
        scores = bundle.model.score(torch.from_numpy(x)).numpy()
    assert summary.positive_label() == "anomaly"
    assert summary.auroc() == pytest.approx(roc_auc_score(labels == "anomaly", scores), abs=0.01)


def test_an_identifier_like_label_column_collapses_to_one_histogram():
    bundle, x = _bundle()
    labels = np.arange(300)  # one label per row: not a class
    summary = _summary(bundle, x, labels, blocks=4)
    assert list(summary.counts) == [""] and summary.examples == {} and summary.total == 300
    few = _summary(bundle, x, np.arange(300) % (MAX_LABELS + 5), blocks=30)  # each block sees few labels
    assert list(few.counts) == [""] and few.total == 300
