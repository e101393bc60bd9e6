"""Which image files a published partition holds: one small Parquet index per image shard (name relative to the
corpus root, size, mtime_ns), written when the shard finishes and listed by the manifest, read back one folder at
a time when an incremental run plans. The manifest stays a few hundred bytes per shard, however many files the
shards hold, and the driver never holds every published file at once."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines import storage
from pipelines.data.chunks import InputKey
from pipelines.score import publish

SCHEMA = pa.schema([("name", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64())])


def write_index(partition: str, shard: publish.Shard) -> None:
    """Write an image shard's input index (:func:`publish.input_index`) into ``partition``."""
    chunk = shard.files
    table = pa.table([chunk.relative_names(), chunk.size_array(), chunk.mtime_array()], schema=SCHEMA)
    with storage.open_output(storage.join(partition, publish.input_index(shard.name))) as fh:
        pq.write_table(table, fh)


def read_inputs(partition: str, entry: dict[str, Any]) -> list[InputKey]:
    """The image files a published shard entry holds: from its input index, or listed in the entry itself (a
    manifest of format /2); none for other shards."""
    if "input_index" in entry:
        with storage.open_input(storage.join(partition, entry["input_index"])) as fh:
            table = pq.read_table(fh, schema=SCHEMA)
        return list(zip(*(table[c].to_pylist() for c in SCHEMA.names), strict=True))
    return [(n, int(size), int(mtime)) for n, size, mtime in entry.get("inputs", ())]


def shard_folder(shard_name: str) -> str:
    """The folder (relative to the corpus root) of an image shard, from its name (``FOLDER/FIRST-nN-DIGEST``)."""
    return shard_name.rpartition("/")[0]


class HeldFiles:
    """The image files that some published shards hold, read one folder at a time (see :meth:`in_folder`)."""

    def __init__(self) -> None:
        self._shards: dict[str, list[tuple[str, dict[str, Any]]]] = {}

    def add(self, partition: str, entries: list[dict[str, Any]]) -> None:
        """Count the image shards among a partition's manifest ``entries``."""
        for entry in entries:
            if "input_index" in entry or "inputs" in entry:
                self._shards.setdefault(shard_folder(entry["name"]), []).append((partition, entry))

    def in_folder(self, folder: str) -> set[InputKey]:
        """The held files of ``folder`` (relative to the corpus root), read from its shards' indexes."""
        return {key for partition, entry in self._shards.get(folder, []) for key in read_inputs(partition, entry)}
