"""``aepipe score``: score and/or embed a whole corpus with a registered model."""

from __future__ import annotations

from typing import Optional

import typer

from jobs.runtime import echo, home, ray_session, registry_uri, tracking_uri, user_errors


def score(
    model: str = typer.Option("models:/aepipe-model@champion", help="models:/NAME@ALIAS or models:/NAME/VERSION."),
    input: str = typer.Option(None, "--input", "-i", help="Corpus path (default: AEPIPE_HOME/data/mnist)."),
    output: str = typer.Option(None, "--output", "-o", help="Output directory (default: AEPIPE_HOME/outputs/scores)."),
    mode: str = typer.Option("both", help="score | embed | both"),
    batch_size: int = typer.Option(1024, min=1),
    concurrency: int = typer.Option(1, min=1, help="Scorer actors."),
    num_gpus: float = typer.Option(0.0, min=0, help="GPUs per scorer actor."),
    address: Optional[str] = typer.Option(None, help="Ray address (default: RAY_ADDRESS or a local instance)."),
    tracking: Optional[str] = typer.Option(None, "--tracking-uri", help="MLflow tracking URI."),
) -> None:
    """Score the corpus with a pinned model version and publish Parquet atomically."""
    from pipelines.score import ScoreRequest, run_scoring

    with user_errors():
        req = ScoreRequest(
            model_uri=model, input_path=input or str((home() / "data" / "mnist").resolve()),
            output_path=output or str((home() / "outputs" / "scores").resolve()),
            tracking_uri=tracking_uri(tracking), registry_uri=registry_uri(), mode=mode,
            batch_size=batch_size, concurrency=concurrency, num_gpus=num_gpus,
        )
        with ray_session(address):
            result = run_scoring(req, log=echo)
        echo(f"scored {result.rows} rows with {result.model.uri} in {result.seconds:.1f}s -> {result.output_path}")
