"""Normalization statistics: fitted in one distributed pass over the training split, saved with the model
(:class:`pipelines.bundle.Normalizer`, which applies them)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipelines.bundle import Normalizer


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
    """Sufficient statistics of one batch ``[B, *shape]`` (B may be 0): count, sum, sum of squares, min, max.

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
        "min": reduce(lambda a, **kw: np.min(a, initial=np.inf, **kw)),
        "max": reduce(lambda a, **kw: np.max(a, initial=-np.inf, **kw)),
    }


def combine_moments(parts: list[dict[str, np.ndarray]], kind: str) -> Normalizer:
    """Merge per-batch moments into a :class:`Normalizer`; constant features get scale 1. Parts of no rows are
    passed over."""
    if kind == "none":
        return Normalizer("none")
    parts = [p for p in parts if p["count"] > 0]
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
