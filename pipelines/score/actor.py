"""The scoring actor, kept to numpy, torch and the bundle so that an actor starts without importing MLflow
or the driver's modules: the driver downloads the pinned model version once and ships its files (a few MB of
safetensors and JSON) to every actor through Ray's object store."""

from __future__ import annotations

import numpy as np
import ray
import torch

from pipelines.bundle import ModelBundle
from pipelines.score import top
from pipelines.score.output import SHARD, SUMMARY_COLUMNS, OutputSpec


class Scorer:
    """Ray Data actor: loads one model bundle once, scores blocks of canonical rows and writes them.

    Each block ``{"id" [B], "x" [B, *input_shape], SHARD [B]}`` is cut into forward passes of ``batch_size``
    rows that never span two input shards, so a row's score depends only on its own shard (a resumed run
    reproduces an uninterrupted one bit for bit). The scored rows go straight to the partition as data files
    (:meth:`OutputSpec.write`); the actor returns only their summaries, so no row passes through the driver
    but the few that enter the actor's highest scores, for the run's gallery (:mod:`pipelines.score.top`).
    """

    def __init__(
        self, bundle_files: dict[str, bytes] | ray.ObjectRef, batch_size: int, output: OutputSpec | None = None
    ):
        """``bundle_files``: :func:`pipelines.bundle.bundle_files` output, or a reference to it in the object
        store (one copy for the whole pool instead of one inside every actor's constructor arguments).
        ``output``: where the scored rows go; without it the scorer only infers (:meth:`infer`)."""
        files = ray.get(bundle_files) if isinstance(bundle_files, ray.ObjectRef) else bundle_files
        self.bundle = ModelBundle.from_files(files)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.bundle.model.to(self.device).eval()
        self.batch_size, self.output = batch_size, output
        self.top_scores = np.zeros(0)  # the highest scores this actor has seen, for the run's gallery

    def infer(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """``id``, SHARD, ``score`` [B], ``is_anomaly`` [B] and ``embedding`` [B, k] of a block."""
        shard = batch[SHARD]
        cuts = np.flatnonzero(np.diff(shard)) + 1
        parts = []
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(shard)], strict=True):
            parts += [
                self.bundle.infer(batch["x"][i : min(i + self.batch_size, hi)], self.device)
                for i in range(lo, hi, self.batch_size)
            ]
        out = {k: np.concatenate([p[k] for p in parts]) for k in ("score", "is_anomaly", "embedding")}
        return {"id": batch["id"], SHARD: shard, **out}

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if SHARD not in batch or not len(batch[SHARD]):  # an empty block (a shard without good rows)
            return {c: np.zeros(0, SUMMARY_COLUMNS[c]) for c in SUMMARY_COLUMNS}
        assert self.output is not None, "a scorer made without an output spec only infers"
        out = self.infer(batch)
        offered = None
        if self.output.top_k and "score" in self.output.schema.names:
            offered, self.top_scores = top.pick(out["score"], self.top_scores, self.output.top_k)
        labels = {"label": batch["label"]} if "label" in batch else {}
        return self.output.write({**out, "x": batch["x"], **labels}, offered)
