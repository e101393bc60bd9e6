"""The modules whose functions Ray Data tasks run (reads, validation, the normalizer pass, a scoring pass's read
stage) import neither torch nor MLflow: every task process, split coordinator and the Ray Train controller imports
the module of each function it runs or unpickles, and torch alone costs each about 1.5 s of CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import REPO

TASK_MODULES = ("pipelines.data", "pipelines.score.tagging")


@pytest.mark.parametrize("module", TASK_MODULES)
def test_a_task_module_imports_neither_torch_nor_mlflow(module):
    probe = f"import json, sys, {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    modules = json.loads(result.stdout.splitlines()[-1])
    assert module in modules  # the probe imported what it names
    heavy = sorted(m for m in modules if m.split(".")[0] in ("torch", "mlflow"))
    assert not heavy, f"{module} imports {heavy[:10]}"
