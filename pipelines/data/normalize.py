"""Normalization statistics: fitted in one distributed pass over the training split, saved with the model."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class Normalizer:
    """``x -> (x - shift) / scale`` with statistics of shape [] (global) or ``input_shape`` (per feature)."""

    kind: str = "none"
    shift: list = None  # type: ignore[assignment]
    scale: list = None  # type: ignore[assignment]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalize a batch ``[B, *input_shape]`` (float32 out)."""
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "none":
            return x
        return (x - np.asarray(self.shift, np.float32)) / np.asarray(self.scale, np.float32)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> "Normalizer":
        return cls(**json.loads(Path(path).read_text()))


def partial_moments(x: np.ndarray, per_feature: bool) -> dict[str, np.ndarray]:
    """Sufficient statistics of one batch ``[B, *shape]``: count, sum, sum of squares, min, max."""
    x = np.asarray(x, dtype=np.float64)
    axis = 0 if per_feature else None
    return {
        "count": np.array(x.shape[0] if per_feature else x.size, dtype=np.float64),
        "sum": x.sum(axis=axis),
        "sumsq": np.square(x).sum(axis=axis),
        "min": x.min(axis=axis),
        "max": x.max(axis=axis),
    }


def combine_moments(parts: list[dict[str, np.ndarray]], kind: str) -> Normalizer:
    """Merge per-batch moments into a :class:`Normalizer`; constant features get scale 1."""
    if kind == "none":
        return Normalizer("none")
    if not parts:
        raise ValueError("cannot fit normalization on an empty training split")
    count = sum(p["count"] for p in parts)
    if kind == "minmax":
        lo = np.min([p["min"] for p in parts], axis=0)
        hi = np.max([p["max"] for p in parts], axis=0)
        shift, scale = lo, hi - lo
    elif kind == "standard":
        mean = sum(p["sum"] for p in parts) / count
        var = np.maximum(sum(p["sumsq"] for p in parts) / count - mean**2, 0.0)
        shift, scale = mean, np.sqrt(var)
    else:
        raise ValueError(f"unknown normalization {kind!r}; known: none, minmax, standard")
    scale = np.where(np.asarray(scale) > 1e-12, scale, 1.0)
    return Normalizer(kind, np.asarray(shift).tolist(), np.asarray(scale).tolist())
