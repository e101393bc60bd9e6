"""Running the ``aepipe`` CLI in-process and checking that a user mistake ends cleanly."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from jobs.cli import app

runner = CliRunner()


def invoke(*args: str) -> Result:
    """``aepipe ARGS...`` in this process."""
    return runner.invoke(app, list(args))


def train(*overrides: str) -> Result:
    """``aepipe train`` with the MNIST dense config and ``overrides``."""
    return invoke("train", "--config", "jobs/configs/mnist_dense.yaml", *overrides)


def assert_clean_error(result: Result, *fragments: str) -> None:
    """Exit status 2, no traceback, and every fragment in the output."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output
