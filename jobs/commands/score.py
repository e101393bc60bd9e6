"""``aepipe score``: score and/or embed a whole corpus with a registered model; ``aepipe scores show``.

Exit status: 0 done (or nothing new in incremental mode), 2 a user error, 3 published but the score
distribution drifted from the model's validation baseline (for a scheduler to alert on).
"""

from __future__ import annotations

import json

import typer

from jobs.runtime import console, echo, home, ray_session, registry_uri, tracking_uri, user_errors

DRIFT_EXIT = 3

app = typer.Typer(help="Read published score partitions.", no_args_is_help=True)


def score(
    model: str = typer.Option(
        "models:/aepipe-model@champion", help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model."
    ),
    input: str = typer.Option(None, "--input", "-i", help="Corpus path (default: AEPIPE_HOME/data/mnist)."),
    output: str = typer.Option(None, "--output", "-o", help="Output directory (default: AEPIPE_HOME/outputs/scores)."),
    partition: str | None = typer.Option(None, help="Publish under OUTPUT/PARTITION, e.g. dt=2024-06-01."),
    incremental: bool = typer.Option(
        False, help="Score only shards no partition under OUTPUT holds for this model version; nothing new is a no-op."
    ),
    mode: str = typer.Option("both", help="score | embed | both"),
    batch_size: int = typer.Option(1024, min=1, help="Rows per forward pass."),
    concurrency: int = typer.Option(1, min=1, help="Scorer actors."),
    num_cpus: float = typer.Option(1.0, min=0.01, help="CPUs per scorer actor."),
    num_gpus: float | None = typer.Option(
        None, min=0, help="GPUs per scorer actor (default: 1 if the cluster has one)."
    ),
    shards_per_pass: int = typer.Option(
        64, min=1, help="Input shards per actor-pool pass (each pass starts the pool anew)."
    ),
    psi_limit: float = typer.Option(0.2, help="Drift alarm above this population stability index."),
    ks_alpha: float = typer.Option(1e-3, help="Drift alarm below this Kolmogorov-Smirnov p-value ..."),
    ks_min: float = typer.Option(0.1, min=0, max=0.999, help="... when the KS statistic is also above this."),
    address: str | None = typer.Option(None, help="Ray address (default: RAY_ADDRESS or a local instance)."),
    tracking: str | None = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
) -> None:
    """Score the corpus with a pinned model version; publish one Parquet file per input shard exactly once."""
    from pipelines.config import ScoreConfig
    from pipelines.score.driver import ScoreRequest, run_scoring

    with user_errors():
        settings = ScoreConfig(
            batch_size=batch_size,
            concurrency=concurrency,
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            shards_per_pass=shards_per_pass,
            psi_limit=psi_limit,
            ks_alpha=ks_alpha,
            ks_min=ks_min,
        )
        req = ScoreRequest(
            model_uri=model,
            input_path=input or str((home() / "data" / "mnist").resolve()),
            output_path=output or str((home() / "outputs" / "scores").resolve()),
            partition=partition,
            incremental=incremental,
            tracking_uri=tracking_uri(tracking),
            registry_uri=registry_uri(),
            artifact_root=str((home() / "mlartifacts").resolve()),
            mode=mode,
            settings=settings,
        )
        with ray_session(address):
            result = run_scoring(req, log=echo)
    if result.noop:
        echo(f"no-op: nothing new to score with {result.model.uri}; {result.output_path} unchanged")
        return
    echo(
        f"published {result.rows} rows ({result.rows_scored} scored now; plan {result.plan}) with "
        f"{result.model.uri} in {result.seconds:.1f}s -> {result.output_path}"
    )
    if result.drift is not None:
        d = result.drift
        echo(f"drift: PSI {d.psi:.3f}, KS {d.ks:.3f} (p={d.ks_pvalue:.2g}), mean shift {d.mean_shift_std:+.2f} std")
        if d.drifted:
            console.print(
                f"[bold red]DRIFT ALARM:[/] scores of {d.rows} rows moved away from the validation "
                f"baseline of {result.model.uri}: {d.reason} (MLflow run {result.run_id})",
                highlight=False,
            )
            raise typer.Exit(DRIFT_EXIT)


@app.command("show")
def show(
    path: str = typer.Argument(..., help="A published partition directory."),
    rows: int = typer.Option(5, min=0, help="Rows to print."),
) -> None:
    """Print a partition's manifest summary and its first rows; refuses a partition without _SUCCESS."""
    from pipelines.score.publish import read_manifest, read_scores

    with user_errors():
        manifest = read_manifest(path)
        df = read_scores(path)
    summary = {k: manifest[k] for k in ("model", "rows", "plan", "drift", "published_at", "scoring_run_id")}
    summary["shards"] = len(manifest["shards"])
    echo(json.dumps(summary, indent=1))
    if rows:
        echo(df.head(rows).drop(columns=[c for c in ("embedding",) if c in df.columns]).to_string(index=False))
