"""Scoring stage: stream a corpus through a pool of :class:`Scorer` actors and publish Parquet atomically.

The model URI is resolved to one fixed version on the driver before any work starts; every actor loads
that version once. Output rows: ``id, score, is_anomaly, embedding, model_name, model_version``.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pyarrow.parquet as pq
import ray.data
import torch
from pydantic import BaseModel, ConfigDict, Field

from pipelines import tracking
from pipelines.bundle import ModelBundle
from pipelines.config import DataConfig
from pipelines.data import load_dataset


class ScoreRequest(BaseModel):
    """One scoring job."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model_uri: str
    """models:/NAME@ALIAS, models:/NAME/VERSION or models:/NAME (latest)."""
    input_path: str
    """Corpus to score (read with the data settings the model was trained with)."""
    output_path: str
    """Directory the scored Parquet is published to."""
    tracking_uri: str
    registry_uri: str | None = None
    mode: Literal["score", "embed", "both"] = "both"
    """score: id, score, is_anomaly; embed: id, embedding; both: all columns."""
    batch_size: int = Field(default=1024, ge=1)
    concurrency: int = Field(default=1, ge=1)
    num_cpus: float = Field(default=1.0, gt=0)
    num_gpus: float = Field(default=0.0, ge=0)


class Scorer:
    """Ray Data actor: loads one pinned model version once, then scores batches of canonical rows."""

    def __init__(self, tracking_uri: str, registry_uri: str | None, name: str, version: str, mode: str):
        model = tracking.ResolvedModel(name, version, None, "")
        self.bundle = ModelBundle.load(tracking.download_bundle(tracking_uri, model, registry_uri=registry_uri))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.bundle.model.to(self.device)
        self.name, self.version, self.mode = name, version, mode

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.bundle.infer(batch["x"], self.device)
        n = len(batch["id"])
        rows: dict[str, np.ndarray] = {"id": batch["id"]}
        if self.mode in ("score", "both"):
            rows.update(score=out["score"], is_anomaly=out["is_anomaly"])
        if self.mode in ("embed", "both"):
            rows["embedding"] = out["embedding"]
        rows.update(model_name=np.full(n, self.name), model_version=np.full(n, self.version))
        return rows


@dataclass
class ScoreResult:
    """What a scoring job published."""

    output_path: str
    rows: int
    model: tracking.ResolvedModel
    seconds: float


def _verify(staging: Path, expected_rows: int) -> int:
    """Check the staged output: row count equals the input's, ids unique. Returns the row count."""
    table = pq.read_table(staging, columns=["id"])
    if table.num_rows != expected_rows:
        raise RuntimeError(f"{staging}: staged {table.num_rows} rows but the input has {expected_rows}")
    unique = len(table.column("id").unique())
    if unique != table.num_rows:
        raise RuntimeError(f"{staging}: {table.num_rows - unique} duplicate ids in the staged output")
    return table.num_rows


def _publish(staging: Path, final: Path) -> None:
    """Swap the verified staging directory into place (rename is atomic on one filesystem)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old)
    else:
        final.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(final)


def run_scoring(req: ScoreRequest, log: Callable[[str], None] = print) -> ScoreResult:
    """Driver: pin the model version, stream the corpus through the scorer pool, verify, publish."""
    t0 = time.perf_counter()
    model = tracking.resolve_model(req.tracking_uri, req.model_uri, req.registry_uri)
    log(f"scoring with {model.uri} (resolved from {req.model_uri})")
    bundle = ModelBundle.load(tracking.download_bundle(req.tracking_uri, model, registry_uri=req.registry_uri))
    corpus = load_dataset(DataConfig.model_validate(bundle.data_config), req.input_path)
    bundle.check_shape(corpus.sample_shape, req.input_path)

    ds = corpus.dataset.select_columns(["id", "x"])
    scored = ds.map_batches(
        Scorer,
        fn_constructor_kwargs={"tracking_uri": req.tracking_uri, "registry_uri": req.registry_uri,
                               "name": model.name, "version": model.version, "mode": req.mode},
        batch_size=req.batch_size, concurrency=req.concurrency, num_cpus=req.num_cpus, num_gpus=req.num_gpus,
    )
    final = Path(req.output_path)
    staging = final.with_name(f".{final.name}.staging-{uuid.uuid4().hex[:8]}")
    scored.write_parquet(str(staging))
    expected = ds.count()
    rows = _verify(staging, expected)
    _publish(staging, final)
    return ScoreResult(str(final), rows, model, time.perf_counter() - t0)
