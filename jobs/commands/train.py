"""``aepipe train``: train a model on Ray, track it in MLflow, register a version."""

from __future__ import annotations

import typer

from jobs.runtime import code_commit, echo, job_config, ray_session, user_errors
from pipelines.config_base import ResumePolicy, field_help

RESUME_HELP = field_help("TrainConfig", "resume")[0]


def train(
    config: str | None = typer.Option(None, "--config", "-c", help="YAML job config (see jobs/configs/)."),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. train.epochs=3"),
    address: str | None = typer.Option(None, help="Ray address (default: RAY_ADDRESS or a local instance)."),
    resume: ResumePolicy | None = typer.Option(
        None, help=f"{RESUME_HELP} (train.resume; default auto)", show_default=False
    ),
) -> None:
    """Train the configured model with Ray Train and register it in MLflow."""
    from pipelines.train.driver import run_training

    with user_errors():
        job = job_config(config, overrides or [], {"train.resume": resume} if resume else None)
        with ray_session(address):
            result = run_training(job, log=echo, code_commit=code_commit())
        echo(f"run:      {result.run_id}")
        echo(f"model:    models:/{result.model_name}/{result.model_version}  aliases={result.aliases}")
        echo(f"val_loss: {result.metrics.get('val_loss', float('nan')):.6f}")
        echo(f"bundle:   {result.bundle_dir}")
