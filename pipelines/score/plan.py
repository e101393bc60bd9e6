"""What a scoring run has to do: the corpus's input shards against what is already published or finished by a
killed run (its shard markers)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from pipelines import storage
from pipelines.config import DataConfig
from pipelines.data.files import list_file_infos, relative_names
from pipelines.data.images import SUFFIXES as IMAGE_SUFFIXES
from pipelines.score import publish

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


def image_shards(path: str, per_shard: int, held: frozenset[publish.InputKey] = frozenset()) -> list[publish.Shard]:
    """The shards of an image folder, leaving out the files in ``held`` (name, size, mtime_ns).

    Files are grouped by their folder (a date or batch folder is the natural unit) and each folder's sorted
    files are cut into chunks of ``per_shard``; a chunk is named after its folder, first file, size and a digest
    of its files' names, sizes and mtimes, so a changed file makes a new shard. New files in a new folder make
    new shards and leave every other shard as it was. New files in an existing folder shift the chunks after
    them: a full re-run scores those chunks again (under new names), while an incremental run, which plans only
    the files no published partition holds, scores just the new files."""
    listed = list_file_infos(path, IMAGE_SUFFIXES)
    by_folder: dict[str, list[tuple[str, publish.InputKey]]] = {}
    for (file, info), name in zip(listed, relative_names([f for f, _ in listed], path), strict=True):
        key = (name, int(info.size or 0), int(info.mtime_ns or 0))
        if key not in held:
            by_folder.setdefault(name.rpartition("/")[0], []).append((file, key))
    shards = []
    for folder, items in sorted(by_folder.items()):
        for k in range(0, len(items), per_shard):
            chunk = items[k : k + per_shard]
            inputs = tuple(key for _, key in chunk)
            digest = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()[:10]
            first = inputs[0][0].rpartition("/")[2].rsplit(".", 1)[0]
            shards.append(
                publish.Shard(
                    storage.join(path, folder) if folder else path,
                    f"{folder}/{first}-n{len(chunk)}-{digest}".lstrip("/"),
                    sum(key[1] for key in inputs),
                    max(key[2] for key in inputs),
                    len(chunk),
                    tuple(file for file, _ in chunk),
                    inputs,
                )
            )
    return shards


def corpus_shards(
    path: str, cfg: DataConfig, images_per_shard: int, held: frozenset[publish.InputKey] = frozenset()
) -> list[publish.Shard]:
    """Input shards: each Parquet file (of a time-series corpus too: each window is scored with the file holding
    its last row); chunks of an image folder (:func:`image_shards`) without the files in ``held``."""
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
    held: frozenset[publish.InputKey]
    """The image files the done shards hold."""


def _published_for(output_path: str, partition: str, identity: dict[str, str], rescore: bool) -> _Published:
    """Shards already published under ``output_path`` (and the image files they hold), and the shard entries
    of ``partition``'s own manifest (carried over when it is re-published: only when ``partition`` holds this
    very model version and mode).

    A shard counts as done when any other partition holds it for this model whatever the version (with
    ``rescore``: only for this version), or ``partition`` holds it for this version: ``partition`` is replaced as a
    whole, so shards another version scored into it are scored again rather than dropped."""
    done: list[dict[str, Any]] = []
    carried: list[dict[str, Any]] = []
    for part in publish.published_partitions(output_path):
        manifest = publish.read_manifest(part)
        if part == partition:
            if _same_model(manifest, identity, any_version=False):
                carried = manifest["shards"]
                done += carried
        elif _same_model(manifest, identity, any_version=not rescore):
            done += manifest["shards"]
    held = frozenset((n, int(size), int(mtime)) for s in done for n, size, mtime in s.get("inputs", ()))
    return _Published({_key(s) for s in done}, carried, held)


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
    shards = corpus_shards(path, cfg, images_per_shard, published.held)
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
