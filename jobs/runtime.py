"""Process-level concerns of the jobs layer: environment defaults, Ray start-up, user-facing errors.

This is the only place that reads the environment: ``AEPIPE_HOME`` (default ``./.aepipe``),
``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``, ``RAY_ADDRESS`` and ``AEPIPE_GIT_COMMIT`` (the code's commit
where git cannot tell, set by ``aepipe submit``); ``AEPIPE_CREDENTIALS_FILE`` (an INI
file like ``~/.mlflow/credentials``) fills ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, which
MLflow reads itself. Credentials never travel inside a URI, a config or a log line.
"""

from __future__ import annotations

import configparser
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import typer

from jobs import console
from pipelines.config_base import ConfigError

if TYPE_CHECKING:
    from pipelines.config import JobConfig


class CredentialsError(ValueError):
    """Credentials in the wrong place (inside a URI) or a credentials file that cannot be read."""


@functools.cache
def user_error_types() -> tuple[type[BaseException], ...]:
    """Exceptions that are the user's input, shown as one clear line instead of a traceback. Built on the first
    error, not at import: their modules import torch, Ray and MLflow, which ``aepipe --help`` never needs."""
    from aecore import UnknownModelError
    from pipelines.data import DataError
    from pipelines.storage import StorageError
    from pipelines.tracking import RegistryError

    return (
        ConfigError,
        DataError,
        UnknownModelError,
        RegistryError,
        FileNotFoundError,
        CredentialsError,
        StorageError,
    )


CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
COMMIT_VAR = "AEPIPE_GIT_COMMIT"


def home() -> Path:
    """The local state directory."""
    return Path(os.environ.get("AEPIPE_HOME", ".aepipe"))


def tracking_uri(explicit: str | None = None) -> str:
    """MLflow tracking URI: explicit, else ``MLFLOW_TRACKING_URI``, else SQLite under AEPIPE_HOME."""
    load_credentials()
    return (
        no_userinfo(explicit or os.environ.get("MLFLOW_TRACKING_URI")) or f"sqlite:///{home().resolve() / 'mlflow.db'}"
    )


def no_userinfo(uri: str | None) -> str | None:
    """Refuse ``scheme://user:password@host`` (it would land in run params and logs); the error hides it."""
    parts = urlsplit(uri or "")
    if parts.password is not None or (parts.username is not None and parts.scheme.startswith("http")):
        raise CredentialsError(
            f"the MLflow URI {parts.scheme}://***@{parts.hostname}{'' if parts.port is None else f':{parts.port}'} "
            "embeds credentials; set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or AEPIPE_CREDENTIALS_FILE"
        )
    return uri


def load_credentials() -> None:
    """Fill the MLflow credential variables from ``AEPIPE_CREDENTIALS_FILE`` (section ``[mlflow]``, keys
    ``mlflow_tracking_username`` / ``mlflow_tracking_password``); variables already set win."""
    path = os.environ.get("AEPIPE_CREDENTIALS_FILE")
    if not path:
        return
    parser = configparser.ConfigParser()
    try:
        with open(path) as f:
            parser.read_file(f)
    except (OSError, configparser.Error) as exc:
        raise CredentialsError(f"AEPIPE_CREDENTIALS_FILE {path}: cannot read it ({type(exc).__name__})") from None
    if "mlflow" not in parser:
        raise CredentialsError(f"AEPIPE_CREDENTIALS_FILE {path}: no [mlflow] section")
    for var in CREDENTIAL_VARS:
        value = parser["mlflow"].get(var.lower())
        if value and not os.environ.get(var):
            os.environ[var] = value


def registry_uri(explicit: str | None = None) -> str | None:
    return explicit or os.environ.get("MLFLOW_REGISTRY_URI") or None


def code_commit() -> str | None:
    """``AEPIPE_GIT_COMMIT``: the commit of the code, for a process whose code came without ``.git``."""
    return os.environ.get(COMMIT_VAR) or None


def job_config(path: str | None, overrides: list[str], values: Mapping[str, Any] | None = None) -> JobConfig:
    """Load a job config with the environment's defaults under the file, the overrides and ``values`` (dotted
    keys set from a command's explicit flags)."""
    from pipelines.config import load_config  # pydantic: not for --help

    job = load_config(path, overrides, values=values, home=str(home()))
    load_credentials()
    tracking = job.tracking.model_copy(
        update={
            "tracking_uri": no_userinfo(job.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")),
            "registry_uri": no_userinfo(job.tracking.registry_uri or registry_uri()),
        }
    )
    return job.model_copy(update={"tracking": tracking})


def _user_error(exc: BaseException) -> BaseException | None:
    """The first user-input error in an exception's chain (Ray wraps task errors several times)."""
    if isinstance(exc, (ConfigError, CredentialsError, FileNotFoundError)):
        return exc  # the chain's first: no need to import the modules of the others
    from pipelines.data.errors import find_in_chain

    return find_in_chain(exc, user_error_types())


def _auth_failure_status(exc: BaseException) -> int | None:
    """The HTTP status when ``exc`` is an MLflow server refusing the credentials (MLflow imported only here)."""
    from pipelines.tracking import auth_failure_status

    return auth_failure_status(exc)


@contextlib.contextmanager
def user_errors(tracking: str | None = None) -> Iterator[None]:
    """Turn user-input errors (even wrapped by Ray) into ``error: ...`` and exit status 2; so too an MLflow
    server refusing the credentials (``tracking``: the URI to name, default the environment's)."""
    try:
        yield
    except typer.Exit:
        raise
    except Exception as exc:
        found = _user_error(exc)
        status = _auth_failure_status(exc) if found is None else None
        if status is not None:
            uri = tracking or os.environ.get("MLFLOW_TRACKING_URI") or "the MLflow server"
            fail(
                f"MLflow rejected the credentials for {uri} (HTTP {status}); check MLFLOW_TRACKING_USERNAME / "
                "MLFLOW_TRACKING_PASSWORD or AEPIPE_CREDENTIALS_FILE"
            )
        if found is None:
            raise
        message = str(found.args[0]) if isinstance(found, KeyError) and found.args else str(found)
        console.error(message)
        raise typer.Exit(2) from None


#: Ray settings aepipe's processes run with unless the environment sets them: worker log lines deduplicated, and
#: Ray Train's controller polling its workers every 0.5 s instead of 2 s. A finished training run, and each checkpoint
#: report, waits for the controller's next poll (its report was taken at one poll, its end seen at the next): 2 to 4 s
#: of every run's fixed cost at 2 s (bench/train_overhead.py). A poll is one small task per worker.
RAY_DEFAULTS = {"RAY_DEDUP_LOGS": "1", "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}

#: And on a local instance (one machine, no autoscaler): no preemption watcher. Ray Train starts one actor per run
#: that polls the nodes' drain state, for spot nodes an autoscaler reclaims; a local node is never drained. The
#: watcher's process took about 1.3 s of CPU in every training run on 2 cores (its wall cost was lost in the noise).
LOCAL_RAY_DEFAULTS = {"RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0"}


def ray_defaults(local: bool = False) -> None:
    """Set :data:`RAY_DEFAULTS` (and, for a ``local`` instance, :data:`LOCAL_RAY_DEFAULTS`) where the environment
    does not (Ray Train reads them as a trainer starts)."""
    for name, value in {**RAY_DEFAULTS, **(LOCAL_RAY_DEFAULTS if local else {})}.items():
        os.environ.setdefault(name, value)


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Connect to ``address`` / ``RAY_ADDRESS``, else start a local Ray instance, for the block. Inside a quiet
    :func:`jobs.console.session` Ray Data draws no progress bars of its own (the console draws aepipe's)."""
    import ray
    from ray.data import DataContext

    target = address or os.environ.get("RAY_ADDRESS") or "local"
    ray_defaults(local=target == "local")
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=target,
            num_cpus=num_cpus if target == "local" else None,
            include_dashboard=False,
            logging_level=logging.WARNING,
            configure_logging=True,
        )
    context = DataContext.get_current()
    bars = context.enable_progress_bars
    context.enable_progress_bars = bars and console.verbose()
    try:
        yield
    finally:
        context.enable_progress_bars = bars
        if started:
            ray.shutdown()


@contextlib.contextmanager
def command_session(command: str, verbose: bool = False) -> Iterator[None]:
    """A command that runs Ray: quiet terminal, everything in ``AEPIPE_HOME/logs`` (see :mod:`jobs.console`)."""
    with console.session(command, home(), verbose):
        yield


def fail(message: str, code: int = 2) -> None:
    console.error(message)
    raise typer.Exit(code)


def echo(message: str) -> None:
    """One line for the user (stdout; inside a command session also in its log)."""
    console.line(message)


def print_table(table: object) -> None:
    """Print a rich table to stdout; wide when stdout is not a terminal, so ids are never cut."""
    from rich.console import Console

    Console(width=None if sys.stdout.isatty() else 200).print(table)


def echo_json(document: object) -> None:
    """Print ``document`` as one JSON document on stdout (``--json``: for scripts, keys documented per command)."""
    import json

    print(json.dumps(document, indent=1, sort_keys=True, default=str), file=sys.stdout, flush=True)
