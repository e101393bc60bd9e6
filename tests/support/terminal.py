"""Run a command as a person does: on a pseudo-terminal (what the screen receives) or with stdout to a pipe."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import termios
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: ANSI control sequences (colours, cursor moves, erase): removed to read what the screen shows as text
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


@dataclass
class Screen:
    raw: str
    """Everything the terminal received, control sequences included."""
    returncode: int

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw)


def on_terminal(
    argv: Sequence[str], env: Mapping[str, str], cwd: str, columns: int = 120, timeout: float = 600
) -> Screen:
    """Run ``argv`` with stdin, stdout and stderr on a fresh pseudo-terminal of ``columns`` columns."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        list(argv),
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns)},
        cwd=cwd,
        start_new_session=True,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: every holder of the follower side has closed it
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return Screen(b"".join(chunks).decode("utf-8", "replace"), proc.wait(timeout=timeout))
