"""Helpers for the operations tests: free loopback ports, and real server processes (``mlflow server``,
``ray start --head --block``) started in their own process group and stopped by that group's id."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

#: The running interpreter's scripts directory (the venv's bin/): where ray, mlflow and aepipe are installed.
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` in a new session (its own process group), output to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_http(
    url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 240.0, headers: dict[str, str] | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log when the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(1.0)
    raise TimeoutError(f"{url} not up after {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL what is left of it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            time.sleep(2.0)  # let children of the group exit before the SIGKILL sweep


def sweep(marker: str) -> int:
    """SIGKILL leftover processes whose command line names ``marker`` (a temp dir only our server used);
    returns how many were found. Ray starts some helpers in sessions of their own."""
    import psutil

    found = 0
    for p in psutil.process_iter(["pid", "cmdline"]):
        if marker in " ".join(p.info["cmdline"] or []) and p.pid != os.getpid():
            found += 1
            with contextlib.suppress(psutil.Error):
                p.kill()
    return found
