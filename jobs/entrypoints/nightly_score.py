"""Nightly scoring entrypoint: score the night's new shards with the champion into ``OUTPUT/dt=DATE``.

``python -m jobs.entrypoints.nightly_score --model-name NAME --input CORPUS --output SCORES [--date D] [...]``
runs ``aepipe score --incremental --partition dt=DATE --model models:/NAME@champion ...``: only the shards no
earlier partition holds are scored, whichever model version scored them (nothing new is a no-op, exit 0);
``--rescore`` also scores the shards an earlier champion published, with the current one. Exit status 3
means the scores drifted from the model's validation baseline (a scheduler alerts on it); 2 a user error.
"""

from __future__ import annotations

import datetime as dt

import typer

from jobs.entrypoints import run

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def partition(date: str | None, today: dt.date | None = None) -> str:
    """``dt=YYYY-MM-DD`` of ``date``, default the night that just ended (yesterday, UTC)."""
    if date is None:
        return f"dt={(today or dt.datetime.now(dt.UTC).date()) - dt.timedelta(days=1)}"
    try:
        return f"dt={dt.date.fromisoformat(date)}"
    except ValueError:
        raise typer.BadParameter(f"{date!r} is not a date like 2024-06-01", param_hint="--date") from None


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def nightly(
    ctx: typer.Context,
    model_name: str = typer.Option(..., help="Registered model; scoring uses models:/NAME@champion."),
    date: str | None = typer.Option(None, help="Night to publish as dt=DATE (default: yesterday, UTC)."),
    rescore: bool = typer.Option(
        False, help="Also score shards an earlier champion published (aepipe score --rescore), not only new ones."
    ),
) -> None:
    """Score the night's new shards incrementally with the champion; other options go to ``aepipe score``."""
    part = partition(date)
    print(f"nightly scoring: partition {part} with models:/{model_name}@champion", flush=True)
    mode = "--rescore" if rescore else "--incremental"
    run("score", argv=[mode, "--partition", part, "--model", f"models:/{model_name}@champion", *ctx.args])


if __name__ == "__main__":
    app()
