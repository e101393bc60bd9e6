"""What a scoring actor writes: scored rows as Parquet data files straight into the partition, and the small
per-file summary (rows, anomalies, score sketch, top-score candidates) it hands back to the driver instead of
the rows.

Light on purpose (numpy, pyarrow, the storage layer): it is imported by every scoring actor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.labelled import LabelledScores, sample_mask
from pipelines.score.drift import ScoreSketch
from pipelines.score.publish import data_file_name
from pipelines.score.top import encode

SHARD = "__shard"
#: Columns (and dtypes) of the summary rows the actors return, one row per data file written.
SUMMARY_COLUMNS: dict[str, type] = {
    SHARD: np.int32,
    "file": object,
    "rows": np.int64,
    "anomalies": np.int64,
    "sketch": object,
    "top": object,
    "labelled": object,  # LabelledScores.to_bytes()
}
#: Salt of the hash that samples the labelled rows when a run scores more than MAX_EXACT_ROWS of them.
LABEL_SALT = "aepipe-labelled"


def output_schema(mode: str, id_type: pa.DataType, embed_dim: int) -> pa.Schema:
    """Columns of a scored shard for ``mode``."""
    cols = [pa.field("id", id_type)]
    if mode in ("score", "both"):
        cols += [pa.field("score", pa.float32()), pa.field("is_anomaly", pa.bool_())]
    if mode in ("embed", "both"):
        cols += [pa.field("embedding", pa.list_(pa.float32(), embed_dim))]
    return pa.schema([*cols, pa.field("model_name", pa.string()), pa.field("model_version", pa.string())])


@dataclass(frozen=True)
class OutputSpec:
    """Where and how the actors of one scoring run write: the partition, the run's attempt token, the output
    schema, the model's name and version (columns of every row), the shard names by index, the sketch edges
    (None in ``embed`` mode), how many highest-scored rows the run's gallery shows (0: none) and the fraction of
    labelled rows kept for the labelled metrics."""

    partition: str
    attempt: str
    schema: pa.Schema
    model_name: str
    model_version: str
    shard_names: tuple[str, ...]
    edges: tuple[float, ...] | None
    top_k: int = 0
    label_fraction: float = 1.0
    """Fraction of the labelled rows (by a hash of the id) whose score and label the summaries carry."""

    def table(self, out: dict[str, np.ndarray], sel: np.ndarray) -> pa.Table:
        """The rows of a scored batch that ``sel`` [B] picks, as an output table."""
        cols: dict[str, Any] = {"id": pa.array(out["id"][sel]).cast(self.schema.field("id").type)}
        n = int(sel.sum())
        if "score" in self.schema.names:
            cols["score"] = pa.array(out["score"][sel].astype(np.float32))
            cols["is_anomaly"] = pa.array(out["is_anomaly"][sel].astype(bool))
        if "embedding" in self.schema.names:
            emb = np.ascontiguousarray(out["embedding"][sel], np.float32)
            cols["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
        cols["model_name"] = pa.array([self.model_name] * n, pa.string())
        cols["model_version"] = pa.array([self.model_version] * n, pa.string())
        return pa.table(cols, schema=self.schema)

    def write(self, out: dict[str, np.ndarray], top: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Write a scored block (``id``, SHARD, ``score``, ``is_anomaly``, ``embedding``, ``label``?; [B] each) as
        one data file per shard it holds; returns one summary row per file written. ``top`` [B] marks the rows
        offered to the gallery (:func:`pipelines.score.top.pick`), whose raw samples ``out["x"]`` the summary
        carries; with labels, the summary carries the file's (score, label) pairs (:mod:`pipelines.labelled`)."""
        rows: list[tuple[int, str, int, int, str, str, bytes]] = []
        tags = out[SHARD]
        for shard in np.unique(tags).tolist():
            sel = tags == shard
            name = data_file_name(self.shard_names[shard], self.attempt)
            with storage.open_output(storage.join(self.partition, name)) as fh:
                pq.write_table(self.table(out, sel), fh)
            sketch, anomalies = "", 0
            if self.edges is not None:
                sketch = json.dumps(ScoreSketch.empty(np.asarray(self.edges)).add(out["score"][sel]).to_dict())
                anomalies = int(out["is_anomaly"][sel].sum())
            offered = sel & top if top is not None else np.zeros(0, bool)
            candidates = encode(out["id"][offered], out["score"][offered], out["x"][offered]) if offered.any() else ""
            labelled = b""
            if self.edges is not None and "label" in out:
                keep = sample_mask(out["id"][sel], self.label_fraction, LABEL_SALT)
                labelled = LabelledScores.of(out["score"][sel], out["label"][sel], keep).to_bytes()
            rows.append((shard, name, int(sel.sum()), anomalies, sketch, candidates, labelled))
        return {c: np.asarray([r[k] for r in rows], t) for k, (c, t) in enumerate(SUMMARY_COLUMNS.items())}
