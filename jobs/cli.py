"""The ``aepipe`` command line: assembles the command groups in ``jobs/commands``."""

from __future__ import annotations

import typer

from jobs.commands import data, models, ray_jobs, runs, score, submit, train, zoo

app = typer.Typer(
    help="aepipe: train autoencoders on Ray, track them in MLflow, score whole corpora.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.command("train")(train.train)
app.command("score")(score.score)
app.add_typer(score.app, name="scores")
app.command("zoo")(zoo.zoo)
app.add_typer(runs.app, name="runs")
app.command("submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(submit.submit)
app.add_typer(ray_jobs.app, name="jobs")


if __name__ == "__main__":
    app()
