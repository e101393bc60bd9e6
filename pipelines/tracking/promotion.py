"""Alias policy of the model registry: ``challenger`` follows each new version, ``champion`` moves only by
explicit promotion or by a configured gate (the challenger beats the champion on validation loss)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipelines.config import TrackingConfig
from pipelines.tracking import mlflow_client as tracking

CHAMPION, CHALLENGER = "champion", "challenger"
GATE_METRIC = "val_loss"


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate version may become champion, and why."""

    passed: bool
    reason: str


def version_metric(
    tracking_uri: str, name: str, version: str, metric: str = GATE_METRIC, registry_uri: str | None = None
) -> float | None:
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
    return GateDecision(
        verdict,
        f"{GATE_METRIC} v{candidate}={cand:.6g} {'<=' if verdict else '>'} "
        f"v{current}={champ:.6g} x (1 - {margin:g}) = {bar:.6g}",
    )


def promote(
    tracking_uri: str,
    name: str,
    version: str,
    alias: str = CHAMPION,
    *,
    force: bool = False,
    margin: float = 0.0,
    registry_uri: str | None = None,
) -> GateDecision:
    """Move ``alias`` to ``version``; for ``champion`` the gate must pass unless ``force``."""
    version_info(tracking_uri, name, version, registry_uri)  # a clear error for an unknown name/version
    decision = (
        GateDecision(True, "forced")
        if force or alias != CHAMPION
        else gate(tracking_uri, name, version, margin, registry_uri)
    )
    if decision.passed:
        tracking.set_alias(tracking_uri, name, alias, version, registry_uri)
    return decision


def version_info(tracking_uri: str, name: str, version: str, registry_uri: str | None = None) -> dict[str, Any]:
    """One version as :func:`pipelines.tracking.model_versions` describes it; :class:`RegistryError` if absent."""
    versions = {v["version"]: v for v in tracking.model_versions(tracking_uri, name, registry_uri)}
    if str(version) not in versions:
        known = ", ".join(sorted(versions, key=int)) or "none"
        raise tracking.RegistryError(f"registered model {name!r} has no version {version} (versions: {known})")
    return versions[str(version)]


def version_metrics(info: dict[str, Any]) -> dict[str, float]:
    """A version's metrics: its source run's latest values, with the gate metric's tag (if any) on top."""
    metrics = {k: float(v) for k, v in info["metrics"].items()}
    if GATE_METRIC in info["tags"]:
        metrics[GATE_METRIC] = float(info["tags"][GATE_METRIC])
    return metrics


def compare(
    tracking_uri: str, name: str, a: str, b: str, registry_uri: str | None = None
) -> list[tuple[str, float | None, float | None]]:
    """``[(metric, value of a, value of b), ...]`` over the union of both versions' metrics, sorted by name."""
    ma = version_metrics(version_info(tracking_uri, name, a, registry_uri))
    mb = version_metrics(version_info(tracking_uri, name, b, registry_uri))
    return [(k, ma.get(k), mb.get(k)) for k in sorted(set(ma) | set(mb))]


def register_version(
    tracking_uri: str, settings: TrackingConfig, version: str, metrics: dict[str, Any]
) -> GateDecision:
    """The policy for a version a training run just registered: tag it with its metrics, move ``challenger``
    to it, and ``champion`` when the gate passes and it is the model's first version or
    ``tracking.auto_promote`` is set."""
    name, reg = settings.registered_model, settings.registry_uri
    tags = {k: v for k, v in metrics.items() if k == "epoch" or k.startswith(("train_", "val_"))}
    tracking.tag_version(tracking_uri, name, version, tags, reg)
    first = CHAMPION not in tracking.aliases(tracking_uri, name, reg)
    promote(tracking_uri, name, version, CHALLENGER, registry_uri=reg)
    decision = gate(tracking_uri, name, version, settings.promote_margin, reg)
    if decision.passed and (first or settings.auto_promote):
        promote(tracking_uri, name, version, CHAMPION, force=True, registry_uri=reg)
    return decision
