"""Exactly-once publication of a scored partition on any store (local disk, ``s3://``, ``gs://``), without rename.

Layout of a partition ``P`` (a path or URI)::

    P/_SUCCESS                            JSON manifest: the commit point, written last in one PUT
    P/<shard>.<attempt>.parquet ...       scored rows, written by the scoring actors under names unique per attempt
    P/_markers/<model>-v<version>-<mode>/<shard>.json   a finished shard not yet published (what resume reads)
    P/_inputs/<shard>.parquet             an image shard's input files (name, size, mtime): what incremental runs skip
    P/_quarantine/<input file>/...        bad input records (``on_bad_records=skip``)
    P/_LEASE                              which run is writing P now

Readers trust only the manifest: it lists, per input shard, exactly the data files that hold its rows (and an
image shard's input index), so files
of a killed attempt or of an older generation are never read, and nothing half-written is ever visible. A
re-run finds the shards a killed run finished from their markers (fingerprint, model and files) and scores only
the rest. After a commit, data files the new manifest does not list are deleted (older generations and
orphans of killed attempts), except those of a run that holds the lease at that moment.

Two runs aimed at one partition: each takes the lease when it starts (the later one wins it) and checks it
right before writing the manifest, so the run that lost the lease stops with :class:`PartitionTakenError`
and publishes nothing. (An object store offers no compare-and-swap here; two commits within the same
moment can still both pass the check, and then the later manifest replaces the earlier one: each is
complete, so readers still never see rows of two runs mixed.)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.data.chunks import FileChunk, single_file
from pipelines.data.errors import DataError
from pipelines.data.files import list_files, relative_names

MANIFEST = "_SUCCESS"
MARKERS = "_markers"
LEASE = "_LEASE"
QUARANTINE = "_quarantine"
INPUTS = "_inputs"
FORMAT = "aepipe.scores/3"
#: Formats this version reads: /2 listed an image shard's input files in the manifest itself.
READABLE = (FORMAT, "aepipe.scores/2")


class UnpublishedError(DataError):
    """A scores partition that is missing, still being written, or inconsistent with its manifest."""


class PartitionTakenError(DataError):
    """Another scoring run took over the partition while this one was scoring it."""


@dataclass(frozen=True)
class Shard:
    """One input shard: its path, its name relative to the corpus root (output files are named after it),
    fingerprint."""

    path: str
    name: str
    size: int
    mtime_ns: int
    rows: int | None
    """Rows in the shard (a Parquet footer's count, an image chunk's files); None for time series, whose windows
    are known only once read."""
    files: FileChunk
    """The input files it reads: one Parquet file, or an image chunk (files of one folder)."""
    indexed: bool = False
    """An image chunk: its files are recorded in an input index published with the shard
    (:func:`input_index`), so an incremental run can leave out the files a partition holds."""

    @property
    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mtime_ns": self.mtime_ns, "rows": self.rows}

    @property
    def entry(self) -> dict[str, Any]:
        """The fingerprint, with an image chunk's input index: what its marker and the manifest record."""
        return {**self.fingerprint, "input_index": input_index(self.name)} if self.indexed else self.fingerprint


def input_index(shard_name: str) -> str:
    """Where an image shard's input index lies, relative to the partition: named after the shard, whose name
    holds a digest of its files, so every run that scores the shard writes the same index there."""
    return f"{INPUTS}/{shard_name.replace('/', '__')}.parquet"


def _footer_rows(path: str) -> int | None:
    """Row count from a Parquet footer; None for an unreadable file, which the data layer then fails on
    (naming the file) or quarantines, per ``on_bad_records``."""
    try:
        with storage.open_input(path) as fh:
            return int(pq.ParquetFile(fh).metadata.num_rows)
    except (OSError, pa.ArrowInvalid):
        return None


def list_shards(path: str, footers: bool = True) -> list[Shard]:
    """Shards of a corpus of Parquet files, one per file, with size, modification time and row count (from the
    footer; None without ``footers``)."""
    files = list_files(path, (".parquet",))
    shards = []
    for f, name in zip(files, relative_names(files, path), strict=True):
        info = storage.info(f)
        rows = _footer_rows(f) if footers else None
        shards.append(Shard(f, name, int(info.size or 0), int(info.mtime_ns or 0), rows, single_file(f, name, info)))
    return shards


def input_fingerprint(shards: list[Shard]) -> str:
    """sha256 over every shard's name, size, mtime and row count."""
    text = json.dumps([s.fingerprint for s in sorted(shards, key=lambda s: s.name)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


# -- data files and markers -----------------------------------------------------------------------------------
def new_attempt() -> str:
    """A token naming one run's attempt at a partition: in its data file names and its lease."""
    return uuid.uuid4().hex[:12]


def data_file_name(shard_name: str, attempt: str) -> str:
    """A new, unique data file name for rows of ``shard_name`` (relative to the partition): the shard's own
    name with the attempt and a random part inserted before ``.parquet``."""
    stem = shard_name[: -len(".parquet")] if shard_name.endswith(".parquet") else shard_name
    return f"{stem}.{attempt}-{uuid.uuid4().hex[:8]}.parquet"


_DATA_FILE = re.compile(r"\.([0-9a-f]{12})-[0-9a-f]{8}\.parquet$")


def attempt_of(data_file: str) -> str | None:
    """The attempt token in a name :func:`data_file_name` made; None for other names (never swept)."""
    found = _DATA_FILE.search(data_file)
    return found.group(1) if found else None


def identity_key(identity: dict[str, str]) -> str:
    return f"{identity['model_name']}-v{identity['model_version']}-{identity['mode']}"


def _marker_path(partition: str, identity: dict[str, str], shard_name: str) -> str:
    return storage.join(partition, MARKERS, identity_key(identity), shard_name.replace("/", "__") + ".json")


def write_marker(partition: str, identity: dict[str, str], marker: dict[str, Any]) -> None:
    """Record a finished shard (fingerprint, model, its data files and summary) for a later resume."""
    storage.write_json(_marker_path(partition, identity, marker["name"]), marker)


def read_marker(partition: str, shard: Shard, identity: dict[str, Any]) -> dict[str, Any] | None:
    """A shard's completion marker when it matches the shard's fingerprint and ``identity`` (model, mode) and
    every data file it lists (and its input index) exists; otherwise None (the shard must be scored)."""
    path = _marker_path(partition, identity, shard.name)
    if not storage.is_file(path):
        return None
    marker = storage.read_json(path)
    expected = {**shard.fingerprint, **identity}
    if any(marker.get(k) != v for k, v in expected.items()):
        return None
    written = [f["path"] for f in marker.get("files", [])] + ([shard.entry["input_index"]] if shard.indexed else [])
    if not all(storage.is_file(storage.join(partition, f)) for f in written):
        return None
    return dict(marker)


# -- the lease --------------------------------------------------------------------------------------------------
def take_lease(partition: str, attempt: str) -> dict[str, Any] | None:
    """Make ``attempt`` the partition's writer; returns the lease it replaced (another run's, perhaps a killed
    one's), or None."""
    path = storage.join(partition, LEASE)
    previous = storage.read_json(path) if storage.is_file(path) else None
    lease = {
        "attempt": attempt,
        "started_at": datetime.now(UTC).isoformat(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
    }
    storage.write_json(path, lease)
    return previous if previous and previous.get("attempt") != attempt else None


def lease_holder(partition: str) -> dict[str, Any] | None:
    path = storage.join(partition, LEASE)
    return storage.read_json(path) if storage.is_file(path) else None


def check_lease(partition: str, attempt: str) -> None:
    """Raise :class:`PartitionTakenError` unless ``attempt`` still holds the partition's lease."""
    holder = lease_holder(partition)
    if holder is None or holder.get("attempt") != attempt:
        who = "nobody" if holder is None else f"run {holder.get('attempt')} started {holder.get('started_at')}"
        raise PartitionTakenError(
            f"{partition}: another scoring run took over this partition ({who}) while this one was scoring; "
            "nothing of this run was published"
        )


def release_lease(partition: str, attempt: str) -> None:
    holder = lease_holder(partition)
    if holder is not None and holder.get("attempt") == attempt:
        storage.delete_file(storage.join(partition, LEASE))


# -- verify, commit, clean up -----------------------------------------------------------------------------------
def _file_meta(partition: str, name: str) -> pq.FileMetaData:
    path = storage.join(partition, name)
    try:
        with storage.open_input(path) as fh:
            return pq.ParquetFile(fh).metadata
    except (OSError, pa.ArrowInvalid) as exc:
        raise UnpublishedError(f"{path}: a data file of the partition cannot be read ({exc})") from None


def verify(partition: str, markers: list[dict[str, Any]], schema: pa.Schema) -> int:
    """Check every shard from its data files' footers: their rows add up to what the scorers reported and to
    the input shard's rows less its quarantined ones (``skipped``), and their schema is ``schema``. Returns
    the total rows. Reads footers only, never rows."""
    total = 0
    for m in markers:
        rows = 0
        for f in m["files"]:
            meta = _file_meta(partition, f["path"])
            got = meta.schema.to_arrow_schema()
            if not got.equals(schema):
                raise UnpublishedError(f"{f['path']}: schema {got} differs from the expected {schema}")
            rows += meta.num_rows
        want = None if m["rows"] is None else m["rows"] - m.get("skipped", 0)
        if rows != m["output_rows"] or (want is not None and rows != want):
            raise UnpublishedError(
                f"{partition}: shard {m['name']} has {rows} rows in its files, but the scorers reported "
                f"{m['output_rows']} and the input has {want} good rows"
            )
        total += rows
    return total


def commit(partition: str, attempt: str, manifest: dict[str, Any]) -> None:
    """Publish: check the lease is still this run's, then write ``_SUCCESS`` (one PUT)."""
    check_lease(partition, attempt)
    storage.write_json(storage.join(partition, MANIFEST), {"format": FORMAT, **manifest})


def _stale(name: str, listed: set[str], holder: str | None) -> bool:
    """Whether the partition's file ``name`` is one :func:`sweep` deletes: a data file of an attempt other than
    ``holder``'s, or an input index (only while no other run holds the lease), that the manifest does not list."""
    if name in listed:
        return False
    if name.startswith(INPUTS + "/"):
        return holder is None
    return attempt_of(name) not in (None, holder) and not name.startswith("_")


def sweep(partition: str, attempt: str, identity: dict[str, str], listed: set[str]) -> list[str]:
    """After ``attempt``'s commit: delete this model's markers and every data file and input index the manifest
    does not list (``listed``: older generations, orphans of killed attempts, this attempt's own retried
    writes), sparing the files of another run that holds the lease by now. Returns the deleted files."""
    storage.delete_dir(storage.join(partition, MARKERS, identity_key(identity)))
    holder = (lease_holder(partition) or {}).get("attempt")
    holder = None if holder == attempt else holder
    root = storage.resolve(partition)[1].rstrip("/")
    files = {e.path[len(root) + 1 :]: e for e in storage.list_dir(partition, recursive=True)}
    nested = {n.rsplit("/", 1)[0] + "/" for n in files if "/" in n and n.rsplit("/", 1)[1] in (MANIFEST, LEASE)}
    doomed = [
        name
        for name, entry in files.items()
        if entry.type == pafs.FileType.File
        and _stale(name, listed, holder)
        and not name.startswith(tuple(nested))  # partitions nested in this one
    ]
    for name in doomed:
        storage.delete_file(storage.join(partition, name))
    return doomed


# -- readers ----------------------------------------------------------------------------------------------------
def read_manifest(path: str) -> dict[str, Any]:
    """The manifest of a published partition; :class:`UnpublishedError` when there is none."""
    manifest = storage.join(path, MANIFEST)
    if not storage.is_file(manifest):
        if not storage.list_dir(path):
            raise UnpublishedError(f"{path}: no such scores partition")
        raise UnpublishedError(
            f"{path}: no {MANIFEST} manifest, so the partition is incomplete or still being written; "
            "refusing to read it"
        )
    data = storage.read_json(manifest)
    if data.get("format") not in READABLE:
        raise UnpublishedError(f"{manifest}: unknown manifest format {data.get('format')!r}")
    return dict(data)


def published_partitions(root: str) -> list[str]:
    """``root`` and its direct sub-directories that carry a manifest (as :func:`storage.normalize` spells them)."""
    root = storage.normalize(root)
    entries = storage.list_dir(root)
    subdirs = sorted(
        storage.uri_of(root, e)
        for e in entries
        if e.type == pafs.FileType.Directory and not e.base_name.startswith((".", "_"))
    )
    return [p for p in [root, *subdirs] if storage.is_file(storage.join(p, MANIFEST))]


def data_files(path: str, manifest: dict[str, Any]) -> list[str]:
    """Every data file a manifest lists, as full paths, in shard order."""
    return [storage.join(path, f["path"]) for s in manifest["shards"] for f in s["files"]]


def read_scores(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a published partition (exactly the files its manifest lists); refuses one without ``_SUCCESS``."""
    manifest = read_manifest(path)
    files = data_files(path, manifest)
    missing = [f for f in files if not storage.is_file(f)]
    if missing:
        raise UnpublishedError(f"{path}: manifest lists files that are missing: {', '.join(missing[:5])}")
    if not files:
        return pa.schema([(n, pa.string()) for n in manifest["schema"]]).empty_table().to_pandas()
    tables = []
    for f in files:
        with storage.open_input(f) as fh:
            tables.append(pq.read_table(fh, columns=columns))
    table = pa.concat_tables(tables)
    if table.num_rows != manifest["rows"]:
        raise UnpublishedError(f"{path}: {table.num_rows} rows in its files but the manifest says {manifest['rows']}")
    return table.to_pandas()
