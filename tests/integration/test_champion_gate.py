"""The champion gate against a real SQLite MLflow registry: champion and challenger are compared on the same
held-out rows with the same figure (raw-space reconstruction MSE, each model through its own normalizer), not on
each version's own val_loss; both figures are logged on the new run; and two registrations racing for the
champion alias cannot both move it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aecore import build_model
from pipelines import tracking
from pipelines.bundle import ModelBundle, calibrate
from pipelines.config import TrackingConfig
from pipelines.data.normalize import Normalizer
from pipelines.tracking import promotion

NAME, EXPERIMENT, FEATURES = "gate-test", "gate", 6
ROWS = np.random.default_rng(1).random((64, FEATURES), dtype=np.float32)  # raw held-out rows in [0, 1)


@pytest.fixture()
def uri(tmp_path: Path):
    """A fresh SQLite tracking store and registry; the MLflow variables log_model sets are restored after."""
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    yield f"sqlite:///{tmp_path / 'mlflow.db'}"
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _bundle(scale: float) -> ModelBundle:
    """A tiny dense model; ``scale`` != 1 gives it a standard normalizer with that scale: its reconstructions
    (sigmoid outputs in [0, 1]) map back to raw values around ``scale / 2``, far from the raw rows."""
    model = build_model({"name": "dense", "input_shape": [FEATURES], "hidden": [4], "latent_dim": 2}, seed=0)
    normalizer = Normalizer("none") if scale == 1 else Normalizer("standard", [0.0] * FEATURES, [scale] * FEATURES)
    return ModelBundle(model, normalizer, calibrate(np.ones(4)), {})


def _register(uri: str, tmp: Path, bundle: ModelBundle, val_loss: float) -> tuple[str, str]:
    """A finished run logging ``val_loss`` and the bundle as a new version of NAME: (run id, version)."""
    run_id = tracking.start_run(uri, EXPERIMENT, f"v-{val_loss}", {}, tags={}, artifact_root=str(tmp / "art"))
    tracking.log_metrics(uri, run_id, {"val_loss": val_loss}, step=1)
    bundle_dir = bundle.save(tmp / run_id / tracking.BUNDLE_ARTIFACT)
    example = pd.DataFrame({"x": list(ROWS[:2].astype(np.float64))})
    version = tracking.log_model(uri, run_id, bundle_dir, example, NAME)
    assert version is not None
    return run_id, version


def _settings(auto_promote: bool) -> TrackingConfig:
    return TrackingConfig(registered_model=NAME, auto_promote=auto_promote)


def test_gate_compares_both_models_on_the_same_rows_not_their_own_val_loss(uri, tmp_path):
    bad = _bundle(scale=100.0)  # a low val_loss of its own, but a poor reconstruction of raw rows
    good = _bundle(scale=1.0)
    run1, v1 = _register(uri, tmp_path, bad, val_loss=0.01)
    first = promotion.register_version(
        uri, _settings(False), v1, {"val_loss": 0.01}, bundle=bad, held_out=ROWS, run_id=run1
    )
    assert first.passed and first.reason == "no champion yet" and promotion.champion_version(uri, NAME) == v1

    run2, v2 = _register(uri, tmp_path, good, val_loss=0.5)
    decision = promotion.register_version(
        uri, _settings(True), v2, {"val_loss": 0.5}, bundle=good, held_out=ROWS, run_id=run2
    )
    expected = {
        "gate_challenger_score": promotion.held_out_score(good, ROWS),
        "gate_champion_score": promotion.held_out_score(bad, ROWS),
    }
    assert decision.passed, decision.reason  # 0.5 > 0.01 on val_loss, yet far better on the same raw rows
    assert expected["gate_challenger_score"] < 1 < 100 < expected["gate_champion_score"]
    assert {k: str(v) for k, v in tracking.aliases(uri, NAME).items()} == {"champion": v2, "challenger": v2}
    logged = tracking.client(uri).get_run(run2).data.metrics
    assert {k: logged[k] for k in expected} == pytest.approx(expected)
    assert f"champion v{v1}=" in decision.reason and "held-out rows" in decision.reason

    # the reverse comparison refuses, and an explicit promotion reuses the recorded comparison
    run3, v3 = _register(uri, tmp_path, bad, val_loss=0.001)
    refused = promotion.register_version(
        uri, _settings(True), v3, {"val_loss": 0.001}, bundle=bad, held_out=ROWS, run_id=run3
    )
    assert not refused.passed and promotion.champion_version(uri, NAME) == v2
    assert not promotion.promote(uri, NAME, v3).passed
    assert promotion.promote(uri, NAME, v3, margin=0.0, force=True).passed
    assert promotion.champion_version(uri, NAME) == v3


def _race(targets: list) -> list:
    """Run each zero-argument callable in its own thread, released together; their results in order."""
    barrier = threading.Barrier(len(targets))
    results: list = [None] * len(targets)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = targets[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_registrations_racing_cannot_both_become_champion(uri, tmp_path):
    bad, good = _bundle(scale=100.0), _bundle(scale=1.0)
    run1, v1 = _register(uri, tmp_path, bad, val_loss=0.1)
    promotion.register_version(uri, _settings(False), v1, {}, bundle=bad, held_out=ROWS, run_id=run1)
    for _ in range(3):
        tracking.set_alias(uri, NAME, promotion.CHAMPION, v1)
        a, b = (_register(uri, tmp_path, good, val_loss=0.2) for _ in range(2))
        # whole registrations (gate, then compare-and-set) at once: both pass the gate against v1
        decisions = _race(
            [
                lambda r=r: promotion.register_version(
                    uri, _settings(True), r[1], {}, bundle=good, held_out=ROWS, run_id=r[0]
                )
                for r in (a, b)
            ]
        )
        winners = [v for (_, v), d in zip((a, b), decisions, strict=True) if d.passed]
        assert len(winners) <= 1, [d.reason for d in decisions]
        assert promotion.champion_version(uri, NAME) == (winners[0] if winners else v1)
        # the compare-and-set alone, both claims written at once
        tracking.set_alias(uri, NAME, promotion.CHAMPION, v1)
        moves = _race([lambda v=v: promotion.move_champion(uri, NAME, v, v1) for _, v in (a, b)])
        moved = [v for (_, v), (ok, _) in zip((a, b), moves, strict=True) if ok]
        assert len(moved) <= 1, moves
        assert promotion.champion_version(uri, NAME) == (moved[0] if moved else v1)
        assert not [k for k in tracking.model_tags(uri, NAME) if k.startswith(promotion.CLAIM_PREFIX)]
    # a promotion that starts after another finished finds the alias moved away from what it compared against
    tracking.set_alias(uri, NAME, promotion.CHAMPION, v1)
    assert promotion.move_champion(uri, NAME, a[1], v1) == (True, "")
    late = promotion.move_champion(uri, NAME, b[1], v1)
    assert late[0] is False and f"champion moved to v{a[1]}" in late[1]
