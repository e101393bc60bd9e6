"""The history of a scores output: one summary per published partition, read from the manifests only (no rows).

``partition_history(OUTPUT)`` gives, per partition under ``OUTPUT`` (and ``OUTPUT`` itself when published),
a flat dict with the keys :data:`HISTORY_KEYS`; ``plot_history`` draws the anomaly rate and the drift PSI
per partition. ``OUTPUT`` is a string: a local path or a URI (``s3://...``).
"""

from __future__ import annotations

import io
from typing import Any

from pipelines import storage
from pipelines.score.publish import UnpublishedError, published_partitions, read_manifest

#: The keys of each history row (``aepipe scores history --json``), in table order.
HISTORY_KEYS = (
    "partition",
    "path",
    "model",
    "rows",
    "anomalies",
    "anomaly_rate",
    "psi",
    "drifted",
    "published_at",
    "plan",
)


def anomaly_count(manifest: dict[str, Any]) -> int | None:
    """Rows flagged anomalous, summed over the manifest's shards; None when a shard does not say (embed mode)."""
    counts = [s.get("anomalies") for s in manifest.get("shards", [])]
    if not counts or any(c is None for c in counts):
        return None
    return int(sum(counts))


def model_label(model: dict[str, Any] | None) -> str | None:
    """``NAME/VERSION`` of the manifest's model."""
    return None if not model else f"{model.get('name')}/{model.get('version')}"


def history_row(root: str, path: str) -> dict[str, Any]:
    """The summary of the published partition ``path`` under ``root``: its name relative to root (``.`` for
    root itself), model, rows, anomalies and their rate, drift PSI and alarm, publication time and plan."""
    manifest = read_manifest(path)
    rows = int(manifest.get("rows") or 0)
    anomalies = anomaly_count(manifest)
    drift = manifest.get("drift") or {}
    name = path[len(root) :].strip("/") or "."
    return {
        "partition": name,
        "path": path,
        "model": model_label(manifest.get("model")),
        "rows": rows,
        "anomalies": anomalies,
        "anomaly_rate": None if anomalies is None or not rows else anomalies / rows,
        "psi": drift.get("drift_psi"),
        "drifted": None if not drift else bool(drift.get("drift_alarm")),
        "published_at": manifest.get("published_at"),
        "plan": manifest.get("plan"),
    }


def partition_history(root: str) -> list[dict[str, Any]]:
    """One :func:`history_row` per published partition under ``root``, in partition-name order.

    Raises:
        UnpublishedError: ``root`` does not exist or holds no published partition.
    """
    root = storage.normalize(root)
    if not storage.is_dir(root):
        raise UnpublishedError(f"{root}: no such scores output")
    rows = [history_row(root, p) for p in published_partitions(root)]
    if not rows:
        raise UnpublishedError(f"{root}: no published partition (no _SUCCESS manifest in it or its sub-folders)")
    return rows


def plot_history(rows: list[dict[str, Any]], path: str) -> str:
    """Anomaly rate and drift PSI per partition as a PNG at ``path`` (local or a URI); a missing value is a gap."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [r["partition"] for r in rows]
    fig = Figure(figsize=(max(6, 0.5 * len(rows) + 3), 5), dpi=90)
    FigureCanvasAgg(fig)
    rate_ax, psi_ax = fig.subplots(2, 1, sharex=True)
    for ax, key, label in ((rate_ax, "anomaly_rate", "anomaly rate"), (psi_ax, "psi", "drift PSI")):
        values = [float("nan") if r[key] is None else r[key] for r in rows]
        ax.plot(range(len(rows)), values, marker="o")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    psi_ax.set_xticks(range(len(rows)), names, rotation=45, ha="right")
    psi_ax.set_xlabel("partition")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    storage.write_bytes(path, buffer.getvalue())
    return path
