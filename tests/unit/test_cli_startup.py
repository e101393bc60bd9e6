"""``aepipe --help`` stays fast: the CLI's modules import torch, Ray and MLflow inside the commands only."""

from __future__ import annotations

import subprocess
import sys
from enum import Enum
from typing import Any

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


def test_top_level_help_builds_no_config_model():
    """pydantic and YAML are most of the start-up left once torch, Ray and MLflow are out: only commands load them."""
    modules = imported_modules("--help")
    assert not sorted(m for m in modules if m.split(".")[0] in ("pydantic", "yaml", "asyncio"))


def _command_paths(command: Any, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every leaf command of the click tree under ``command``, as the words that name it."""
    children = getattr(command, "commands", None)
    if not children:
        return [path]
    return [p for name, child in sorted(children.items()) for p in _command_paths(child, (*path, name))]


def test_every_command_answers_help():
    from typer.main import get_command
    from typer.testing import CliRunner

    from jobs.cli import app

    paths = _command_paths(get_command(app))
    assert ("score",) in paths and ("config", "show") in paths and len(paths) > 15
    for path in paths:
        result = CliRunner().invoke(app, [*path, "--help"])
        assert result.exit_code == 0 and "Usage" in result.output, (path, result.output[-500:])


@pytest.mark.parametrize("section", ["DataConfig", "TrainConfig", "TrackingConfig", "ScoreConfig", "JobConfig"])
def test_flag_help_read_from_source_equals_the_models_field_docs(section):
    import pipelines.config as config
    from pipelines.config_base import field_help

    model = getattr(config, section)
    for name, field in model.model_fields.items():
        text, default = field_help(section, name)
        assert text == " ".join((field.description or "").split()), name
        if isinstance(field.default, int | float | str | bool) and not isinstance(field.default, Enum):
            assert default == field.default, name
