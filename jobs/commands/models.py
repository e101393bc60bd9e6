"""``aepipe models ...``: query the MLflow model registry and move aliases (with the promotion gate).

With ``--json`` the query commands print one JSON document on stdout instead of a table (keys in the README's
"Scripting" section): ``models list`` a list of ``{name, versions, aliases, latest_run}``; ``models show``
``{name, versions: [{version, aliases, status, run_id, source, created, metrics}]}``; ``models compare``
``{name, a, b, metrics: [{metric, a, b, diff}]}``. Times are milliseconds since the epoch (UTC).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import typer
from rich.table import Table

from jobs.runtime import echo, echo_json, fail, print_table, registry_uri, tracking_uri, user_errors

app = typer.Typer(help="Query and promote models in the MLflow registry.", no_args_is_help=True)
TrackingOpt = typer.Option(
    None, "--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or SQLite under AEPIPE_HOME)."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON document on stdout instead of a table.")
KEY_METRICS = ("val_loss", "train_loss")
#: ``pipelines.tracking.promotion.CHAMPION``, repeated so that ``--help`` does not import MLflow (a test checks).
CHAMPION = "champion"


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def when(ms: int | None) -> str:
    return "-" if not ms else dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def diff(a: float | None, b: float | None) -> float | None:
    """``b - a``, None when either is missing."""
    return None if a is None or b is None else b - a


@app.command("list")
def list_models(tracking_uri_opt: str | None = TrackingOpt, as_json: bool = JsonOpt) -> None:
    """Every registered model with its versions and aliases."""
    from pipelines import tracking

    with user_errors(tracking_uri_opt):
        uri = tracking_uri(tracking_uri_opt)
        rows = tracking.registered_models(uri, registry_uri())
    if as_json:
        echo_json([{k: r[k] for k in ("name", "versions", "aliases", "latest_run")} for r in rows])
        return
    table = Table("name", "versions", "aliases", "latest run")
    for r in rows:
        aliases = ", ".join(f"{a}->v{v}" for a, v in sorted(r["aliases"].items())) or "-"
        table.add_row(r["name"], ", ".join(map(str, r["versions"])), aliases, r["latest_run"] or "-")
    print_table(table) if rows else echo("no registered models")


def version_row(info: dict[str, Any]) -> dict[str, Any]:
    """One version of ``models show --json``: the registry's fields and its key metrics."""
    from pipelines.tracking import promotion

    keys = ("version", "aliases", "status", "run_id", "source", "created")
    return {**{k: info[k] for k in keys}, "metrics": promotion.version_metrics(info)}


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Registered model name."),
    tracking_uri_opt: str | None = TrackingOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Every version of NAME, newest first: aliases, status, key metrics, source run, created."""
    from pipelines import tracking

    with user_errors(tracking_uri_opt):
        uri = tracking_uri(tracking_uri_opt)
        versions = [version_row(v) for v in tracking.model_versions(uri, name, registry_uri())]
    if as_json:
        echo_json({"name": name, "versions": versions})
        return
    table = Table("version", "aliases", "status", *KEY_METRICS, "source run", "created (UTC)", title=name)
    for v in versions:
        table.add_row(
            v["version"],
            ", ".join(v["aliases"]) or "-",
            v["status"],
            *(fmt(v["metrics"].get(k)) for k in KEY_METRICS),
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
    as_json: bool = JsonOpt,
) -> None:
    """Metrics of two versions side by side, with the difference V2 - V1."""
    from pipelines.tracking import promotion

    with user_errors(tracking_uri_opt):
        uri = tracking_uri(tracking_uri_opt)
        rows = promotion.compare(uri, name, a, b, registry_uri())
    if as_json:
        metrics = [{"metric": m, "a": va, "b": vb, "diff": diff(va, vb)} for m, va, vb in rows]
        echo_json({"name": name, "a": a, "b": b, "metrics": metrics})
        return
    table = Table("metric", f"v{a}", f"v{b}", f"v{b} - v{a}", title=name)
    for metric, va, vb in rows:
        table.add_row(metric, fmt(va), fmt(vb), fmt(diff(va, vb)))
    print_table(table)


@app.command("promote")
def promote(
    name: str = typer.Argument(...),
    version: str = typer.Argument(...),
    alias: str = typer.Option(CHAMPION, help="Alias to move."),
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
    from pipelines.tracking import promotion

    with user_errors(tracking_uri_opt):
        uri = tracking_uri(tracking_uri_opt)
        decision = promotion.promote(uri, name, version, alias, force=force, margin=margin, registry_uri=registry_uri())
    if not decision.passed:
        fail(f"gate refused to make {name} v{version} {alias}: {decision.reason}; pass --force to promote anyway", 1)
    echo(f"{name}@{alias} -> v{version} ({decision.reason})")
