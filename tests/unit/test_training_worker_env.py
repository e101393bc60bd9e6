"""The training workers' environment: the malloc setting ``train.keep_freed_memory`` names."""

from __future__ import annotations

from pipelines.config import TrainConfig
from pipelines.train.driver import KEEP_FREED_MEMORY, worker_env


def test_worker_env_names_the_malloc_setting():
    assert worker_env(TrainConfig()) == {"GLIBC_TUNABLES": KEEP_FREED_MEMORY}
    assert worker_env(TrainConfig(keep_freed_memory=False)) == {}
