"""Helpers shared by the unit and integration tests (fixtures live in ``tests/conftest.py``)."""

from pathlib import Path

#: The repository root.
REPO = Path(__file__).resolve().parents[2]
