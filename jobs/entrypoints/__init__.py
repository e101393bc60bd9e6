"""Ray job entrypoints: ``python -m jobs.entrypoints.KIND ARGS`` runs ``aepipe KIND ARGS`` in the job driver.

Each module calls the same CLI code a user runs locally; inside a Ray job ``RAY_ADDRESS`` points at the
cluster, so the command connects to it instead of starting a local Ray.
"""

from __future__ import annotations

import sys


def run(*command: str, argv: list[str] | None = None) -> None:
    """Run ``aepipe COMMAND ARGV`` in this process and exit with its status."""
    from jobs.cli import app

    app([*command, *(sys.argv[1:] if argv is None else argv)], prog_name="aepipe")
