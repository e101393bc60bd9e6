"""``aepipe score``: score and/or embed a whole corpus with a registered model; ``aepipe scores show``.

The scoring settings are :class:`pipelines.config.ScoreConfig`, defined once there: its defaults, under the
``score:`` section of ``--config FILE`` (the same job YAML ``aepipe train`` reads), under ``score.*``
``key=value`` overrides, under the flags given explicitly (a flag left out takes the value from below).

Exit status: 0 done (or nothing new in incremental mode), 2 a user error, 3 published but the score
distribution drifted from the model's validation baseline (for a scheduler to alert on).
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

import typer
from rich.table import Table

from jobs import console
from jobs.commands.train import VERBOSE_HELP
from jobs.runtime import (
    command_session,
    echo,
    echo_json,
    home,
    print_table,
    ray_session,
    registry_uri,
    tracking_uri,
    user_errors,
)
from pipelines.config_base import field_help

if TYPE_CHECKING:
    from pipelines.config import ScoreConfig
    from pipelines.score.driver import ScoreResult

DRIFT_EXIT = 3

app = typer.Typer(help="Read published score partitions.", no_args_is_help=True)


class BadRecords(StrEnum):
    """What scoring does with a bad file or row: stop with an error naming it, or quarantine it."""

    # ScoreConfig.on_bad_records's choices
    _value_: Literal["fail", "skip"]
    fail = "fail"
    skip = "skip"


class ScoreMode(StrEnum):
    """What each output row holds: the anomaly score (and is_anomaly), the embedding, or both."""

    # ScoreRequest.mode's choices: with this, mypy checks that every member is one of them
    _value_: Literal["score", "embed", "both"]
    score = "score"
    embed = "embed"
    both = "both"


def setting(name: str) -> Any:
    """The flag of ``ScoreConfig.NAME``: default None (= take the config's value), help from its docstring."""
    text, default = field_help("ScoreConfig", name)
    default = "null" if default is None else default
    return typer.Option(None, help=f"{text} (score.{name}; default {default})", show_default=False)


def score_settings(config: str | None, overrides: list[str], flags: dict[str, Any]) -> ScoreConfig:
    """The ``score:`` section of the job config ``config`` (None: ScoreConfig's defaults) under ``score.*``
    overrides, under the flags that were given (None = not given).

    Raises:
        ConfigError: a missing file, an override outside ``score.*``, or a key or value ScoreConfig refuses.
    """
    from pipelines.config import load_config  # pydantic: not for --help

    given = {f"score.{name}": value for name, value in flags.items() if value is not None}
    return load_config(config, overrides, values=given, sections=("score",)).score


def score(
    config: str | None = typer.Option(
        None, "--config", "-c", help="YAML job config whose score: section holds the settings (see jobs/configs/)."
    ),
    overrides: list[str] | None = typer.Argument(None, help="score.* key=value overrides, e.g. score.batch_size=512"),
    model: str = typer.Option(
        "models:/aepipe-model@champion", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model."
    ),
    input: str | None = typer.Option(None, "--input", "-i", help="Corpus path (default: AEPIPE_HOME/data/mnist)."),
    output: str | None = typer.Option(
        None, "--output", "-o", help="Output directory (default: AEPIPE_HOME/outputs/scores)."
    ),
    partition: str | None = typer.Option(None, help="Publish under OUTPUT/PARTITION, e.g. dt=2024-06-01."),
    incremental: bool = typer.Option(
        False,
        help="Score only shards no partition under OUTPUT holds, whichever model version scored them "
        "(a new champion scores the new shards only); nothing new is a no-op.",
    ),
    rescore: bool = typer.Option(
        False,
        help="Like --incremental, but shards published by another model version count as not done: "
        "score the old shards with this (new) model too.",
    ),
    mode: ScoreMode = typer.Option(ScoreMode.both, help="Columns written: score (score, is_anomaly), embed or both."),
    batch_size: int | None = setting("batch_size"),
    concurrency: int | None = setting("concurrency"),
    num_cpus: float | None = setting("num_cpus"),
    num_gpus: float | None = setting("num_gpus"),
    shards_per_pass: int | None = setting("shards_per_pass"),
    images_per_shard: int | None = setting("images_per_shard"),
    on_bad_records: BadRecords | None = setting("on_bad_records"),
    psi_limit: float | None = setting("psi_limit"),
    ks_alpha: float | None = setting("ks_alpha"),
    ks_min: float | None = setting("ks_min"),
    address: str | None = typer.Option(None, help="Ray address (default: RAY_ADDRESS or a local instance)."),
    tracking: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help=VERBOSE_HELP),
) -> None:
    """Score the corpus with a pinned model version; publish one Parquet file per input shard exactly once."""
    from pipelines.score.driver import ScoreRequest, run_scoring

    flags = {
        "batch_size": batch_size,
        "concurrency": concurrency,
        "num_cpus": num_cpus,
        "num_gpus": num_gpus,
        "shards_per_pass": shards_per_pass,
        "images_per_shard": images_per_shard,
        "on_bad_records": None if on_bad_records is None else on_bad_records.value,
        "psi_limit": psi_limit,
        "ks_alpha": ks_alpha,
        "ks_min": ks_min,
    }
    with command_session("score", verbose), user_errors():
        settings = score_settings(config, overrides or [], flags)
        req = ScoreRequest(
            model_uri=model,
            input_path=input or str((home() / "data" / "mnist").resolve()),
            output_path=output or str((home() / "outputs" / "scores").resolve()),
            partition=partition,
            incremental=incremental,
            rescore=rescore,
            tracking_uri=tracking_uri(tracking),
            registry_uri=registry_uri(),
            artifact_root=str((home() / "mlartifacts").resolve()),
            mode=mode.value,
            settings=settings,
        )
        with ray_session(address):
            result = run_scoring(req, log=echo, progress=console.TerminalProgress())
        if result.run_id is not None and console.log_path() is not None:
            from pipelines import tracking as mlflow_tracking

            mlflow_tracking.log_artifact(req.tracking_uri, result.run_id, str(console.log_path()), "logs")
        report(result, req.tracking_uri)


def report(result: ScoreResult, tracking_uri: str) -> None:
    """What the run published, where to look at it, and its drift check; exit status 3 when the scores drifted."""
    from pipelines import tracking

    if result.noop:
        echo(f"no-op: nothing new to score with {result.model.uri}; {result.output_path} unchanged")
        return
    echo(
        f"published {result.rows} rows ({result.rows_scored} scored now; plan {result.plan}) with "
        f"{result.model.uri} in {result.seconds:.1f}s -> {result.output_path}"
    )
    if result.run_id is not None:
        echo(f"run:      {result.run_id}  look: {tracking.where_to_look(tracking_uri, result.run_id)}")
    if console.log_path() is not None:
        echo(f"log:      {console.log_path()}")
    if result.drift is not None:
        d = result.drift
        echo(f"drift: PSI {d.psi:.3f}, KS {d.ks:.3f} (p={d.ks_pvalue:.2g}), mean shift {d.mean_shift_std:+.2f} std")
        if d.drifted:
            console.error(
                f"scores of {d.rows} rows moved away from the validation baseline of {result.model.uri}: "
                f"{d.reason} (MLflow run {result.run_id})",
                label="DRIFT ALARM",
            )
            raise typer.Exit(DRIFT_EXIT)


@app.command("show")
def show(
    path: str = typer.Argument(..., help="A published partition directory."),
    rows: int = typer.Option(5, min=0, help="Rows to print."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document: the summary and a head list of rows."),
) -> None:
    """Print a partition's manifest summary and its first rows; refuses a partition without _SUCCESS.

    ``--json``: ``{model, rows, plan, drift, published_at, scoring_run_id, shards, head}`` (``shards``: how many;
    ``head``: the first rows as objects, without the embedding)."""
    from pipelines.score.publish import read_manifest, read_scores

    with user_errors():
        manifest = read_manifest(path)
        df = read_scores(path)
    summary = {k: manifest[k] for k in ("model", "rows", "plan", "drift", "published_at", "scoring_run_id")}
    summary["shards"] = len(manifest["shards"])
    head = df.head(rows).drop(columns=[c for c in ("embedding",) if c in df.columns])
    if as_json:
        echo_json({**summary, "head": json.loads(head.to_json(orient="records"))})
        return
    echo(json.dumps(summary, indent=1))
    if rows:
        echo(head.to_string(index=False))


def history_table(rows: list[dict[str, Any]]) -> Table:
    """``scores history`` as a rich table: one partition a line."""
    table = Table("partition", "model", "rows", "anomaly rate", "PSI", "drift", "published (UTC)", "plan")
    for r in rows:
        table.add_row(
            r["partition"],
            r["model"] or "-",
            str(r["rows"]),
            "-" if r["anomaly_rate"] is None else f"{r['anomaly_rate']:.2%}",
            "-" if r["psi"] is None else f"{r['psi']:.3f}",
            {None: "-", True: "[bold red]ALARM[/]", False: "ok"}[r["drifted"]],
            (r["published_at"] or "-")[:19].replace("T", " "),
            str(r["plan"] or "-"),
        )
    return table


@app.command("history")
def history(
    output: str = typer.Argument(..., help="A scores output (local path or URI) whose sub-folders are partitions."),
    as_json: bool = typer.Option(False, "--json", help="One JSON list of partitions instead of a table."),
    plot: str | None = typer.Option(None, "--plot", help="Also draw anomaly rate and PSI per partition to this PNG."),
) -> None:
    """Every published partition under OUTPUT: model, rows, anomaly rate, drift PSI and alarm, when, plan.

    ``--json``: a list of ``{partition, path, model, rows, anomalies, anomaly_rate, psi, drifted, published_at,
    plan}`` (``anomalies``, ``anomaly_rate``, ``psi``, ``drifted``: null where the partition does not say)."""
    from pipelines.score.history import partition_history, plot_history

    with user_errors():
        rows = partition_history(output)
        if plot:
            plot_history(rows, plot)
    if as_json:
        echo_json(rows)
    else:
        print_table(history_table(rows))
    if plot:
        echo(f"plot: {plot}")
