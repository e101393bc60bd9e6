"""``aepipe models ...``: query the MLflow model registry and move aliases (with the promotion gate)."""

from __future__ import annotations

import datetime as dt

import typer
from rich.table import Table

from jobs.runtime import echo, fail, print_table, registry_uri, tracking_uri, user_errors
from pipelines import tracking
from pipelines.tracking import promotion

app = typer.Typer(help="Query and promote models in the MLflow registry.", no_args_is_help=True)
TrackingOpt = typer.Option(
    None, "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or SQLite under AEPIPE_HOME)."
)
KEY_METRICS = ("val_loss", "train_loss")


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def when(ms: int | None) -> str:
    return "-" if not ms else dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_models(tracking_uri_opt: str | None = TrackingOpt) -> None:
    """Every registered model with its versions and aliases."""
    with user_errors(tracking_uri_opt):
        uri = tracking_uri(tracking_uri_opt)
        rows = tracking.registered_models(uri, registry_uri())
    table = Table("name", "versions", "aliases", "latest run")
    for r in rows:
        aliases = ", ".join(f"{a}->v{v}" for a, v in sorted(r["aliases"].items())) or "-"
        table.add_row(r["name"], ", ".join(map(str, r["versions"])), aliases, r["latest_run"] or "-")
    print_table(table) if rows else echo("no registered models")


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Registered model name."), tracking_uri_opt: str | None = TrackingOpt
) -> None:
    """Every version of NAME, newest first: aliases, status, key metrics, source run, created."""
    with user_errors(tracking_uri_opt):
        uri = tracking_uri(tracking_uri_opt)
        versions = tracking.model_versions(uri, name, registry_uri())
    table = Table("version", "aliases", "status", *KEY_METRICS, "source run", "created (UTC)", title=name)
    for v in versions:
        metrics = promotion.version_metrics(v)
        table.add_row(
            v["version"],
            ", ".join(v["aliases"]) or "-",
            v["status"],
            *(fmt(metrics.get(k)) for k in KEY_METRICS),
            v["run_id"] or "-",
            when(v["created"]),
        )
    print_table(table)


@app.command("compare")
def compare(
    name: str = typer.Argument(...),
    a: str = typer.Argument(..., metavar="V1"),
    b: str = typer.Argument(..., metavar="V2"),
    tracking_uri_opt: str | None = TrackingOpt,
) -> None:
    """Metrics of two versions side by side, with the difference V2 - V1."""
    with user_errors(tracking_uri_opt):
        uri = tracking_uri(tracking_uri_opt)
        rows = promotion.compare(uri, name, a, b, registry_uri())
    table = Table("metric", f"v{a}", f"v{b}", f"v{b} - v{a}", title=name)
    for metric, va, vb in rows:
        table.add_row(metric, fmt(va), fmt(vb), fmt(None if va is None or vb is None else vb - va))
    print_table(table)


@app.command("promote")
def promote(
    name: str = typer.Argument(...),
    version: str = typer.Argument(...),
    alias: str = typer.Option(promotion.CHAMPION, help="Alias to move."),
    force: bool = typer.Option(False, "--force", help="Move the champion alias even when the gate refuses."),
    margin: float = typer.Option(
        0.0,
        min=0.0,
        max=0.99,
        help="Gate: the version's held-out score must be <= the champion's on the same rows x (1 - margin).",
    ),
    tracking_uri_opt: str | None = TrackingOpt,
) -> None:
    """Point ALIAS at VERSION; for ``champion`` the gate must pass: the held-out comparison VERSION's training run
    recorded (raw-space reconstruction MSE of both models on its validation rows) must be against the current
    champion and beat it. The champion alias moves by compare-and-set."""
    with user_errors(tracking_uri_opt):
        uri = tracking_uri(tracking_uri_opt)
        decision = promotion.promote(uri, name, version, alias, force=force, margin=margin, registry_uri=registry_uri())
    if not decision.passed:
        fail(f"gate refused to make {name} v{version} {alias}: {decision.reason}; pass --force to promote anyway", 1)
    echo(f"{name}@{alias} -> v{version} ({decision.reason})")
