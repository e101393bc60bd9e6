"""The Ray settings aepipe runs with (:func:`jobs.runtime.ray_defaults`)."""

from __future__ import annotations

import os

import pytest

from jobs.runtime import LOCAL_RAY_DEFAULTS, RAY_DEFAULTS, ray_defaults

WATCHER = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


@pytest.fixture()
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in {**RAY_DEFAULTS, **LOCAL_RAY_DEFAULTS}:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_a_local_instance_runs_no_preemption_watcher(clean_env: pytest.MonkeyPatch):
    ray_defaults(local=True)
    assert os.environ[WATCHER] == "0"
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"


def test_a_cluster_keeps_ray_trains_preemption_watcher(clean_env: pytest.MonkeyPatch):
    ray_defaults()
    assert WATCHER not in os.environ  # spot nodes an autoscaler drains: Ray Train's default (on) stays
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.5"


def test_the_environment_wins_over_the_defaults(clean_env: pytest.MonkeyPatch):
    clean_env.setenv(WATCHER, "1")
    clean_env.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")
    ray_defaults(local=True)
    assert os.environ[WATCHER] == "1"
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "2"
