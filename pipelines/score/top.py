"""The highest-scored rows of a scoring run, found without passing the corpus through the driver.

Each scoring actor keeps the k highest scores it has seen (scores only) and hands back, in the summary of the data
file it wrote, just the rows that enter them, with their raw samples: about ``k * ln(rows / k)`` rows over an
actor's life for rows in random order, at most k per block. The driver merges these candidates into the run's k
highest-scored rows (:class:`TopRows`), which the scoring run's gallery draws.

Light on purpose (numpy, the standard library): it is imported by every scoring actor.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def pick(scores: np.ndarray, kept: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Which rows of a block enter the top ``k`` of the scores seen so far.

    Args:
        scores: the block's scores [B].
        kept: the top scores seen before the block [<= k], ascending.
        k: how many scores to keep.

    Returns:
        A mask [B] of the rows that enter (at most ``k``) and the updated top scores [<= k], ascending.
    """
    if k <= 0 or not len(scores):
        return np.zeros(len(scores), bool), kept
    merged = np.sort(np.concatenate([kept, scores.astype(np.float64)]))[-k:]
    floor = merged[0] if len(merged) == k else -np.inf
    entering = np.flatnonzero(scores >= floor)
    entering = entering[np.argsort(-scores[entering], kind="stable")[:k]]
    mask = np.zeros(len(scores), bool)
    mask[entering] = True
    return mask, merged


def encode(ids: np.ndarray, scores: np.ndarray, x: np.ndarray) -> str:
    """Candidate rows as JSON for a summary column: ``ids`` [n], ``scores`` [n], raw samples ``x`` [n, ...]
    (float32, base64); an empty string when n = 0."""
    if not len(ids):
        return ""
    flat = np.ascontiguousarray(np.asarray(x, np.float32).reshape(len(ids), -1))
    return json.dumps(
        {
            "id": np.asarray(ids).tolist(),
            "score": np.asarray(scores, np.float64).tolist(),
            "x": base64.b64encode(flat.tobytes()).decode("ascii"),
            "width": flat.shape[1],
        }
    )


@dataclass
class TopRows:
    """The ``k`` highest-scored rows among the candidates added: ``ids`` [n], ``scores`` [n] (descending, ties in
    id order) and raw flat samples ``x`` [n, D], n <= k."""

    k: int
    ids: list[Any] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    x: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def add(self, text: str) -> None:
        """Merge the candidates of one summary (:func:`encode` output; empty: none)."""
        if not text:
            return
        got = json.loads(text)
        x = np.frombuffer(base64.b64decode(got["x"]), np.float32).reshape(len(got["id"]), got["width"])
        ids = self.ids + got["id"]
        scores = np.concatenate([self.scores, np.asarray(got["score"], np.float64)])
        xs = np.concatenate([self.x, x]) if len(self.x) else x
        order = sorted(range(len(ids)), key=lambda i: (-scores[i], str(ids[i])))[: self.k]
        self.ids, self.scores, self.x = [ids[i] for i in order], scores[order], xs[order]

    def __len__(self) -> int:
        return len(self.ids)
