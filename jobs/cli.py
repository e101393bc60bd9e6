"""The ``aepipe`` command line: assembles the command groups in ``jobs/commands``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from jobs.commands import config, data, models, ray_jobs, runs, score, submit, train, tune, zoo

PROJECT_ROOT = Path(__file__).resolve().parents[1]
app = typer.Typer(
    help="aepipe: train autoencoders on Ray, track them in MLflow, score whole corpora.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.command("train")(train.train)
app.command("tune")(tune.tune)
app.command("score")(score.score)
app.add_typer(score.app, name="scores")
app.command("zoo")(zoo.zoo)
app.add_typer(runs.app, name="runs")
app.command("submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(submit.submit)
app.add_typer(ray_jobs.app, name="jobs")
app.add_typer(config.app, name="config")


def version_text() -> str:
    """``aepipe VERSION`` of the installed package, with the code's commit when git (or AEPIPE_GIT_COMMIT) tells."""
    from importlib.metadata import PackageNotFoundError, version

    from jobs.runtime import code_commit
    from pipelines.provenance import git_commit

    try:
        text = f"aepipe {version('aepipe')}"
    except PackageNotFoundError:
        text = "aepipe (not installed)"
    commit = git_commit(PROJECT_ROOT) or code_commit()
    return f"{text} ({commit[:12]})" if commit else text


def show_version(value: bool) -> None:
    """``--version``: print the version and stop."""
    if value:
        print(version_text())
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=show_version, is_eager=True, help="Print aepipe's version and exit."
    ),
) -> None:
    """aepipe: train autoencoders on Ray, track them in MLflow, score whole corpora."""


def main() -> None:
    """The ``aepipe`` entry point: a usage error (an unknown option, a value outside a closed choice) is one
    ``error:`` line and exit status 2, like every other user error, instead of a framed box."""
    # typer vendors click; BadParameter (public) derives from its UsageError
    usage_error: Any = typer.BadParameter.__mro__[1]
    try:
        code = app(standalone_mode=False, prog_name="aepipe")
    except usage_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a bare group: its help
            exc.show()
            raise SystemExit(2) from None
        command = " ".join(exc.ctx.command_path.split()[1:]) if exc.ctx else ""
        message = exc.format_message().replace("Value error, ", "")
        print(f"error: {message} (see: aepipe {command} --help)".replace("aepipe  ", "aepipe "), file=sys.stderr)
        raise SystemExit(2) from None
    except typer.Abort:
        raise SystemExit(130) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
