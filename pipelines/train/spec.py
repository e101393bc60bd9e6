"""The contract between the training driver and its workers: what every worker is handed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.bundle import Normalizer
from pipelines.config import JobConfig
from pipelines.data.components import PrincipalComponents


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a training worker needs besides its dataset shards (Ray ships it to each worker as
    ``train_loop_config["spec"]``)."""

    job: JobConfig
    """The resolved job config (model, data, train, tracking)."""
    normalizer: Normalizer
    """Fitted on the training split; saved into every checkpoint's bundle."""
    run_id: str
    """The MLflow run rank 0 logs to."""
    tracking_uri: str
    run_dir: str
    """This Ray Train run's folder under the checkpoint storage (local path or URI)."""
    keep_in_worker: bool
    """The splits are cached: each worker keeps its own rows (by shard key) instead of streaming them again."""
    records: int = 0
    """Good records in the corpus (training + validation rows): what ``train_rows_dropped`` is counted from."""
    progress: Any = None
    """The driver's progress queue (:class:`pipelines.train.feed.DriverFeed`) rank 0 sends to; None: no console."""
    principal: PrincipalComponents | None = None
    """The leading principal components of the training split the model starts at (``train.principal_start``);
    None: random initial weights."""

    def as_loop_config(self) -> dict[str, WorkerSpec]:
        """``TorchTrainer(train_loop_config=...)`` takes a dict."""
        return {"spec": self}
