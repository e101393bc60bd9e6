"""What a command shows on the terminal, and where everything else goes.

Quiet by default: while a command that runs Ray is in :func:`session`, Python's ``sys.stdout`` and
``sys.stderr`` (Ray's forwarded worker and controller output, Ray Data's, MLflow's and every other logger's
stream handlers, warnings) are written to a log file under ``AEPIPE_HOME/logs``. The terminal gets aepipe's own
lines (:func:`line`, each once), live progress when stdout is a terminal (rich bars for the long steps; plain
lines otherwise: CI, pipes, Ray job logs), and the errors. ``--verbose`` streams everything to the terminal too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import typer
from rich.console import Console
from rich.markup import escape


class _Tee:
    """A text stream writing to the log file and, when verbose, to a terminal stream as well."""

    def __init__(self, log: TextIO, lock: threading.Lock, also: TextIO | None) -> None:
        self.log, self.lock, self.also = log, lock, also

    def write(self, text: str) -> int:
        with self.lock:
            if not self.log.closed:
                self.log.write(text)
        if self.also is not None:
            self.also.write(text)
        return len(text)

    def flush(self) -> None:
        with self.lock:
            if not self.log.closed:
                self.log.flush()
        if self.also is not None:
            self.also.flush()

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name: str) -> Any:  # encoding, errors, ... as the terminal stream has them
        return getattr(self.also or sys.__stderr__, name)


@dataclass
class _Session:
    out: TextIO
    err: TextIO
    verbose: bool = True
    log_path: Path | None = None
    live: Any = None
    """The :class:`jobs.bars.Live` bars when stdout is a terminal."""
    log: TextIO | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def write_log(self, text: str) -> None:
        with self.lock:
            if self.log is not None and not self.log.closed:
                self.log.write(text + "\n")
                self.log.flush()


_sessions: list[_Session] = []


def _current() -> _Session:
    return _sessions[-1] if _sessions else _Session(sys.stdout, sys.stderr)


def verbose() -> bool:
    """Whether everything streams to the terminal (no session, or ``--verbose``)."""
    return _current().verbose


def log_path() -> Path | None:
    """The log file of the running session, if any."""
    return _current().log_path


def line(message: str) -> None:
    """One of aepipe's own lines: on the terminal (above the live bars), and in the log."""
    s = _current()
    if s.live is not None:
        s.live.print(message)
    else:
        print(message, file=s.out, flush=True)
    s.write_log(message)


def error(message: str, label: str = "error") -> None:
    """``error: message`` (or another red ``label``) on the terminal's stderr, and in the log."""
    s = _current()
    if s.live is not None:
        s.live.stop()
    Console(file=s.err, soft_wrap=True).print(f"[bold red]{label}:[/] {escape(message)}", highlight=False)
    s.write_log(f"{label}: {message}")


class TerminalProgress:
    """:class:`pipelines.progress.Progress` drawn on the terminal: bars when live, nothing between lines when
    stdout is not a terminal (the lines say it)."""

    def task(self, description: str, total: float | None = None) -> Any:
        from pipelines.progress import SILENT

        live = _current().live
        return live.task(description, total) if live is not None else SILENT.task(description, total)


def _stream_handlers(streams: tuple[Any, ...]) -> list[logging.StreamHandler[Any]]:
    loggers = [logging.getLogger(), *(v for v in logging.Logger.manager.loggerDict.values())]
    return [
        h
        for lg in loggers
        if isinstance(lg, logging.Logger)
        for h in lg.handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler) and h.stream in streams
    ]


def _redirect_fd2(log: TextIO) -> int | None:
    """Point file descriptor 2 at the log, for what Ray's C++ core writes there itself; a copy of the old fd 2
    (None when this process's ``sys.stderr`` is not fd 2, e.g. under a test runner's capture)."""
    try:
        if sys.stderr.fileno() != 2:
            return None
    except (AttributeError, OSError, ValueError):
        return None
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(log.fileno(), 2)
    return saved


@contextlib.contextmanager
def session(command: str, home: Path, verbose: bool = False) -> Iterator[Path]:
    """Run a command's block with the streams as the module describes; yields the log file's path."""
    out, err = sys.stdout, sys.stderr
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"{command}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    log = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115  # closed when the session ends
    saved_fd = None if verbose else _redirect_fd2(log)
    # the terminal's stderr: a copy of fd 2 when fd 2 itself now writes to the log
    term_err = err if saved_fd is None else os.fdopen(saved_fd, "w", buffering=1, encoding="utf-8")
    s = _Session(out, term_err, verbose, path, log=log)
    stdout, stderr = _Tee(log, s.lock, out if verbose else None), _Tee(log, s.lock, err if verbose else None)
    moved = _stream_handlers((out, err, sys.__stdout__, sys.__stderr__))
    previous = [h.stream for h in moved]
    if out.isatty() and not verbose:
        from jobs.bars import Live

        s.live = Live(out)
    _sessions.append(s)
    sys.stdout, sys.stderr = stdout, stderr
    for h in moved:
        h.setStream(stderr)
    try:
        yield path
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # not the user's input (user_errors turned those into exit 2): a bug or an outage
        import traceback

        s.write_log("".join(traceback.format_exception(exc)))
        error(f"{type(exc).__name__}: {exc} (the full log: {path})")
        raise SystemExit(1) from None
    finally:
        sys.stdout, sys.stderr = out, err
        for h, stream in zip(moved, previous, strict=True):
            h.setStream(stream)
        for h in _stream_handlers((stdout, stderr)):  # created during the session (Ray's, on import)
            h.setStream(err)
        if s.live is not None:
            s.live.stop()
        _sessions.pop()
        if saved_fd is not None:
            term_err.flush()
            os.dup2(saved_fd, 2)
            term_err.close()
        with s.lock:
            log.close()
