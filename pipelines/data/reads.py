"""A log of the corpus files that read tasks open, for counting how often a job reads its corpus (tests, benches).

Off unless asked for: inside :func:`logging_reads`, every record reader built by
:func:`pipelines.data.records.read_in_tasks` writes one empty marker per input file it is about to read into the
log folder (any storage path). The folder is captured when the dataset is built, and travels to the tasks with
the reader's arguments, so it works on any node that can reach the folder.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import ray.data

from pipelines import storage

#: The driver's ``DataContext`` key holding the log folder while :func:`logging_reads` is active.
READ_LOG_KEY = "aepipe.read_log"
_SUFFIX = ".read"


@contextlib.contextmanager
def logging_reads(folder: str) -> Iterator[str]:
    """Record, in ``folder``, each input file opened by the record readers of the datasets built in the block."""
    context = ray.data.DataContext.get_current()
    before = context.get_config(READ_LOG_KEY)
    context.set_config(READ_LOG_KEY, folder)
    try:
        yield folder
    finally:
        context.set_config(READ_LOG_KEY, before)


def active_log() -> str | None:
    """The folder reads are logged to, or None (the default: nothing logged)."""
    folder = ray.data.DataContext.get_current().get_config(READ_LOG_KEY)
    return None if folder is None else str(folder)


def note_read(folder: str, file: str) -> None:
    """Record one opening of ``file`` (a marker named after the file's base name and a unique suffix)."""
    name = f"{file.rsplit('/', 1)[-1]}.{uuid.uuid4().hex}{_SUFFIX}"
    with storage.open_output(storage.join(folder, name)):
        pass


def read_counts(folder: str) -> dict[str, int]:
    """How many times each input file (by base name) was opened while the log was active."""
    counts: dict[str, int] = {}
    for entry in storage.list_dir(folder):
        if entry.base_name.endswith(_SUFFIX):
            base = entry.base_name[: -len(_SUFFIX)].rsplit(".", 1)[0]
            counts[base] = counts.get(base, 0) + 1
    return counts
