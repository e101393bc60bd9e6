"""Exactly-once publication of a scored partition: stage per shard, verify, swap into place, manifest.

Layout of a published partition (a local directory)::

    PARTITION/part-00000.parquet ...   one output file per input shard, named like the input shard
    PARTITION/_markers/*.json          per-shard completion markers (hidden from Parquet readers)
    PARTITION/_SUCCESS                 JSON manifest, the last file written; readers refuse without it

Work in progress lives in a sibling ``.PARTITION.staging-<model>-v<version>-<mode>`` directory with the
same layout: a shard's file is written under a temporary name, renamed, then its marker is written, so
a killed job resumes by skipping shards whose marker matches the input shard's fingerprint. Publishing
renames the verified staging directory onto the partition (one rename when the partition is new; the old
partition is moved aside first when it is replaced, so readers briefly see no partition, never half of one).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipelines.data.errors import DataError
from pipelines.data.files import list_files

MANIFEST = "_SUCCESS"
MARKERS = "_markers"
FORMAT = "aepipe.scores/1"


class UnpublishedError(DataError):
    """A scores partition that is missing, still being written, or inconsistent with its manifest."""


@dataclass(frozen=True)
class Shard:
    """One input shard: its path, its name relative to the corpus root (= output name), fingerprint."""

    path: str
    name: str
    size: int
    mtime_ns: int
    rows: int | None
    """Rows in the file (Parquet footer); None when the reader derives rows (windows, images)."""

    @property
    def fingerprint(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mtime_ns": self.mtime_ns, "rows": self.rows}


def _footer_rows(fs: pafs.FileSystem, path: str) -> int | None:
    """Row count from a Parquet footer; None for an unreadable file, which the data layer then fails on
    (naming the file) or quarantines, per ``on_bad_records``."""
    try:
        with fs.open_input_file(path) as fh:
            return int(pq.ParquetFile(fh).metadata.num_rows)
    except (OSError, pa.ArrowInvalid):
        return None


def list_shards(path: str) -> list[Shard]:
    """The Parquet shards of a corpus with size, modification time and row count (from the footer)."""
    files = list_files(path, (".parquet",))
    fs, root = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), os.path.abspath(path))
    shards = []
    for f in files:
        local = fs.normalize_path(f.split("://", 1)[1]) if "://" in f else os.path.abspath(f)
        info = fs.get_file_info(local)
        name = os.path.basename(local) if len(files) == 1 and local == root else os.path.relpath(local, root)
        shards.append(Shard(f, name, int(info.size), int(info.mtime_ns or 0), _footer_rows(fs, local)))
    return shards


def whole_corpus_shard(path: str) -> Shard:
    """A non-Parquet corpus (image folder, ...) scored as one shard: total size, newest mtime."""
    fs, root = pafs.FileSystem.from_uri(path) if "://" in path else (pafs.LocalFileSystem(), os.path.abspath(path))
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"input path {path} does not exist")
    files = (
        [info]
        if info.type == pafs.FileType.File
        else [f for f in fs.get_file_info(pafs.FileSelector(root, recursive=True)) if f.type == pafs.FileType.File]
    )
    return Shard(
        path,
        "part-00000.parquet",
        sum(int(f.size) for f in files),
        max((int(f.mtime_ns or 0) for f in files), default=0),
        None,
    )


def input_fingerprint(shards: list[Shard]) -> str:
    """sha256 over every shard's name, size, mtime and row count."""
    text = json.dumps([s.fingerprint for s in sorted(shards, key=lambda s: s.name)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON durably: temp file, fsync, atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as fh:
        json.dump(payload, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _marker_path(directory: Path, name: str) -> Path:
    return directory / MARKERS / f"{name.replace(os.sep, '__')}.json"


class ShardWriter:
    """Streams one shard's scored rows into ``staging/<name>`` under a temporary name; ``commit`` renames
    it into place and writes the shard's marker (its fingerprint, row count and ``extra``)."""

    def __init__(self, staging: Path, shard: Shard, schema: pa.Schema):
        self.final = staging / shard.name
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.final.with_name(f".{self.final.name}.tmp-{uuid.uuid4().hex[:8]}")
        self.writer = pq.ParquetWriter(self.tmp, schema)
        self.staging, self.shard, self.rows = staging, shard, 0

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows

    def commit(self, extra: dict[str, Any]) -> dict[str, Any]:
        self.writer.close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.final)
        marker = {**self.shard.fingerprint, "output": self.shard.name, "output_rows": self.rows, **extra}
        _write_json(_marker_path(self.staging, self.shard.name), marker)
        return marker

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def read_marker(directory: Path, shard: Shard, identity: dict[str, Any]) -> dict[str, Any] | None:
    """A shard's completion marker when it matches the shard's fingerprint and ``identity`` (model,
    mode) and its output file exists; otherwise None (the shard must be scored)."""
    path = _marker_path(directory, shard.name)
    if not path.is_file():
        return None
    marker = json.loads(path.read_text())
    expected = {**shard.fingerprint, **identity}
    if any(marker.get(k) != v for k, v in expected.items()) or not (directory / shard.name).is_file():
        return None
    return marker


def carry_over(published: Path, staging: Path, name: str, marker: dict[str, Any]) -> None:
    """Hard-link (or copy) an already published shard output and its marker into staging."""
    dst = staging / name
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(published / name, dst)
    except OSError:
        shutil.copy2(published / name, dst)
    _write_json(_marker_path(staging, name), marker)


def prune(staging: Path, keep: set[str]) -> None:
    """Delete staged outputs (and their markers) that are not in ``keep`` (left by an earlier plan).
    Markers, hidden temporaries and ``_quarantine/`` records are never touched."""
    for f in list(staging.rglob("*.parquet")):
        name = str(f.relative_to(staging))
        if not f.is_file() or name.startswith((MARKERS, ".", "_")) or name in keep:
            continue
        f.unlink()
        _marker_path(staging, name).unlink(missing_ok=True)


def verify(staging: Path, markers: list[dict[str, Any]], schema: pa.Schema) -> int:
    """Check every staged shard: its file's row count equals the input shard's less its quarantined
    records (``skipped``), its schema is ``schema``, and ids are unique across the partition (8 bytes of
    id hash per row). Returns the total rows."""
    hashes = []
    total = 0
    for m in markers:
        path = staging / m["output"]
        meta = pq.ParquetFile(path)
        n = meta.metadata.num_rows
        want = None if m["rows"] is None else m["rows"] - m.get("skipped", 0)
        if n != m["output_rows"] or (want is not None and n != want):
            raise RuntimeError(f"{path}: staged {n} rows but input shard {m['name']} has {want} good rows")
        got = meta.schema_arrow
        if not got.equals(schema):
            raise RuntimeError(f"{path}: staged schema {got} differs from the expected {schema}")
        ids = pq.read_table(path, columns=["id"]).column("id").to_pandas()
        hashes.append(pd.util.hash_pandas_object(ids.astype(str), index=False).to_numpy())
        total += meta.metadata.num_rows
    if hashes:
        joined = pd.Series(pd.concat([pd.Series(h) for h in hashes], ignore_index=True))
        dups = int(joined.duplicated().sum())
        if dups:
            raise RuntimeError(f"{staging}: {dups} duplicate ids across the staged shards")
    return total


def write_manifest(staging: Path, manifest: dict[str, Any]) -> None:
    """Write ``_SUCCESS`` (the last file of a staged partition)."""
    _write_json(staging / MANIFEST, {"format": FORMAT, **manifest})


def publish(staging: Path, final: Path) -> None:
    """Swap the verified staging directory onto ``final`` (a rename on one filesystem)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.exists():
        old = final.with_name(f".{final.name}.old-{uuid.uuid4().hex[:8]}")
        final.rename(old)
        staging.rename(final)
        shutil.rmtree(old)
    else:
        staging.rename(final)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a published partition; :class:`UnpublishedError` when there is none."""
    manifest = Path(path) / MANIFEST
    if not Path(path).is_dir():
        raise UnpublishedError(f"{path}: no such scores partition")
    if not manifest.is_file():
        raise UnpublishedError(
            f"{path}: no {MANIFEST} manifest, so the partition is incomplete or still "
            "being written; refusing to read it"
        )
    data = json.loads(manifest.read_text())
    if data.get("format") != FORMAT:
        raise UnpublishedError(f"{manifest}: unknown manifest format {data.get('format')!r}")
    return data


def published_partitions(root: str | Path) -> list[Path]:
    """``root`` and its direct sub-directories that carry a manifest."""
    r = Path(root)
    if not r.is_dir():
        return []
    candidates = [r, *sorted(p for p in r.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))]
    return [p for p in candidates if (p / MANIFEST).is_file()]


def read_scores(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a published partition (exactly the files its manifest lists); refuses one without ``_SUCCESS``."""
    manifest = read_manifest(path)
    files = [Path(path) / s["output"] for s in manifest["shards"]]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UnpublishedError(f"{path}: manifest lists files that are missing: {', '.join(missing[:5])}")
    if not files:
        return pa.schema([(n, pa.string()) for n in manifest["schema"]]).empty_table().to_pandas()
    table = pa.concat_tables([pq.read_table(f, columns=columns) for f in files])
    if table.num_rows != manifest["rows"]:
        raise UnpublishedError(f"{path}: {table.num_rows} rows on disk but the manifest says {manifest['rows']}")
    return table.to_pandas()
