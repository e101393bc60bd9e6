"""``aepipe submit KIND [ARGS]...``: run an aepipe job on a Ray cluster through the Ray Jobs API.

The job runs ``python -m jobs.entrypoints.KIND ARGS`` with the project directory as its ``working_dir`` and
the non-secret settings (``AEPIPE_HOME``, MLflow URIs) as environment variables, plus ``AEPIPE_GIT_COMMIT``: the
working_dir is uploaded without ``.git``, so the commit the job's runs record is read here. Secrets never go in the
runtime environment (the dashboard shows it to anyone who can reach it): the cluster's pods get MLflow and
object-store credentials from their own Kubernetes Secrets (see infra/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from jobs.commands.ray_jobs import AddressOpt, exit_status, follow_logs, jobs_client, ray_errors
from jobs.runtime import COMMIT_VAR, CredentialsError, code_commit, echo, fail, no_userinfo, user_errors
from pipelines.provenance import git_commit

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Uploaded with the job? Never: environments, local state, VCS data, caches.
EXCLUDES = [".venv", ".aepipe", ".git", "**/__pycache__", "*.egg-info", ".pytest_cache", "mlruns", "mlartifacts"]
#: Passed through from the submitting shell when set.
PASSTHROUGH_ENV = ("AEPIPE_HOME", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "MLFLOW_EXPERIMENT_NAME")
SECRET_MARKERS = ("PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "ACCESS_KEY", "PRIVATE_KEY", "AUTH")


class Kind(StrEnum):
    train = "train"
    tune = "tune"
    score = "score"
    nightly_score = "nightly-score"

    @property
    def module(self) -> str:
        return f"jobs.entrypoints.{self.value.replace('-', '_')}"


@dataclass(frozen=True)
class JobSpec:
    """What ``JobSubmissionClient.submit_job`` is given (and ``--dry-run`` prints)."""

    entrypoint: str
    runtime_env: dict[str, Any]
    submission_id: str | None = None


def entrypoint(kind: Kind, args: list[str]) -> str:
    """The shell command the Ray job runs: ``python -m jobs.entrypoints.KIND ARGS`` (each argument quoted)."""
    return shlex.join(["python", "-m", kind.module, *args])


def runtime_env(working_dir: Path, env: dict[str, str], pip: list[str] | None = None) -> dict[str, Any]:
    """The job's runtime environment; refuses environment variables whose names look like secrets."""
    if not (working_dir / "jobs" / "entrypoints").is_dir():
        raise FileNotFoundError(
            f"{working_dir} is not an aepipe project directory (no jobs/entrypoints); pass --working-dir"
        )
    secret = sorted(k for k in env if any(m in k.upper() for m in SECRET_MARKERS))
    if secret:
        raise CredentialsError(
            f"refusing to put {', '.join(secret)} in the job's runtime environment (the Ray dashboard shows it); "
            "give the cluster's pods the secret from a Kubernetes Secret instead"
        )
    renv: dict[str, Any] = {"working_dir": str(working_dir), "excludes": list(EXCLUDES), "env_vars": dict(env)}
    if pip:
        renv["pip"] = pip[0] if len(pip) == 1 and pip[0].endswith(".txt") else list(pip)
    return renv


def nightly_submission_id(args: list[str]) -> str:
    """``aepipe-nightly-MODEL-YYYY-MM-DD``: one id per model and night (``--date``, default yesterday UTC), so a
    retried nightly pod finds the job its first attempt submitted instead of scoring the night twice."""
    import typer.main

    from jobs.entrypoints import nightly_score

    params = typer.main.get_command(nightly_score.app).make_context("nightly-score", list(args)).params
    night = nightly_score.partition(params["date"]).removeprefix("dt=")
    return re.sub(r"[^A-Za-z0-9-]+", "-", f"aepipe-nightly-{params['model_name']}-{night}")


def parse_locally(command: str, args: list[str]) -> list[str]:
    """Parse ``args`` with ``aepipe COMMAND``'s own parser (no command runs); returns what it left over.

    Raises:
        click's UsageError: an unknown option, a missing or malformed value, a value outside a closed choice.
    """
    import typer.main

    from jobs.cli import app

    group: Any = typer.main.get_command(app)
    ctx = group.commands[command].make_context(f"aepipe {command}", list(args))
    return list(ctx.args)


def check_remote_args(kind: Kind, args: list[str]) -> None:
    """Refuse, before contacting the cluster, arguments the job's command would refuse: ``train``, ``tune`` and
    ``score`` parse them with their own parsers; ``nightly-score`` with its entrypoint's, then what it passes on to
    ``aepipe score``. A mistake is one ``error:`` line and exit status 2."""
    import typer.main

    from jobs.entrypoints import nightly_score

    usage_error: Any = typer.BadParameter.__mro__[1]  # typer vendors click: its UsageError
    try:
        if kind == Kind.nightly_score:
            nightly: Any = typer.main.get_command(nightly_score.app)
            passed_on = nightly.make_context("aepipe submit nightly-score", list(args)).args
            parse_locally("score", passed_on)
        else:
            parse_locally(kind.value, args)
    except usage_error as exc:
        message = exc.format_message().replace("Value error, ", "")
        fail(f"aepipe {kind.value} would refuse its arguments: {message} (nothing was submitted)")


def submit_or_attach(client: JobSubmissionClient, spec: JobSpec) -> str:
    """Submit ``spec``; when a job with its submission id already exists, follow that job while it is pending,
    running or succeeded, and replace it (delete, submit again) when it failed or was stopped."""
    try:
        return client.submit_job(
            entrypoint=spec.entrypoint, runtime_env=spec.runtime_env, submission_id=spec.submission_id
        )
    except RuntimeError as exc:
        if spec.submission_id is None or "already exists" not in str(exc):
            raise
    status = client.get_job_info(spec.submission_id).status
    if status not in ("FAILED", "STOPPED"):
        echo(f"{spec.submission_id} was already submitted ({status}): following it")
        return spec.submission_id
    echo(f"{spec.submission_id} {status} before: submitting it again")
    client.delete_job(spec.submission_id)
    return client.submit_job(entrypoint=spec.entrypoint, runtime_env=spec.runtime_env, submission_id=spec.submission_id)


def job_env(extra: list[str]) -> dict[str, str]:
    """The pass-through variables that are set, then ``KEY=VALUE`` pairs from ``--env``."""
    env = {k: os.environ[k] for k in PASSTHROUGH_ENV if os.environ.get(k)}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        no_userinfo(env.get(key))
    for pair in extra:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CredentialsError(f"--env takes KEY=VALUE, got {pair.split('=')[0]!r}")
        env[key] = value
    return env


def code_env(working_dir: Path) -> dict[str, str]:
    """``AEPIPE_GIT_COMMIT``: HEAD of ``working_dir`` when it is a git work tree (uncommitted changes are not told
    apart), else the submitting shell's ``AEPIPE_GIT_COMMIT``; empty when neither is known."""
    commit = git_commit(working_dir) or code_commit()
    return {COMMIT_VAR: commit} if commit else {}


def submit(
    ctx: typer.Context,
    kind: Kind = typer.Argument(..., help="Which entrypoint: train | tune | score | nightly-score."),
    address: str = AddressOpt,
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Stream the job's log and exit with its status."),
    pip: list[str] | None = typer.Option(
        None,
        "--pip",
        help="Install this requirement (or requirements.txt) in the job's environment; repeatable. "
        "Default: none, the cluster's image already has aepipe's dependencies.",
    ),
    env: list[str] | None = typer.Option(None, "--env", help="Extra KEY=VALUE for the job; repeatable."),
    working_dir: Path = typer.Option(PROJECT_ROOT, help="Directory uploaded as the job's working_dir."),
    submission_id: str | None = typer.Option(
        None, help="Submission id (default: aepipe-nightly-MODEL-DATE for nightly-score, else Ray picks one)."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the job (entrypoint, runtime env) and stop."),
) -> None:
    """Submit ``aepipe KIND ARGS`` (ARGS: everything after the options, e.g. --config ... train.epochs=3)."""
    check_remote_args(kind, list(ctx.args))
    with user_errors():
        spec = JobSpec(
            entrypoint=entrypoint(kind, list(ctx.args)),
            runtime_env=runtime_env(
                working_dir.resolve(), {**code_env(working_dir.resolve()), **job_env(env or [])}, pip
            ),
            submission_id=submission_id
            or (nightly_submission_id(list(ctx.args)) if kind == Kind.nightly_score else None),
        )
    if dry_run:
        echo(json.dumps(dataclasses.asdict(spec), indent=1))
        return
    client = jobs_client(address)
    with ray_errors(address):
        job_id = submit_or_attach(client, spec)
        echo(f"submitted {job_id} to {address}")
        if not follow:
            echo(f"follow it with: aepipe jobs logs --follow {job_id} --address {address}")
            return
        try:
            follow_logs(client, job_id)
        except KeyboardInterrupt:
            echo(f"\nstopped following; the job keeps running (aepipe jobs stop {job_id} --address {address})")
            raise typer.Exit(130) from None
        code = exit_status(client, job_id)
    raise typer.Exit(code)
