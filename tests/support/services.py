"""Helpers for the operations tests: free loopback ports, and real server processes (``mlflow server``,
``ray start --block``, ``postgres``, ``moto_server``) started in their own process group and stopped by that
group's id. ``tests/support/production.py`` composes them into the production-shaped environment."""

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
from collections.abc import Callable
from pathlib import Path

#: The running interpreter's scripts directory (the venv's bin/): where ray, mlflow and aepipe are installed.
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def as_user(user: str | None) -> dict:
    """``subprocess`` arguments that run a child as ``user`` (and only its group); none for None. Needs root."""
    return {"user": user, "group": user, "extra_groups": []} if user else {}


def start(cmd: list[str], env: dict[str, str], log: Path, user: str | None = None) -> subprocess.Popen:
    """Start ``cmd`` in a new session (its own process group), output to ``log``; as ``user`` when given (as
    root, for servers that refuse to run as root: PostgreSQL)."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **as_user(user)
        )


def wait_for(ready: Callable[[], bool], proc: subprocess.Popen, log: Path, what: str, timeout_s: float = 240.0) -> None:
    """Poll ``ready()`` until it is true; fail with the server's log when the process dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        if ready():
            return
        time.sleep(0.25)
    raise TimeoutError(f"{what} not ready after {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


def wait_http(
    url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 240.0, headers: dict[str, str] | None = None
) -> None:
    """Poll ``url`` until it answers 200; fail with the server's log when the process dies or time runs out."""

    def answers() -> bool:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=5) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    wait_for(answers, proc, log, url, timeout_s)


def stop(proc: subprocess.Popen, grace_s: float = 10.0, first: signal.Signals = signal.SIGTERM) -> None:
    """``first`` (SIGTERM; PostgreSQL's fast shutdown is SIGINT) to the process group we started, then SIGKILL
    what is left of it."""
    for sig in (first, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            continue
        if sig == first:
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
