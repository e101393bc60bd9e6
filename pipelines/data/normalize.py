"""Normalization statistics: fitted in one distributed pass over the training split, saved with the model."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np


@dataclass
class Normalizer:
    """``x -> (x - shift) / scale`` with statistics of shape [] (global) or ``input_shape`` (per feature, or
    per channel with each channel's value repeated)."""

    kind: str = "none"
    shift: list = None  # type: ignore[assignment]
    scale: list = None  # type: ignore[assignment]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalize a batch ``[B, *input_shape]`` (float32 out)."""
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "none":
            return x
        return (x - np.asarray(self.shift, np.float32)) / np.asarray(self.scale, np.float32)

    def invert_flat(self, x: np.ndarray) -> np.ndarray:
        """Undo :meth:`apply` on flat rows ``[B, D]`` (D = the number of values per sample, float32 out)."""
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "none":
            return x
        shift, scale = (np.asarray(v, np.float32).reshape(-1) for v in (self.shift, self.scale))
        return x * scale + shift

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        return cls(**json.loads(Path(path).read_text()))


def reduce_axes(ndim: int, scope: str) -> tuple[int, ...]:
    """Axes of a batch ``[B, *shape]`` (``ndim`` axes) that one statistic pools over.

    global: all; feature: the batch axis only; channel: all but the channel axis, which is axis 1 of an
    image batch ``[B, C, H, W]`` and the last axis otherwise (``[B, T, F]`` windows, ``[B, D]`` vectors).
    """
    if scope == "global":
        return tuple(range(ndim))
    if scope == "feature":
        return (0,)
    if scope == "channel":
        channel = 1 if ndim == 4 else ndim - 1
        return tuple(a for a in range(ndim) if a != channel)
    raise ValueError(f"unknown normalization scope {scope!r}; known: global, feature, channel")


def partial_moments(x: np.ndarray, scope: str) -> dict[str, np.ndarray]:
    """Sufficient statistics of one batch ``[B, *shape]``: count, sum, sum of squares, min, max.

    Global statistics are scalars; feature and channel ones have the sample's ``shape`` (a channel's
    statistic repeated over its positions), the layout a saved model bundle expects.
    """
    x = np.asarray(x, dtype=np.float64)
    axes = reduce_axes(x.ndim, scope)
    keep = scope != "global"

    def reduce(fn: Callable[..., np.ndarray]) -> np.ndarray:
        out = fn(x, axis=axes, keepdims=keep)
        return np.broadcast_to(out[0], x.shape[1:]).copy() if keep else out

    return {
        "count": np.array(np.prod([x.shape[a] for a in axes]), dtype=np.float64),
        "sum": reduce(np.sum),
        "sumsq": reduce(lambda a, **kw: np.square(a).sum(**kw)),
        "min": reduce(np.min),
        "max": reduce(np.max),
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
