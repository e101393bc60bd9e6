"""``aepipe tune``: search model families and their settings with Ray Tune, register the best trial's model."""

from __future__ import annotations

import typer

from jobs import console
from jobs.commands.train import VERBOSE_HELP
from jobs.runtime import command_session, echo, job_config, ray_session, user_errors

#: Leaderboard rows the summary prints (all of them are in the search run's tune/leaderboard.csv).
SHOWN_ROWS = 5


def tune(
    config: str | None = typer.Option(None, "--config", "-c", help="YAML job config with a tune: section."),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. tune.trials=20"),
    address: str | None = typer.Option(None, help="Ray address (default: RAY_ADDRESS or a local instance)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Search the job's tune.space (trials under ASHA), each trial a nested MLflow run; register the best."""
    from pipelines import tracking
    from pipelines.tune.driver import run_tuning
    from pipelines.tune.space import parse_space

    with command_session("tune", verbose), user_errors():
        job = job_config(config, overrides or [])
        source = config or "config"
        parse_space(job, source)  # a bad space stops here, before Ray starts
        with ray_session(address):
            result = run_tuning(job, log=echo, source=source, progress=console.TerminalProgress())
        log_file = console.log_path()
        if log_file is not None:
            tracking.log_artifact(job.tracking_uri, result.run_id, str(log_file), "logs")
        echo(f"leaderboard ({result.metric}, best first; {len(result.rows)} trials):")
        for row in result.rows[:SHOWN_ROWS]:
            figures = " ".join(
                f"{k}={row[k]:.5g}" for k in ("val_mse", "val_auroc", "val_ap") if row.get(k) is not None
            )
            echo(f"  {row['rank']}. {row['trial']} {row['values']}: {figures} (best epoch {row['best_epoch']})")
        echo(f"run:      {result.run_id} (best trial run {result.best_run_id})")
        echo(f"model:    models:/{result.model_name}/{result.model_version}  aliases={result.aliases}")
        echo(f"gate:     {result.gate}")
        echo(f"bundle:   {result.bundle_dir}")
        echo(f"look:     {tracking.where_to_look(job.tracking_uri, result.run_id)}")
        echo(f"log:      {log_file}")
