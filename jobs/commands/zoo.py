"""``aepipe zoo``: list every registered autoencoder family."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def zoo() -> None:
    """Every model family you can name in ``model.name``, with a one-line description."""
    from aecore import describe_models

    table = Table("name", "description")
    for name, text in describe_models().items():
        table.add_row(name, text)
    Console().print(table)
