"""``aepipe --help`` stays fast: the CLI's modules import torch, Ray and MLflow inside the commands only."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO

HEAVY = ("torch", "ray", "mlflow")


def imported_modules(*args: str) -> set[str]:
    """Every module ``python -X importtime -m jobs.cli ARGS`` imports (parsed from its stderr)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "jobs.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("import time:")]
    return {line.rsplit("|", 1)[1].strip() for line in lines[1:]}  # the first line is the header


@pytest.mark.parametrize("args", [["--help"], ["models", "--help"], ["score", "--help"], ["--version"]])
def test_help_imports_no_heavy_module(args):
    modules = imported_modules(*args)
    assert "typer" in modules  # the parsing worked: the CLI itself was imported
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert not heavy, f"aepipe {' '.join(args)} imports {heavy[:10]}"


def test_version_names_the_installed_package():
    result = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "--version"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0
    assert result.stdout.startswith("aepipe 0.") or result.stdout.startswith("aepipe (not installed)")


def test_champion_alias_matches_the_promotion_gate():
    from jobs.commands.models import CHAMPION
    from pipelines.tracking.promotion import CHAMPION as GATE_CHAMPION

    assert CHAMPION == GATE_CHAMPION
