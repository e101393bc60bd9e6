"""``aepipe train``: train a model on Ray, track it in MLflow, register a version."""

from __future__ import annotations

import typer

from jobs import console
from jobs.runtime import code_commit, command_session, echo, job_config, ray_session, user_errors
from pipelines.config_base import ResumePolicy, field_help

RESUME_HELP = field_help("TrainConfig", "resume")[0]
VERBOSE_HELP = "Stream Ray's, Ray Data's and the dependencies' logs to the terminal too (always in the run's log)."


def train(
    config: str | None = typer.Option(None, "--config", "-c", help="YAML job config (see jobs/configs/)."),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. train.epochs=3"),
    address: str | None = typer.Option(None, help="Ray address (default: RAY_ADDRESS or a local instance)."),
    resume: ResumePolicy | None = typer.Option(
        None, help=f"{RESUME_HELP} (train.resume; default auto)", show_default=False
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Train the configured model with Ray Train and register it in MLflow."""
    from pipelines import tracking
    from pipelines.train.driver import run_training

    with command_session("train", verbose), user_errors():
        job = job_config(config, overrides or [], {"train.resume": resume} if resume else None)
        with ray_session(address):
            result = run_training(job, log=echo, code_commit=code_commit(), progress=console.TerminalProgress())
        log_file = console.log_path()
        if log_file is not None:
            tracking.log_artifact(job.tracking_uri, result.run_id, str(log_file), "logs")
        echo(f"run:      {result.run_id}")
        echo(f"model:    models:/{result.model_name}/{result.model_version}  aliases={result.aliases}")
        echo(f"val_loss: {result.metrics.get('val_loss', float('nan')):.6f}  threshold: {result.threshold:.6g}")
        echo(f"bundle:   {result.bundle_dir}")
        echo(f"look:     {tracking.where_to_look(job.tracking_uri, result.run_id)}")
        echo(f"log:      {log_file}")
