"""What a trial is judged by: reconstruction MSE on the shared validation rows, and, where the corpus is labelled,
the AUROC and average precision of the anomaly score on the labelled validation rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipelines.config import ConfigError, TuneMetric
from pipelines.labelled import anomalous_label


def anomalous(labels: np.ndarray, declared: Sequence[Any] | None) -> np.ndarray | None:
    """``[N]`` bool: which rows of ``labels`` ``[N]`` (None / NaN = unlabelled, left out by the caller) are
    anomalous: those whose label is in ``declared``, else with exactly two label values the one named like an
    anomaly (:func:`pipelines.labelled.anomalous_label`), else the rarer. None when that cannot be told (not two
    values, or declared labels of which no row has one)."""
    names = np.array([str(v).lower() for v in labels])
    if declared is not None:
        marked = np.isin(names, [str(v).lower() for v in declared])
        return marked if marked.any() and not marked.all() else None
    values, counts = np.unique(names, return_counts=True)
    positive = anomalous_label(dict(zip(values.tolist(), counts.tolist(), strict=True)))
    return None if positive is None else names == positive


def labelled_rows(labels: np.ndarray | None) -> np.ndarray | None:
    """``[N]`` bool: the rows with a label (not None, not NaN); None when there is no label column."""
    if labels is None:
        return None
    return np.array([v is not None and not (isinstance(v, float) and np.isnan(v)) for v in labels], dtype=bool)


def ranking_metrics(scores: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    """``val_auroc`` and ``val_ap`` of ``scores`` ``[N]`` (higher = more anomalous) against ``positive`` ``[N]``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    return {
        "val_auroc": float(roc_auc_score(positive, scores)),
        "val_ap": float(average_precision_score(positive, scores)),
    }


def check_objective(metric: TuneMetric, positive: np.ndarray | None, source: str) -> None:
    """A labelled objective needs anomalous and normal labelled validation rows.

    Raises:
        ConfigError: ``metric`` is val_auroc or val_ap and ``positive`` is None.
    """
    if metric is not TuneMetric.val_mse and positive is None:
        raise ConfigError(
            f"{source}: tune.metric={metric.value} needs labelled validation rows of two kinds (data.label_column "
            "with two values, or tune.anomaly_labels naming the anomalous ones); use tune.metric=val_mse"
        )
