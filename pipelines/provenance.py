"""Which code ran and which process runs it: a directory's git commit, and an id of this driver process that a
later driver on the same host can check for life.

Nothing here reads environment variables: a commit known only from the environment (a Ray job's working_dir is
uploaded without ``.git``) is read by ``jobs/`` and handed in by the caller.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

#: The directory holding aecore/, pipelines/ and jobs/: the code whose commit a run records.
CODE_ROOT = Path(__file__).resolve().parents[1]


def git_commit(directory: str | Path) -> str | None:
    """HEAD of the git work tree whose top level is ``directory``; None when git, the repository or HEAD is missing.

    A directory inside some other repository (an installed package in a virtualenv under a checkout) is not that
    repository's code, so its top level must be ``directory`` itself.
    """
    try:
        out = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "--show-toplevel", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    if len(out) != 2 or Path(out[0]).resolve() != Path(directory).resolve():
        return None
    return out[1]


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks after boot, from /proc), "" where /proc is missing and the
    process exists, None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None
    except OSError:
        return None
    else:
        return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name before ")" may hold spaces
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # exists, owned by another user
    return ""


def driver_id() -> str:
    """``HOST/PID/START`` of this process: what :func:`driver_alive` checks (the start time tells a reused pid)."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{pid}/{_start_time(pid) or ''}"


def driver_alive(recorded: str) -> bool:
    """Whether the process a :func:`driver_id` names still runs. False for another host, which cannot be checked,
    and for a malformed or empty id."""
    host, _, rest = recorded.partition("/")
    pid, _, start = rest.partition("/")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return _start_time(int(pid)) == start
