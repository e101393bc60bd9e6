"""How well the anomaly score separates a binary label column: AUROC, average precision and F1 at the threshold.

A corpus carries labels in ``data.label_column`` (``label`` by default; ``is_anomaly`` for the synthetic corpora;
an image's folder). Metrics are computed only for exactly two distinct labels, the anomalous one being ``1`` /
``true`` or a name like ``anomaly``, else the rarer (:func:`anomalous_label`); a digit label (ten classes) gives
none. Each block of scored rows keeps its (score, label code) pairs, 5 bytes a row, and the driver merges
those, never the rows: exact up to :data:`MAX_EXACT_ROWS` labelled rows, beyond that a seeded uniform sample of
about that many rows by a hash of the id (:func:`sample_mask`), whose AUROC and AP differ from the exact ones
by about ``1 / sqrt(MAX_EXACT_ROWS)``.

Light on purpose (numpy, pandas): scoring actors import it; scikit-learn is imported where metrics are computed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

#: Labelled rows whose scores the driver collects exactly; above it, a uniform sample of about as many.
MAX_EXACT_ROWS = 2_000_000
#: Above this many distinct labels, a label column is an identifier: no labelled metrics.
MAX_LABELS = 20
#: Label names (lower case) that mark the anomalous class of a binary label column.
ANOMALOUS_NAMES = ("1", "1.0", "true", "anomaly", "anomalous", "abnormal", "outlier", "fraud")


def sample_mask(ids: np.ndarray, fraction: float, salt: str) -> np.ndarray:
    """True for about ``fraction`` of ``ids`` [N], chosen by a hash of the id salted with ``salt``: the same rows
    whatever the read order, the blocks or the worker count."""
    if fraction >= 1.0:
        return np.ones(len(ids), dtype=bool)
    key = f"{salt:16.16}"  # pandas wants a 16-character key
    hashed = pd.util.hash_pandas_object(pd.Series(ids).astype(str), index=False, hash_key=key).to_numpy()
    return (hashed % (1 << 32)) < int(fraction * (1 << 32))


def anomalous_label(counts: Mapping[str, int]) -> str | None:
    """With exactly two labels (``counts``: rows per label), the anomalous one: ``1``/``true``, a name like
    ``anomaly``, else the rarer; None otherwise."""
    labels = sorted(k for k in counts if k != "")
    if len(labels) != 2:
        return None
    for label in labels:
        if label.lower() in ANOMALOUS_NAMES:
            return label
    return min(labels, key=lambda k: counts[k])


def label_strings(labels: np.ndarray) -> np.ndarray:
    """Labels of any type as strings [N] (booleans as ``true``/``false``, so they read like the names above)."""
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return np.where(labels, "true", "false")
    return labels.astype(str)


@dataclass
class LabelledScores:
    """Scores ``[N]`` of labelled rows with their labels as codes ``[N]`` into ``names``; mergeable across blocks.
    ``identifier``: some block had more than :data:`MAX_LABELS` labels (the column is not a class)."""

    names: list[str] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    codes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))
    identifier: bool = False

    @classmethod
    def of(cls, scores: np.ndarray, labels: np.ndarray, keep: np.ndarray | None = None) -> LabelledScores:
        """The pairs of one block: ``scores`` [B], ``labels`` [B] of any type, ``keep`` [B] the sampled rows."""
        names, codes = np.unique(label_strings(labels), return_inverse=True)
        if len(names) > MAX_LABELS:
            return cls(identifier=True)
        sel = slice(None) if keep is None else keep
        return cls(names.tolist(), np.asarray(scores, np.float32)[sel], codes.reshape(-1).astype(np.int8)[sel])

    def __len__(self) -> int:
        return len(self.scores)

    def merge(self, other: LabelledScores) -> None:
        """Add another block's pairs (in place)."""
        self.identifier |= other.identifier
        names = sorted(set(self.names) | set(other.names))
        if self.identifier or len(names) > MAX_LABELS:
            self.identifier, self.names, self.scores, self.codes = True, [], self.scores[:0], self.codes[:0]
            return
        position = {name: i for i, name in enumerate(names)}
        remap = [np.array([position[n] for n in part.names], np.int8) for part in (self, other)]
        self.codes = np.concatenate([r[part.codes] for r, part in zip(remap, (self, other), strict=True)])
        self.scores = np.concatenate([self.scores, other.scores])
        self.names = names

    def to_bytes(self) -> bytes:
        """A compact encoding (a JSON header line, then the scores and codes), for Arrow columns of summaries."""
        header = json.dumps({"names": self.names, "identifier": self.identifier, "n": len(self)}).encode()
        return b"\n".join([header, self.scores.astype(np.float32).tobytes() + self.codes.astype(np.int8).tobytes()])

    @classmethod
    def from_bytes(cls, data: bytes) -> LabelledScores:
        """The pairs :meth:`to_bytes` encoded (empty bytes: none)."""
        if not data:
            return cls()
        header, body = data.split(b"\n", 1)
        meta = json.loads(header)
        n = int(meta["n"])
        scores = np.frombuffer(body[: 4 * n], np.float32).copy()
        codes = np.frombuffer(body[4 * n :], np.int8).copy()
        return cls(list(meta["names"]), scores, codes, bool(meta["identifier"]))

    def counts(self) -> dict[str, int]:
        """Rows per label."""
        return dict(zip(self.names, np.bincount(self.codes, minlength=len(self.names)).tolist(), strict=True))

    def metrics(self, threshold: float, prefix: str = "") -> dict[str, float]:
        """``auroc``, ``average_precision``, ``f1`` (of ``score > threshold``), ``labelled_rows`` and
        ``anomalous_fraction`` (each name after ``prefix``) for a binary label; empty otherwise."""
        positive = None if self.identifier else anomalous_label(self.counts())
        if positive is None:
            return {}
        from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

        truth = self.codes == self.names.index(positive)
        values = {
            "auroc": roc_auc_score(truth, self.scores),
            "average_precision": average_precision_score(truth, self.scores),
            "f1": f1_score(truth, self.scores > threshold, zero_division=0.0),
            "labelled_rows": len(truth),
            "anomalous_fraction": truth.mean(),
        }
        return {f"{prefix}{k}": float(v) for k, v in values.items()}
