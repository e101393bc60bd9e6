"""Alias policy of the model registry: ``challenger`` follows each new version, ``champion`` moves only by
explicit promotion or by a configured gate (the challenger beats the champion on validation loss)."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines import tracking

CHAMPION, CHALLENGER = "champion", "challenger"
GATE_METRIC = "val_loss"


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate version may become champion, and why."""

    passed: bool
    reason: str


def version_metric(tracking_uri: str, name: str, version: str, metric: str = GATE_METRIC,
                   registry_uri: str | None = None) -> float | None:
    """The metric recorded on a version's tag, else on its source run (latest value)."""
    c = tracking.client(tracking_uri, registry_uri)
    mv = c.get_model_version(name, str(version))
    if metric in mv.tags:
        return float(mv.tags[metric])
    if mv.run_id:
        value = c.get_run(mv.run_id).data.metrics.get(metric)
        return None if value is None else float(value)
    return None


def gate(tracking_uri: str, name: str, candidate: str, margin: float, registry_uri: str | None = None) -> GateDecision:
    """Pass when there is no champion, or the candidate's val_loss <= champion's * (1 - margin)."""
    current = tracking.aliases(tracking_uri, name, registry_uri).get(CHAMPION)
    if current is None:
        return GateDecision(True, "no champion yet")
    if str(current) == str(candidate):
        return GateDecision(True, f"version {candidate} is already champion")
    cand = version_metric(tracking_uri, name, candidate, registry_uri=registry_uri)
    champ = version_metric(tracking_uri, name, str(current), registry_uri=registry_uri)
    if cand is None or champ is None:
        return GateDecision(False, f"{GATE_METRIC} missing on version {candidate if cand is None else current}")
    bar = champ * (1 - margin)
    verdict = cand <= bar
    return GateDecision(verdict, f"{GATE_METRIC} v{candidate}={cand:.6g} {'<=' if verdict else '>'} "
                                 f"v{current}={champ:.6g} x (1 - {margin:g}) = {bar:.6g}")


def promote(tracking_uri: str, name: str, version: str, alias: str = CHAMPION, *, force: bool = False,
            margin: float = 0.0, registry_uri: str | None = None) -> GateDecision:
    """Move ``alias`` to ``version``; for ``champion`` the gate must pass unless ``force``."""
    decision = GateDecision(True, "forced") if force or alias != CHAMPION else gate(
        tracking_uri, name, version, margin, registry_uri)
    if decision.passed:
        tracking.set_alias(tracking_uri, name, alias, version, registry_uri)
    return decision
