"""One module per command group of the ``aepipe`` CLI."""
