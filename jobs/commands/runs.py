"""``aepipe runs list``: the newest MLflow runs of an experiment with their key metrics."""

from __future__ import annotations

import typer
from rich.table import Table

from jobs.commands.models import KEY_METRICS, JsonOpt, TrackingOpt, fmt, when
from jobs.runtime import echo, echo_json, print_table, tracking_uri, user_errors

app = typer.Typer(help="List MLflow runs.", no_args_is_help=True)


@app.command("list")
def list_runs(
    experiment: str = typer.Option("aepipe", help="MLflow experiment name."),
    limit: int = typer.Option(20, min=1, help="Newest N runs."),
    tracking_uri_opt: str | None = TrackingOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Recent runs of the experiment, newest first: id, name, status, start, key metrics.

    ``--json``: a list of ``{run_id, name, status, start, metrics}`` (start: milliseconds since the epoch)."""
    from pipelines import tracking

    with user_errors(tracking_uri_opt):
        uri = tracking_uri(tracking_uri_opt)
        runs = tracking.recent_runs(uri, experiment, limit)
    if as_json:
        echo_json([{k: r[k] for k in ("run_id", "name", "status", "start", "metrics")} for r in runs])
        return
    if not runs:
        echo(f"no runs in experiment {experiment!r}")
        return
    table = Table("run id", "name", "status", "started (UTC)", *KEY_METRICS, title=experiment)
    for r in runs:
        table.add_row(
            r["run_id"],
            r["name"] or "-",
            r["status"],
            when(r["start"]),
            *(fmt(r["metrics"].get(k)) for k in KEY_METRICS),
        )
    print_table(table)
