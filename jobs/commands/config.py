"""``aepipe config show``: the job config a command would run with, resolved and validated, without running it."""

from __future__ import annotations

import typer

from jobs.runtime import echo, echo_json, job_config, user_errors

app = typer.Typer(help="Inspect job configs.", no_args_is_help=True)


@app.command("show")
def show(
    config: str | None = typer.Option(None, "--config", "-c", help="YAML job config (see jobs/configs/)."),
    overrides: list[str] | None = typer.Argument(None, help="key=value overrides, e.g. train.epochs=3"),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of YAML."),
) -> None:
    """Print the config ``aepipe train --config FILE OVERRIDES`` would run with: the file under the overrides,
    the environment's defaults (AEPIPE_HOME, MLFLOW_TRACKING_URI, MLFLOW_REGISTRY_URI) and every default filled
    in, validated (a bad key or value is one ``error:`` line, exit status 2)."""
    import yaml

    with user_errors():
        resolved = job_config(config, overrides or []).model_dump(mode="json")
    if as_json:
        echo_json(resolved)
    else:
        echo(yaml.safe_dump(resolved, sort_keys=False, default_flow_style=None).rstrip())
