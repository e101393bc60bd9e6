"""Alias policy of the model registry: ``challenger`` follows each new version, ``champion`` moves only by
explicit promotion or by a configured gate.

The gate compares champion and challenger on the same held-out rows with the same figure: the new run's
validation rows, scored by both models as the mean squared reconstruction error in the raw feature space (each
model normalizes the rows with its own normalizer, reconstructs them, and its reconstruction is mapped back
through that normalizer; see :func:`pipelines.bundle.raw_reconstruction_error`). Each version's own best
``val_loss`` is no basis: it is measured on that run's validation split, after that run's normalizer, and in its
family's own loss (BCE, MSE, plus penalties or a KL term), so two versions' values mean different things. The
anomaly score has the same flaw across families (a VAE's score is not a dense AE's). The raw-space MSE of the
reconstruction is defined for every family, does not depend on either normalizer, and is what both models are
asked to do well on the same rows. It is not each model's own anomaly threshold; a model trained to detect
anomalies by another criterion (a KL term) is still judged by how well it reconstructs normal held-out rows.

Moving ``champion`` is a compare-and-set (:func:`move_champion`): it happens only while the alias still points at
the version the gate compared against, under a claim that two promotions running at once cannot both hold.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipelines.bundle import ModelBundle, accepts_shape, raw_reconstruction_error
from pipelines.config import TrackingConfig
from pipelines.tracking import mlflow_client as tracking

CHAMPION, CHALLENGER = "champion", "challenger"
GATE_METRIC = "val_loss"
CHALLENGER_SCORE, CHAMPION_SCORE, COMPARED_WITH = "gate_challenger_score", "gate_champion_score", "gate_champion"
CLAIM_PREFIX = "aepipe.champion_claim."
CLAIM_TTL_S = 600.0
"""A claim older than this is left by a process that died while promoting, and is ignored."""


@dataclass(frozen=True)
class GateDecision:
    """Whether a candidate version may become champion, why, and the figures compared (lower is better)."""

    passed: bool
    reason: str
    challenger_score: float | None = None
    champion_score: float | None = None
    champion: str | None = None
    """The champion version the candidate was compared against (None: there was none)."""

    def figures(self) -> dict[str, float]:
        """The compared figures as metrics (``gate_challenger_score``, ``gate_champion_score``)."""
        pairs = ((CHALLENGER_SCORE, self.challenger_score), (CHAMPION_SCORE, self.champion_score))
        return {k: float(v) for k, v in pairs if v is not None}


def champion_version(tracking_uri: str, name: str, registry_uri: str | None = None) -> str | None:
    """The version ``champion`` points at now (a string), or None."""
    current = tracking.aliases(tracking_uri, name, registry_uri).get(CHAMPION)
    return None if current is None else str(current)


def held_out_score(bundle: ModelBundle, rows: np.ndarray) -> float:
    """A model's gate figure on raw held-out rows ``[N, ...]``: its mean raw-space reconstruction MSE."""
    return float(raw_reconstruction_error(bundle, rows).mean())


def gate(
    challenger: ModelBundle, champion: ModelBundle | None, champion_version: str | None, rows: np.ndarray, margin: float
) -> GateDecision:
    """Pass when there is no champion, or the challenger's held-out score on ``rows`` ``[N, ...]`` (raw rows) is
    <= the champion's on the same rows x (1 - margin). No MLflow here: the caller loads both bundles."""
    if len(rows) == 0:
        return GateDecision(champion is None, "no held-out rows to compare on", champion=champion_version)
    cand = held_out_score(challenger, rows)
    if champion is None or champion_version is None:
        return GateDecision(True, "no champion yet", cand)
    if not accepts_shape(tuple(np.shape(rows)[1:]), champion.input_shape):
        reason = f"champion v{champion_version} takes {champion.input_shape}, not rows of {np.shape(rows)[1:]}"
        return GateDecision(False, reason, cand, None, champion_version)
    champ = held_out_score(champion, rows)
    names = (f"{len(rows)}", "challenger", f"champion v{champion_version}")
    return _verdict(cand, champ, margin, names, champion_version)


def _verdict(cand: float, champ: float, margin: float, names: tuple[str, str, str], champion: str) -> GateDecision:
    """Pass when the challenger's held-out score ``cand`` <= the champion's ``champ`` x (1 - margin); ``names``:
    how the reason names the rows, the challenger and the champion."""
    rows, challenger, champion_name = names
    bar = champ * (1 - margin)
    verdict = cand <= bar
    reason = (
        f"raw-space reconstruction MSE on {rows} held-out rows: {challenger}={cand:.6g} "
        f"{'<=' if verdict else '>'} {champion_name}={champ:.6g} x (1 - {margin:g}) = {bar:.6g}"
    )
    return GateDecision(verdict, reason, cand, champ, champion)


def load_version(tracking_uri: str, name: str, version: str, registry_uri: str | None = None) -> ModelBundle:
    """A registered version's model bundle, downloaded from the registry."""
    resolved = tracking.resolve_model(tracking_uri, f"models:/{name}/{version}", registry_uri)
    with tempfile.TemporaryDirectory() as tmp:
        return ModelBundle.load(tracking.download_bundle(tracking_uri, resolved, tmp, registry_uri))


def move_champion(
    tracking_uri: str, name: str, version: str, expected: str | None, registry_uri: str | None = None
) -> tuple[bool, str]:
    """Compare-and-set: point ``champion`` at ``version`` only if it still points at ``expected`` (None: no
    champion). Returns (moved, why not).

    MLflow has no transaction, so the move runs under a claim: a registered-model tag written first, then every
    claim read, then the alias. A claimant that sees another live claim backs off, so of two promotions whose
    claims overlap the later writer always backs off (it reads the earlier claim) and at most one moves the alias;
    both may back off, and then neither moves it. A promotion that starts after another finished finds the alias
    moved away from its ``expected`` and backs off. The alias is read again after it is set. What is left open,
    honestly: this holds only among writers that use this protocol against one linearizable store (one SQL
    database behind MLflow); a move through the MLflow UI or ``--force`` is not excluded, and a promotion paused
    longer than ``CLAIM_TTL_S`` between its claim and its move can overlap a later one. A claim left by a process
    that died is ignored after ``CLAIM_TTL_S``.
    """
    key = f"{CLAIM_PREFIX}{version}"
    tracking.set_model_tag(tracking_uri, name, key, f"{time.time():.3f}", registry_uri)
    try:
        now = time.time()
        tags = tracking.model_tags(tracking_uri, name, registry_uri)
        rivals = sorted(k[len(CLAIM_PREFIX) :] for k, v in tags.items() if _live_claim(k, v, key, now))
        if rivals:
            return False, f"version(s) {', '.join(rivals)} were being promoted at the same time"
        current = champion_version(tracking_uri, name, registry_uri)
        if current != expected:
            return False, f"champion moved to v{current} after the gate compared against v{expected}"
        tracking.set_alias(tracking_uri, name, CHAMPION, version, registry_uri)
    finally:
        tracking.delete_model_tag(tracking_uri, name, key, registry_uri)
    after = champion_version(tracking_uri, name, registry_uri)
    return (True, "") if after == str(version) else (False, f"champion was moved to v{after} right after")


def _live_claim(key: str, value: str, own: str, now: float) -> bool:
    if not key.startswith(CLAIM_PREFIX) or key == own:
        return False
    try:
        return now - float(value) < CLAIM_TTL_S
    except ValueError:
        return False


def recorded_gate(
    tracking_uri: str, name: str, version: str, margin: float, registry_uri: str | None = None
) -> GateDecision:
    """The gate for an explicit promotion, which has no data of its own: the held-out figures the version's
    training run recorded (tags ``gate_*``), when they were measured against the current champion; otherwise
    the gate refuses (promote with ``--force``). No champion: passes."""
    current = champion_version(tracking_uri, name, registry_uri)
    if current is None:
        return GateDecision(True, "no champion yet")
    if str(current) == str(version):
        return GateDecision(True, f"version {version} is already champion", champion=current)
    tags = version_info(tracking_uri, name, version, registry_uri)["tags"]
    if tags.get(COMPARED_WITH) != str(current) or CHAMPION_SCORE not in tags:
        against = f"v{tags[COMPARED_WITH]}" if tags.get(COMPARED_WITH) else "no champion"
        reason = f"v{version} was compared on held-out rows with {against}, not with the current champion v{current}"
        return GateDecision(False, reason, champion=current)
    cand, champ = float(tags[CHALLENGER_SCORE]), float(tags[CHAMPION_SCORE])
    return _verdict(cand, champ, margin, (f"v{version}'s", f"v{version}", f"v{current}"), current)


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
    """Move ``alias`` to ``version``; ``champion`` moves only when :func:`recorded_gate` passes (unless ``force``)
    and by compare-and-set against the champion it was compared with."""
    version_info(tracking_uri, name, version, registry_uri)  # a clear error for an unknown name/version
    if force or alias != CHAMPION:
        tracking.set_alias(tracking_uri, name, alias, version, registry_uri)
        return GateDecision(True, "forced" if alias == CHAMPION else f"alias {alias}")
    decision = recorded_gate(tracking_uri, name, version, margin, registry_uri)
    if decision.passed and decision.champion != str(version):
        moved, why = move_champion(tracking_uri, name, version, decision.champion, registry_uri)
        if not moved:
            return GateDecision(False, f"{decision.reason}; not moved: {why}", *_scores(decision))
    return decision


def _scores(d: GateDecision) -> tuple[float | None, float | None, str | None]:
    return d.challenger_score, d.champion_score, d.champion


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
    tracking_uri: str,
    settings: TrackingConfig,
    version: str,
    metrics: dict[str, Any],
    *,
    bundle: ModelBundle,
    held_out: np.ndarray,
    run_id: str,
) -> GateDecision:
    """The policy for a version a training run just registered: tag it with its metrics, move ``challenger``
    to it, gate it against the champion on the run's held-out rows ``held_out`` ``[N, ...]`` (raw), record both
    figures (version tags, and metrics on run ``run_id``), and move ``champion`` when the gate passes and it is
    the model's first version or ``tracking.auto_promote`` is set."""
    name, reg = settings.registered_model, settings.registry_uri
    tags = {k: v for k, v in metrics.items() if k == "epoch" or k.startswith(("train_", "val_"))}
    tracking.tag_version(tracking_uri, name, version, tags, reg)
    tracking.set_alias(tracking_uri, name, CHALLENGER, version, reg)
    decision = _gate_against_champion(tracking_uri, settings, bundle, held_out)
    gate_tags = {**decision.figures(), COMPARED_WITH: decision.champion or "", "gate_reason": decision.reason}
    tracking.tag_version(tracking_uri, name, version, gate_tags, reg)
    tracking.log_metrics(tracking_uri, run_id, decision.figures(), step=0)
    if decision.passed and (decision.champion is None or settings.auto_promote):
        moved, why = move_champion(tracking_uri, name, version, decision.champion, reg)
        if not moved:
            return GateDecision(False, f"{decision.reason}; not promoted: {why}", *_scores(decision))
    return decision


def _gate_against_champion(
    tracking_uri: str, settings: TrackingConfig, bundle: ModelBundle, held_out: np.ndarray
) -> GateDecision:
    """:func:`gate` against the current champion, downloaded from the registry (a champion that cannot be loaded
    refuses the gate rather than failing the finished run)."""
    name, reg = settings.registered_model, settings.registry_uri
    current = champion_version(tracking_uri, name, reg)
    try:
        champion = None if current is None else load_version(tracking_uri, name, current, reg)
    except (tracking.RegistryError, OSError, ValueError) as exc:
        return GateDecision(False, f"cannot load champion v{current}: {exc}", champion=current)
    return gate(bundle, champion, current, held_out, settings.promote_margin)
