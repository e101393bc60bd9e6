"""Drift of a score distribution against the validation baseline of a model (pure numpy).

The baseline is the bundle's ``calibration.json``: ``baseline_quantiles`` (101 quantiles of validation
scores, levels 0, 0.01, ..., 1) and ``val_count``. Scores are summarised by a mergeable
:class:`ScoreSketch` (counts on fixed edges derived from the baseline), so a whole corpus is checked
without holding its scores: each shard adds its counts, the driver sums them.

- PSI (population stability index) over ``bins`` equal-mass baseline bins (deciles by default):
  ``sum((a - e) * ln(a / e))`` with both fractions floored at ``eps``.
- KS: ``sup |F_n(t) - F_0(t)|`` where ``F_0`` is the baseline CDF (linear between its quantiles) and
  ``F_n`` the scored CDF, evaluated on the sketch's edges; asymptotic two-sample p-value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LEVELS = np.linspace(0.0, 1.0, 101)
"""Quantile levels of ``baseline_quantiles``."""


def baseline_cdf(quantiles: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Baseline CDF ``F_0(t)`` [T], linear between the 101 quantiles, 0 below the min and 1 above the max."""
    q = np.asarray(quantiles, np.float64)
    t = np.asarray(t, np.float64)
    # for tied quantiles take the largest level (the CDF is right-continuous)
    cdf = np.interp(t, q, LEVELS, left=0.0, right=1.0)
    return np.where(t >= q[-1], 1.0, cdf)


def psi_bins(quantiles: np.ndarray, bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Interior edges [bins-1] and expected fractions [bins] of ``bins`` equal-mass baseline bins.

    Bin ``k`` is ``(edge[k-1], edge[k]]`` with open outer bins. Tied edges are merged and their mass
    summed, so a baseline with many equal scores still gives valid fractions.
    """
    if 100 % bins:
        raise ValueError(f"bins must divide 100, got {bins}")
    q = np.asarray(quantiles, np.float64)
    idx = np.arange(100 // bins, 100, 100 // bins)
    edges: list[float] = []
    levels: list[float] = []
    for e, lv in zip(q[idx], LEVELS[idx], strict=True):
        if edges and e == edges[-1]:
            levels[-1] = lv
        else:
            edges.append(e)
            levels.append(lv)
    expected = np.diff(np.concatenate([[0.0], levels, [1.0]]))
    return np.asarray(edges), expected


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index of two fraction vectors [K] (each summing to 1)."""
    e = np.maximum(np.asarray(expected, np.float64), eps)
    a = np.maximum(np.asarray(actual, np.float64), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_pvalue(statistic: float, n: int, m: int) -> float:
    """Asymptotic two-sample Kolmogorov-Smirnov p-value ``Q(sqrt(nm/(n+m)) * D)``."""
    if n <= 0 or m <= 0:
        return 1.0
    lam = np.sqrt(n * m / (n + m)) * statistic
    if lam < 1e-3:
        return 1.0
    k = np.arange(1, 101)
    return float(np.clip(2.0 * np.sum((-1.0) ** (k - 1) * np.exp(-2.0 * k**2 * lam**2)), 0.0, 1.0))


def sketch_edges(quantiles: np.ndarray, inner: int = 1000, tail: int = 200) -> np.ndarray:
    """Sorted edges of a :class:`ScoreSketch` for a baseline: the 101 baseline quantiles, ``inner``
    uniform points over their range and ``tail`` geometric points on each side reaching 10^6 ranges out,
    so shifted scores still land in narrow bins."""
    q = np.asarray(quantiles, np.float64)
    lo, hi = float(q[0]), float(q[-1])
    span = max(hi - lo, abs(hi) * 1e-6, 1e-12)
    far = span * np.logspace(-3, 6, tail)
    return np.unique(np.concatenate([q, np.linspace(lo, hi, inner), lo - far, hi + far]))


@dataclass
class ScoreSketch:
    """Counts of scores on fixed ``edges`` [E]: ``counts[0]`` is ``<= edges[0]``, ``counts[k]`` is
    ``(edges[k-1], edges[k]]``, ``counts[E]`` is ``> edges[-1]``. Also the exact count, sum and sum of
    squares. Two sketches with the same edges merge by adding."""

    edges: np.ndarray
    counts: np.ndarray
    total: float = 0.0
    sumsq: float = 0.0

    @classmethod
    def empty(cls, edges: np.ndarray) -> ScoreSketch:
        return cls(np.asarray(edges, np.float64), np.zeros(len(edges) + 1, np.int64))

    @property
    def n(self) -> int:
        return int(self.counts.sum())

    def add(self, scores: np.ndarray) -> ScoreSketch:
        """Add a batch of scores [B] in place; returns self."""
        s = np.asarray(scores, np.float64).ravel()
        self.counts += np.bincount(np.searchsorted(self.edges, s, side="left"), minlength=len(self.counts))
        self.total += float(s.sum())
        self.sumsq += float(np.square(s).sum())
        return self

    def merge(self, other: ScoreSketch) -> ScoreSketch:
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("cannot merge score sketches with different edges")
        return ScoreSketch(self.edges, self.counts + other.counts, self.total + other.total, self.sumsq + other.sumsq)

    def cdf(self) -> np.ndarray:
        """Fraction of scores ``<= edges[k]`` for each edge [E]."""
        return np.cumsum(self.counts)[:-1] / max(self.n, 1)

    def mean(self) -> float:
        return self.total / max(self.n, 1)

    def quantile(self, levels: np.ndarray) -> np.ndarray:
        """Approximate quantiles [L]: linear within the bin holding each level (bin width resolution)."""
        cum = np.concatenate([[0.0], np.cumsum(self.counts) / max(self.n, 1)])
        # a bin's left edge: bin 0 and the overflow bin are clamped to the outermost edges
        left = np.concatenate([[self.edges[0]], self.edges])
        right = np.concatenate([self.edges, [self.edges[-1]]])
        out = []
        for lv in np.atleast_1d(levels):
            k = int(np.clip(np.searchsorted(cum, lv, side="left") - 1, 0, len(self.counts) - 1))
            width = cum[k + 1] - cum[k]
            frac = 0.0 if width <= 0 else (lv - cum[k]) / width
            out.append(left[k] + frac * (right[k] - left[k]))
        return np.asarray(out)

    def to_dict(self) -> dict:
        """JSON form (only the non-zero counts)."""
        nz = np.flatnonzero(self.counts)
        return {"bins": nz.tolist(), "counts": self.counts[nz].tolist(), "total": self.total, "sumsq": self.sumsq}

    @classmethod
    def from_dict(cls, edges: np.ndarray, d: dict) -> ScoreSketch:
        sk = cls.empty(edges)
        sk.counts[np.asarray(d["bins"], np.int64)] = np.asarray(d["counts"], np.int64)
        sk.total, sk.sumsq = float(d["total"]), float(d["sumsq"])
        return sk


@dataclass(frozen=True)
class DriftReport:
    """Drift of scored rows against the baseline; ``drifted`` when PSI or the KS test crosses its limit."""

    psi: float
    ks: float
    ks_pvalue: float
    mean_shift_std: float
    rows: int
    drifted: bool
    reason: str

    def metrics(self) -> dict[str, float]:
        return {
            "drift_psi": self.psi,
            "drift_ks": self.ks,
            "drift_ks_pvalue": self.ks_pvalue,
            "drift_mean_shift_std": self.mean_shift_std,
            "drift_alarm": float(self.drifted),
        }


def check_drift(
    sketch: ScoreSketch,
    calibration: dict,
    psi_limit: float = 0.2,
    ks_alpha: float = 1e-3,
    bins: int = 10,
    ks_min: float = 0.1,
) -> DriftReport:
    """Compare a sketch of scores with the bundle's calibration (``baseline_quantiles``, ``val_count``,
    ``val_mean``, ``val_std``). The KS test alarms only when the shift is both significant (p < ``ks_alpha``)
    and large enough to matter (statistic > ``ks_min``): on thousands of rows any tiny shift is significant."""
    q = np.asarray(calibration["baseline_quantiles"], np.float64)
    edges, expected = psi_bins(q, bins)
    # every PSI edge is a sketch edge, so bin counts add up exactly
    pos = np.searchsorted(sketch.edges, edges)
    if not np.array_equal(sketch.edges[np.minimum(pos, len(sketch.edges) - 1)], edges):
        raise ValueError("the sketch's edges were not built from this baseline")
    cum = np.concatenate([[0], np.cumsum(sketch.counts)])
    upto = np.concatenate([[0], cum[pos + 1], [cum[-1]]])
    actual = np.diff(upto) / max(sketch.n, 1)
    p = psi(expected, actual)
    ks = float(np.max(np.abs(sketch.cdf() - baseline_cdf(q, sketch.edges)))) if sketch.n else 0.0
    pv = ks_pvalue(ks, sketch.n, int(calibration.get("val_count", 0)))
    shift = (sketch.mean() - calibration["val_mean"]) / max(calibration["val_std"], 1e-12)
    reasons = []
    if p > psi_limit:
        reasons.append(f"PSI {p:.3f} > {psi_limit}")
    if pv < ks_alpha and ks > ks_min:
        reasons.append(f"KS {ks:.3f} > {ks_min} (p={pv:.2g} < alpha {ks_alpha})")
    return DriftReport(p, ks, pv, float(shift), sketch.n, bool(reasons), "; ".join(reasons) or "within limits")
