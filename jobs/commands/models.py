"""``aepipe models ...``: query the MLflow model registry."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from jobs.runtime import registry_uri, tracking_uri, user_errors
from pipelines import tracking

app = typer.Typer(help="Query and promote models in the MLflow registry.", no_args_is_help=True)


@app.command("list")
def list_models(tracking_uri_opt: Optional[str] = typer.Option(None, "--tracking-uri")) -> None:
    """Every registered model with its versions and aliases."""
    with user_errors():
        rows = tracking.registered_models(tracking_uri(tracking_uri_opt), registry_uri())
        table = Table("name", "versions", "aliases", "latest run")
        for r in rows:
            aliases = ", ".join(f"{a}->v{v}" for a, v in sorted(r["aliases"].items())) or "-"
            table.add_row(r["name"], ", ".join(map(str, r["versions"])), aliases, r["latest_run"] or "-")
        Console().print(table if rows else "no registered models")
