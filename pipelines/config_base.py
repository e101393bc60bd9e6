"""The parts of the job config a command line needs before it runs anything, without pydantic or YAML: the error
type, the enums its flags take and each field's help text and default.

The help texts are the field docstrings of :mod:`pipelines.config`, read from its source with ``ast``, so
``aepipe CMD --help`` shows them without building the pydantic models (a tenth of a second, the bulk of the
CLI's start-up); :mod:`pipelines.config` remains their one definition.
"""

from __future__ import annotations

import ast
import functools
from enum import StrEnum
from pathlib import Path
from typing import Any

CONFIG_SOURCE = Path(__file__).with_name("config.py")


class ConfigError(ValueError):
    """A configuration file or override that cannot be used; the message says which key and why."""


class ResumePolicy(StrEnum):
    """Whether a training job continues an unfinished run of the same name (see pipelines/train/resume.py)."""

    auto = "auto"
    """Continue an unfinished run with the same config and corpus fingerprints; else start a new run and say why."""
    never = "never"
    """Always start a new run."""
    require = "require"
    """Continue a matching unfinished run, or stop with an error saying why none matches."""


def _default(value: ast.expr | None) -> Any:
    """A field's default from its assignment: a literal, ``Field(default=literal, ...)``, else None."""
    if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "Field":
        value = next((k.value for k in value.keywords if k.arg == "default"), None)
    try:
        return ast.literal_eval(value) if value is not None else None
    except ValueError:  # an expression (an enum member, a factory)
        return None


@functools.cache
def _fields() -> dict[str, dict[str, tuple[str, Any]]]:
    """Class name -> field name -> (docstring on one line, literal default) for every class of config.py."""
    found: dict[str, dict[str, tuple[str, Any]]] = {}
    for node in ast.parse(CONFIG_SOURCE.read_text()).body:
        if not isinstance(node, ast.ClassDef):
            continue
        fields = found.setdefault(node.name, {})
        for item, after in zip(node.body, [*node.body[1:], None], strict=True):
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                doc = ast.get_docstring(ast.Module([after], []), clean=True) if isinstance(after, ast.Expr) else None
                fields[item.target.id] = (" ".join((doc or "").split()), _default(item.value))
    return found


def field_help(section: str, name: str) -> tuple[str, Any]:
    """The docstring (on one line) and literal default of field ``name`` of config class ``section`` (e.g.
    ``"ScoreConfig"``); the default is None when it is not a literal.

    Raises:
        KeyError: no such class or field in :mod:`pipelines.config`.
    """
    return _fields()[section][name]
