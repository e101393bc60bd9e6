"""A command session sends everything that is not aepipe's own line to the log file (Python streams, logging
handlers made before and during it, warnings, C-level writes to fd 2); ``--verbose`` streams it as well; an
unexpected failure is one ``error:`` line naming the log. Run in a child process: fd 2 must be a real stderr."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys, warnings
    from pathlib import Path
    from jobs import console

    early = logging.getLogger("ray.early")
    early.addHandler(logging.StreamHandler(sys.stderr))  # made before the session, as Ray's are at import
    with console.session("cmd", Path(sys.argv[1]), verbose=sys.argv[2] == "1"):
        print("noise: print")
        early.warning("noise: early handler")
        late = logging.getLogger("ray.late")
        late.addHandler(logging.StreamHandler())  # made during the session, bound to the session's stderr
        late.warning("noise: late handler")
        warnings.warn("noise: warning")
        os.write(2, b"noise: fd 2\\n")
        console.line("mine: a line")
        if sys.argv[3] == "1":
            raise RuntimeError("boom")
    early.warning("after: early handler")
    late.warning("after: late handler")
    print("after: print")
    """
)
NOISE = ("noise: print", "noise: early handler", "noise: late handler", "noise: warning", "noise: fd 2")


def _run(home: Path, verbose: bool, fail: bool = False) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-c", SCRIPT, str(home), str(int(verbose)), str(int(fail))]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, timeout=60)


def _log(home: Path) -> str:
    [log] = (home / "logs").glob("cmd-*.log")
    return log.read_text()


def test_quiet_the_terminal_gets_the_lines_and_the_log_gets_everything(tmp_path):
    done = _run(tmp_path, verbose=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "mine: a line\nafter: print\n"
    assert done.stderr == "after: early handler\nafter: late handler\n"  # handlers back on the real stderr
    log = _log(tmp_path)
    assert all(noise in log for noise in NOISE) and "mine: a line" in log


def test_verbose_streams_everything_and_still_logs_it(tmp_path):
    done = _run(tmp_path, verbose=True)
    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr
    assert all(noise in shown for noise in NOISE) and done.stdout.count("mine: a line") == 1
    assert all(noise in _log(tmp_path) for noise in NOISE if noise != "noise: fd 2")


def test_an_unexpected_failure_is_one_error_line_naming_the_log(tmp_path):
    done = _run(tmp_path, verbose=False, fail=True)
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    [log] = (tmp_path / "logs").glob("cmd-*.log")
    assert line == f"error: RuntimeError: boom (the full log: {log})"
    assert "Traceback" in log.read_text() and "Traceback" not in done.stdout + done.stderr
