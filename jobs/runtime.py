"""Process-level concerns of the jobs layer: environment defaults, Ray start-up, user-facing errors.

This is the only place that reads the environment: ``AEPIPE_HOME`` (default ``./.aepipe``),
``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI`` and ``RAY_ADDRESS``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Iterator

import typer
from rich.console import Console

from aecore import UnknownModelError
from pipelines.config import ConfigError, JobConfig, load_config
from pipelines.data import DataError
from pipelines.tracking import RegistryError

console = Console(stderr=True, soft_wrap=True)

#: Exceptions that are the user's input, shown as one clear line instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError, DataError, UnknownModelError, RegistryError, FileNotFoundError,
)


def home() -> Path:
    """The local state directory."""
    return Path(os.environ.get("AEPIPE_HOME", ".aepipe"))


def tracking_uri(explicit: str | None = None) -> str:
    """MLflow tracking URI: explicit, else ``MLFLOW_TRACKING_URI``, else SQLite under AEPIPE_HOME."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home().resolve() / 'mlflow.db'}"


def registry_uri(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("MLFLOW_REGISTRY_URI") or None


def job_config(path: str | None, overrides: list[str]) -> JobConfig:
    """Load a job config with the environment's defaults under the file and the overrides."""
    job = load_config(path, overrides, home=str(home()))
    tracking = job.tracking.model_copy(update={
        "tracking_uri": job.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"),
        "registry_uri": job.tracking.registry_uri or registry_uri(),
    })
    return job.model_copy(update={"tracking": tracking})


def _user_error(exc: BaseException) -> BaseException | None:
    """The first user-input error in an exception's chain (Ray wraps task errors several times)."""
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, USER_ERRORS):
            return e
        stack += [getattr(e, "cause", None), e.__cause__, e.__context__]
        stack += [f for f in getattr(e, "worker_failures", {}).values()] if isinstance(getattr(e, "worker_failures", None), dict) else []
    return None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn user-input errors (even wrapped by Ray) into ``error: ...`` and exit status 2."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is the user's input
        found = _user_error(exc)
        if found is None:
            raise
        message = str(found.args[0]) if isinstance(found, KeyError) and found.args else str(found)
        console.print(f"[bold red]error:[/] {message}", highlight=False)
        raise typer.Exit(2) from None


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Connect to ``address`` / ``RAY_ADDRESS``, else start a local Ray instance, for the block."""
    import ray

    target = address or os.environ.get("RAY_ADDRESS") or "local"
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    started = not ray.is_initialized()
    if started:
        ray.init(address=target, num_cpus=num_cpus if target == "local" else None,
                 include_dashboard=False, logging_level=logging.WARNING,
                 configure_logging=True)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def echo(message: str) -> None:
    print(message, file=sys.stdout, flush=True)
