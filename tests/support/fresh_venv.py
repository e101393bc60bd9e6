"""A fresh virtualenv without aepipe, for loading a registered model the way its users do.

``python -m venv --without-pip`` gives the venv its own interpreter and an empty site-packages; a ``.pth`` file
there lists this interpreter's site-packages as a plain path, which gives it the packages the model's
requirements name (torch, safetensors, numpy, pandas, pydantic, mlflow) without running that directory's own
``.pth`` files, so aepipe's editable-install finder is never installed and the repository is not on the path
(run it with an empty working directory and no PYTHONPATH). Installing the requirements for real takes over a
minute and needs the network, so it is not done in the suite; the requirements themselves are checked in
``tests/unit/test_pyfunc_code.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

#: Run by the fresh virtualenv's interpreter: argv = tracking URI, model URI, input JSON, output JSON.
LOAD_AND_PREDICT = """
import importlib.util, json, sys
leaks = [m for m in ("aecore", "pipelines", "jobs") if importlib.util.find_spec(m) is not None]
import mlflow, numpy as np, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
rows = json.load(open(sys.argv[3]))
out = model.predict(pd.DataFrame({"x": [np.asarray(r, dtype=np.float64) for r in rows]}))
import pipelines.bundle
json.dump({
    "leaks_before_load": leaks,
    "bundle_file": pipelines.bundle.__file__,
    "ray_imported": any(m == "ray" or m.startswith("ray.") for m in sys.modules),
    "score": out["score"].tolist(),
    "is_anomaly": out["is_anomaly"].astype(bool).tolist(),
    "embedding": [list(map(float, e)) for e in out["embedding"]],
}, open(sys.argv[4], "w"))
"""


def write_script(venv: Path, name: str, entry: str) -> None:
    """A console script in ``venv/bin`` run by the venv's interpreter (what pip writes on install)."""
    module, func = entry.split(":")
    script = venv / "bin" / name
    script.write_text(f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {func}\nsys.exit({func}())\n")
    script.chmod(0o755)


def fresh_venv(root: Path) -> Path:
    """A new virtualenv that sees this interpreter's installed packages but not aepipe (see the module doc)."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    paths = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "installed-packages.pth").write_text("\n".join(paths) + "\n")
    write_script(venv, "uvicorn", "uvicorn.main:main")  # `mlflow models serve` runs `uvicorn` from PATH
    return venv


def isolated_env(venv: Path, uri: str, **extra: str) -> dict[str, str]:
    """The environment of the fresh-venv processes: no PYTHONPATH, no inherited MLflow settings; ``extra``
    (e.g. MLflow credentials) on top."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("MLFLOW_")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri, **extra}


def serve_and_predict(venv: Path, model_uri: str, env: dict[str, str], rows: list[list[float]], log: Path) -> list:
    """``mlflow models serve -m MODEL_URI --env-manager local`` from ``venv`` on a free loopback port (its own
    process group, stopped by id): POST ``rows`` (column ``x``) to ``/invocations``; the predictions."""
    import json
    import urllib.request

    from tests.support.services import free_port, start, stop, wait_http

    port = free_port()
    cmd = [str(venv / "bin" / "python"), "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local"]
    proc = start([*cmd, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], env, log)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, log, timeout_s=180)
        body = json.dumps({"dataframe_records": [{"x": r} for r in rows]}).encode()
        url = f"http://127.0.0.1:{port}/invocations"
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            return list(json.loads(response.read())["predictions"])
    finally:
        stop(proc)
