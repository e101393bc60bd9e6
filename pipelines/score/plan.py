"""What a scoring run has to do: the corpus's input shards against what is already published or finished by a
killed run (its shard markers)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from typing import Any

from pipelines import storage
from pipelines.config import DataConfig
from pipelines.data.chunks import FileChunk, InputKey, iter_folders
from pipelines.data.images import SUFFIXES as IMAGE_SUFFIXES
from pipelines.score import publish
from pipelines.score.inputs import HeldFiles

ShardKey = tuple[str, int, int, int | None]


@dataclass(frozen=True)
class Plan:
    """Which shards a run scores, which it resumes (finished by a killed run) and which it carries over (the
    partition already holds them)."""

    to_score: list[publish.Shard]
    resumed: list[dict[str, Any]]
    """Markers of shards a killed run already finished."""
    carried: list[dict[str, Any]]
    """Manifest entries of shards the partition already holds (incremental runs re-publish them)."""

    def summary(self) -> dict[str, int]:
        return {k: len(v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        return f"{len(self.to_score)} shards to score, {len(self.resumed)} resumed, {len(self.carried)} carried over"


#: The image files of a folder (by its name relative to the corpus root) that published partitions hold.
Held = Callable[[str], AbstractSet[InputKey]]


def _image_shard(path: str, chunk: FileChunk) -> publish.Shard:
    """The shard of an image chunk, named after its folder, first file, size and a digest of its files' names,
    sizes and mtimes."""
    digest = hashlib.sha256(json.dumps(chunk.inputs()).encode()).hexdigest()[:10]
    first = chunk.first.rsplit(".", 1)[0]
    return publish.Shard(
        storage.join(path, chunk.prefix) if chunk.prefix else path,
        f"{chunk.prefix}/{first}-n{len(chunk)}-{digest}".lstrip("/"),
        int(chunk.size_array().sum()),
        int(chunk.mtime_array().max()),
        len(chunk),
        chunk,
        indexed=True,
    )


def image_shards(path: str, per_shard: int, held: Held | None = None) -> list[publish.Shard]:
    """The shards of an image folder, leaving out the files ``held`` holds (name, size, mtime_ns).

    The folder is listed one sub-folder at a time (a date or batch folder is the natural unit), and each folder's
    sorted files are cut into chunks of ``per_shard``; a chunk is named after its folder, first file, size and a
    digest of its files' names, sizes and mtimes, so a changed file makes a new shard. New files in a new folder
    make new shards and leave every other shard as it was. New files in an existing folder shift the chunks after
    them: a full re-run scores those chunks again (under new names), while an incremental run, which plans only
    the files no published partition holds, scores just the new files. The shards hold their files compactly
    (:class:`pipelines.data.chunks.FileChunk`)."""
    shards = []
    for folder in iter_folders(path, IMAGE_SUFFIXES):
        if held is not None:
            folder = folder.without(held(folder.prefix))
        shards += [_image_shard(path, chunk) for chunk in folder.split(per_shard)]
    return shards


def corpus_shards(path: str, cfg: DataConfig, images_per_shard: int, held: Held | None = None) -> list[publish.Shard]:
    """Input shards: each Parquet file (of a time-series corpus too: each window is scored with the file holding
    its last row); chunks of an image folder (:func:`image_shards`) without the files ``held`` holds."""
    if cfg.source == "images":
        return image_shards(path, images_per_shard, held)
    return publish.list_shards(path, footers=cfg.source == "parquet")


def _key(shard: dict[str, Any]) -> ShardKey:
    return (shard["name"], shard["size"], shard["mtime_ns"], shard["rows"])


def _same_model(manifest: dict[str, Any], identity: dict[str, str], any_version: bool) -> bool:
    """Whether a partition's manifest is of the model (name and mode) in ``identity``, of its version too
    unless ``any_version``."""
    m = manifest["model"]
    held = {"model_name": m["name"], "model_version": m["version"], "mode": m["mode"]}
    keys = ("model_name", "mode") if any_version else ("model_name", "model_version", "mode")
    return all(held[k] == identity[k] for k in keys)


@dataclass(frozen=True)
class _Published:
    """What the partitions under an output hold, as far as a run's plan is concerned."""

    done: set[ShardKey]
    carried: list[dict[str, Any]]
    held: HeldFiles
    """The image files the done shards hold (read from their input indexes folder by folder)."""


def _published_for(output_path: str, partition: str, identity: dict[str, str], rescore: bool) -> _Published:
    """Shards already published under ``output_path`` (and the image files they hold), and the shard entries
    of ``partition``'s own manifest (carried over when it is re-published: only when ``partition`` holds this
    very model version and mode).

    A shard counts as done when any other partition holds it for this model whatever the version (with
    ``rescore``: only for this version), or ``partition`` holds it for this version: ``partition`` is replaced as a
    whole, so shards another version scored into it are scored again rather than dropped."""
    done: set[ShardKey] = set()
    carried: list[dict[str, Any]] = []
    held = HeldFiles()
    for part in publish.published_partitions(output_path):
        manifest = publish.read_manifest(part)
        if part == partition:
            if not _same_model(manifest, identity, any_version=False):
                continue
            carried = manifest["shards"]
        elif not _same_model(manifest, identity, any_version=not rescore):
            continue
        done |= {_key(s) for s in manifest["shards"]}
        held.add(part, manifest["shards"])
    return _Published(done, carried, held)


def make_plan(
    path: str,
    cfg: DataConfig,
    *,
    images_per_shard: int,
    incremental: bool,
    rescore: bool = False,
    output_path: str,
    partition: str,
    identity: dict[str, str],
) -> tuple[list[publish.Shard], Plan | None]:
    """The corpus's input shards, and what to score, resume and carry over; no plan when incremental mode has
    nothing new.

    ``incremental``: only shards no published partition holds, whichever model version scored them (a new
    champion scores new shards, not the whole history); of an image folder, only the files no published
    partition holds. ``rescore`` (implies incremental): shards not yet published by this model version, so old
    shards are scored again with a new model."""
    if not (incremental or rescore):
        shards = corpus_shards(path, cfg, images_per_shard)
        return shards, _resume(shards, partition, identity, [])
    published = _published_for(output_path, partition, identity, rescore)
    shards = corpus_shards(path, cfg, images_per_shard, published.held.in_folder)
    todo = [s for s in shards if _key(s.fingerprint) not in published.done]
    if not todo:
        return shards, None
    names = {s.name for s in todo}
    return shards, _resume(todo, partition, identity, [m for m in published.carried if m["name"] not in names])


def _resume(todo: list[publish.Shard], partition: str, identity: dict[str, str], carried: list[dict[str, Any]]) -> Plan:
    """The plan for ``todo``: shards a killed run finished (their markers) are resumed, the rest scored."""
    resumed, to_score = [], []
    for s in todo:
        marker = publish.read_marker(partition, s, identity)
        if marker is not None:
            resumed.append(marker)
        else:
            to_score.append(s)
    return Plan(to_score, resumed, carried)
