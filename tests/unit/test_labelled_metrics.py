"""Labelled metrics of the anomaly score: exact sklearn figures from pairs merged over blocks in any order, the
anomalous label found by name or rarity, none for labels that are not binary, and a uniform hashed sample."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from pipelines.labelled import MAX_LABELS, LabelledScores, anomalous_label, sample_mask


def _merged(scores: np.ndarray, labels: np.ndarray, blocks: int) -> LabelledScores:
    total = LabelledScores()
    for part in np.array_split(np.random.default_rng(1).permutation(len(scores)), blocks):
        # each block's pairs travel as bytes, as from a scoring actor
        total.merge(LabelledScores.from_bytes(LabelledScores.of(scores[part], labels[part]).to_bytes()))
    return total


def test_metrics_over_merged_blocks_equal_sklearn_on_every_row():
    rng = np.random.default_rng(0)
    truth = rng.random(1000) < 0.1
    scores = rng.normal(size=1000) + 1.5 * truth
    labels = np.where(truth, "anomaly", "normal")
    # blocks of 7 rows: some hold one label only, so codes are remapped as the label sets grow
    got = _merged(scores, labels, blocks=143).metrics(threshold=1.0, prefix="val_")
    assert got["val_auroc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-6)
    assert got["val_average_precision"] == pytest.approx(average_precision_score(truth, scores), abs=1e-6)
    assert got["val_f1"] == pytest.approx(f1_score(truth, scores > 1.0))
    assert got["val_labelled_rows"] == 1000 and got["val_anomalous_fraction"] == pytest.approx(truth.mean())


@pytest.mark.parametrize(
    ("labels", "anomalous"),
    [
        (np.array([True] * 10 + [False] * 90), True),
        (np.array([0] * 80 + [1] * 20), 1),
        (np.array(["fraud"] * 60 + ["ok"] * 40), "fraud"),  # named: even as the commoner label
        (np.array(["cat"] * 70 + ["dog"] * 30), "dog"),  # unnamed: the rarer one
    ],
)
def test_the_anomalous_label_is_named_or_the_rarer(labels, anomalous):
    scores = np.random.default_rng(0).permutation(len(labels)).astype(np.float32)
    expected = labels == anomalous
    got = LabelledScores.of(scores, labels).metrics(threshold=0.0)
    assert got["auroc"] == pytest.approx(roc_auc_score(expected, scores))


def test_labels_that_are_not_binary_give_no_metrics():
    scores = np.arange(30, dtype=np.float32)
    assert LabelledScores.of(scores, np.repeat(np.arange(10), 3)).metrics(0.5) == {}  # digits: which is anomalous?
    assert LabelledScores.of(scores, np.zeros(30, int)).metrics(0.5) == {}  # one class only
    wide = LabelledScores.of(np.zeros(MAX_LABELS + 1), np.arange(MAX_LABELS + 1))
    binary = LabelledScores.of(scores, np.arange(30) % 2)
    binary.merge(wide)  # an identifier column in one block is one everywhere
    assert binary.identifier and binary.metrics(0.5) == {} and len(binary) == 0
    assert LabelledScores.from_bytes(binary.to_bytes()).identifier and len(LabelledScores.from_bytes(b"")) == 0
    assert anomalous_label({"a": 3, "b": 1, "c": 1}) is None


def test_the_sample_is_the_asked_fraction_of_ids_whatever_their_order():
    ids = np.array([f"row-{i}" for i in range(20_000)])
    mask = sample_mask(ids, 0.1, "aepipe-labelled")
    assert abs(mask.mean() - 0.1) < 0.01
    order = np.random.default_rng(2).permutation(len(ids))
    assert set(ids[order][sample_mask(ids[order], 0.1, "aepipe-labelled")]) == set(ids[mask])
    assert sample_mask(ids, 1.0, "aepipe-labelled").all()
