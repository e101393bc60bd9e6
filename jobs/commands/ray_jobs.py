"""``aepipe jobs status|logs|stop|list``: follow and control jobs on a Ray cluster through the Ray Jobs API.

The Jobs API lives on the head node's dashboard (``http://HEAD:8265``). With token authentication on
(``RAY_AUTH_MODE=token`` on the cluster), the token comes from ``RAY_AUTH_TOKEN`` or the file named by
``RAY_AUTH_TOKEN_PATH`` and travels as an ``Authorization: Bearer`` header, never in a URL or a log line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from jobs.runtime import echo, echo_json, fail, print_table

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

app = typer.Typer(help="Status, logs and stop for jobs on a Ray cluster (Ray Jobs API).", no_args_is_help=True)
AddressOpt = typer.Option(
    ..., "--address", envvar="RAY_API_SERVER_ADDRESS", help="Ray Jobs API (dashboard) address, e.g. http://HEAD:8265."
)
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
#: Exit status when the Jobs API cannot be reached (not a user mistake, and not 3, the nightly job's drift):
#: a scheduler may retry it, while 2 (configuration) and 3 (drift) should fail at once.
EXIT_UNREACHABLE = 4


def auth_headers() -> dict[str, str]:
    """``Authorization: Bearer TOKEN`` from ``RAY_AUTH_TOKEN`` / ``RAY_AUTH_TOKEN_PATH``; empty when neither is set
    (Ray then uses its own default, ``~/.ray/auth_token`` under ``RAY_AUTH_MODE=token``)."""
    token = os.environ.get("RAY_AUTH_TOKEN")
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if not token and path:
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            fail(f"RAY_AUTH_TOKEN_PATH {path}: cannot read the token ({exc.strerror})")
    return {"Authorization": f"Bearer {token.strip()}"} if token else {}


@contextlib.contextmanager
def ray_errors(address: str) -> Iterator[None]:
    """A refused token or an unknown job become one ``error:`` line and exit 2; an unreachable cluster exits
    :data:`EXIT_UNREACHABLE` (4)."""
    from ray.exceptions import AuthenticationError

    try:
        yield
    except AuthenticationError as exc:
        status = 401 if "Authentication required" in str(exc) else 403
        fail(
            f"Ray rejected the request to {address} (HTTP {status}): set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) "
            "to the cluster's token"
        )
    except ConnectionError:
        fail(
            f"cannot reach the Ray Jobs API at {address}: is the head node's dashboard running and reachable?",
            EXIT_UNREACHABLE,
        )
    except RuntimeError as exc:
        if not str(exc).startswith(("Request failed", "Job ")):
            raise
        fail(f"Ray Jobs API at {address}: {exc}")


def jobs_client(address: str) -> JobSubmissionClient:
    """A Jobs API client for ``address`` with the token header when one is configured."""
    from ray.job_submission import JobSubmissionClient

    with ray_errors(address):
        return JobSubmissionClient(address, headers=auth_headers())


def follow_logs(client: JobSubmissionClient, job_id: str) -> None:
    """Stream the job's driver log to stdout until the job ends."""
    import asyncio  # only to follow logs: not for --help

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(tail())


def exit_status(client: JobSubmissionClient, job_id: str, poll_s: float = 0.5) -> int:
    """Wait for a terminal state; 0 when the job succeeded, else its driver's exit code (1 when unknown)."""
    while (info := client.get_job_info(job_id)).status not in TERMINAL:
        time.sleep(poll_s)
    echo(f"job {job_id} {info.status}" + (f": {info.message}" if info.status != "SUCCEEDED" and info.message else ""))
    if info.status == "SUCCEEDED":
        return 0
    return info.driver_exit_code or 1


JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout instead of text.")
#: The keys of a job in ``jobs status --json`` and ``jobs list --json`` (times: milliseconds since the epoch).
JOB_KEYS = ("submission_id", "job_id", "status", "entrypoint", "message", "driver_exit_code", "start_time", "end_time")


def job_document(info: Any) -> dict[str, Any]:
    """A Ray ``JobDetails`` / ``JobInfo`` as a dict of :data:`JOB_KEYS` (a value Ray does not give is null)."""
    doc = {k: getattr(info, k, None) for k in JOB_KEYS}
    doc["status"] = None if doc["status"] is None else str(getattr(doc["status"], "value", doc["status"]))
    return doc


@app.command("status")
def status(
    job_id: str = typer.Argument(..., help="Submission id."), address: str = AddressOpt, as_json: bool = JsonOpt
) -> None:
    """A job's status, entrypoint, start/end times and driver exit code.

    ``--json``: ``{submission_id, job_id, status, entrypoint, message, driver_exit_code, start_time, end_time}``."""
    client = jobs_client(address)
    with ray_errors(address):
        info = client.get_job_info(job_id)
    if as_json:
        echo_json({**job_document(info), "submission_id": job_id})
        return
    echo(f"{job_id}: {info.status}" + (f" (exit {info.driver_exit_code})" if info.driver_exit_code is not None else ""))
    echo(f"entrypoint: {info.entrypoint}")
    if info.message:
        echo(f"message: {info.message}")


@app.command("logs")
def logs(
    job_id: str = typer.Argument(...),
    address: str = AddressOpt,
    follow: bool = typer.Option(False, "--follow", "-f", help="Stream until the job ends; exit with its status."),
) -> None:
    """Print a job's driver log (all of it so far, or streamed with --follow)."""
    client = jobs_client(address)
    with ray_errors(address):
        if not follow:
            sys.stdout.write(client.get_job_logs(job_id))
            return
        follow_logs(client, job_id)
        code = exit_status(client, job_id)
    raise typer.Exit(code)


@app.command("stop")
def stop(job_id: str = typer.Argument(...), address: str = AddressOpt) -> None:
    """Ask the cluster to stop a running job."""
    client = jobs_client(address)
    with ray_errors(address):
        stopped = client.stop_job(job_id)
    echo(f"{job_id}: {'stop requested' if stopped else 'already finished'}")


@app.command("list")
def list_jobs(address: str = AddressOpt, as_json: bool = JsonOpt) -> None:
    """Every job the cluster knows, newest first.

    ``--json``: a list of jobs with the keys of ``jobs status --json``."""
    client = jobs_client(address)
    with ray_errors(address):
        jobs = sorted(client.list_jobs(), key=lambda j: j.start_time or 0, reverse=True)
    if as_json:
        echo_json([job_document(j) for j in jobs])
        return
    table = Table("submission id", "status", "exit", "entrypoint")
    for j in jobs:
        table.add_row(
            j.submission_id or j.job_id or "-",
            j.status,
            "-" if j.driver_exit_code is None else str(j.driver_exit_code),
            j.entrypoint,
        )
    print_table(table) if jobs else echo("no jobs")
