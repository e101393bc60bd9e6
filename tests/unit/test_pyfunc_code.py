"""The code a registered pyfunc ships (``code_paths``) is complete and light, and its requirements are real
packages: ``pipelines.bundle`` imported from the staged copy alone pulls in no Ray, no MLflow and no other
``pipelines`` module."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

from pipelines import tracking

# Run with -I -S: no PYTHONPATH, no cwd, no .pth files (so not aepipe's editable-install finder); the staged
# code and the interpreter's site-packages are the whole path.
PROBE = """
import json, sys
sys.path[:0] = [sys.argv[1]]
sys.path.append(sys.argv[2])
import pipelines.bundle
print(json.dumps({"modules": sorted(sys.modules), "file": pipelines.bundle.__file__}))
"""


def _import_staged(code_dir: Path) -> dict:
    """Import ``pipelines.bundle`` in an isolated interpreter from ``code_dir``; the loaded modules and file."""
    site = sysconfig.get_paths()["purelib"]
    out = subprocess.run(
        [sys.executable, "-I", "-S", "-c", PROBE, str(code_dir), site],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=code_dir,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_staged_code_imports_bundle_without_ray_mlflow_or_drivers(tmp_path):
    code_paths = tracking.stage_pyfunc_code(tmp_path)
    assert sorted(Path(p).name for p in code_paths) == ["aecore", "pipelines"]
    assert sorted(p.name for p in (tmp_path / "pipelines").iterdir()) == ["__init__.py", "bundle.py"]
    assert not list(tmp_path.rglob("__pycache__"))

    loaded = _import_staged(tmp_path)
    assert Path(loaded["file"]).is_relative_to(tmp_path)
    ours = {m for m in loaded["modules"] if m.split(".")[0] in ("pipelines", "jobs")}
    assert ours == {"pipelines", "pipelines.bundle"}
    heavy = {m.split(".")[0] for m in loaded["modules"]} & {"ray", "mlflow", "sklearn", "matplotlib"}
    assert heavy == set()


def test_requirements_pin_real_packages_the_installed_versions_satisfy():
    reqs = [Requirement(r) for r in tracking.pyfunc_requirements()]
    assert [r.name for r in reqs] == list(tracking.PYFUNC_PACKAGES)
    assert "aepipe" not in {r.name for r in reqs}
    for req in reqs:
        installed = version(req.name).split("+")[0]
        assert req.specifier.contains(installed), (req, installed)
        assert any(s.operator == "<" for s in req.specifier), f"{req} has no upper bound"
