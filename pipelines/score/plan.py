"""What a scoring run has to do: the corpus's input shards against what is already published or finished by a
killed run (its shard markers)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pipelines.config import DataConfig
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


def corpus_shards(path: str, cfg: DataConfig) -> list[publish.Shard]:
    """Input shards: each Parquet file; other sources are scored as one shard."""
    if cfg.source == "parquet":
        return publish.list_shards(path)
    return [publish.whole_corpus_shard(path)]


def _key(shard: dict[str, Any]) -> ShardKey:
    return (shard["name"], shard["size"], shard["mtime_ns"], shard["rows"])


def _same_model(manifest: dict[str, Any], identity: dict[str, str], any_version: bool) -> bool:
    """Whether a partition's manifest is of the model (name and mode) in ``identity``, of its version too
    unless ``any_version``."""
    m = manifest["model"]
    held = {"model_name": m["name"], "model_version": m["version"], "mode": m["mode"]}
    keys = ("model_name", "mode") if any_version else ("model_name", "model_version", "mode")
    return all(held[k] == identity[k] for k in keys)


def _published_for(
    output_path: str, partition: str, identity: dict[str, str], rescore: bool
) -> tuple[set[ShardKey], list[dict[str, Any]]]:
    """Shards already published under ``output_path``, and the shard entries of ``partition``'s own manifest
    (carried over when it is re-published: only when ``partition`` holds this very model version and mode).

    A shard counts as done when any other partition holds it for this model whatever the version (with
    ``rescore``: only for this version), or ``partition`` holds it for this version: ``partition`` is replaced as a
    whole, so shards another version scored into it are scored again rather than dropped."""
    done: set[ShardKey] = set()
    carried: list[dict[str, Any]] = []
    for part in publish.published_partitions(output_path):
        manifest = publish.read_manifest(part)
        if part == partition:
            if _same_model(manifest, identity, any_version=False):
                carried = manifest["shards"]
                done |= {_key(s) for s in carried}
        elif _same_model(manifest, identity, any_version=not rescore):
            done |= {_key(s) for s in manifest["shards"]}
    return done, carried


def make_plan(
    shards: list[publish.Shard],
    *,
    incremental: bool,
    rescore: bool = False,
    output_path: str,
    partition: str,
    identity: dict[str, str],
) -> Plan | None:
    """Decide what to score, resume and carry over; None when incremental mode has nothing new.

    ``incremental``: only shards no published partition holds, whichever model version scored them (a new
    champion scores new shards, not the whole history). ``rescore`` (implies incremental): shards not yet
    published by this model version, so old shards are scored again with a new model."""
    carried: list[dict[str, Any]] = []
    todo = shards
    if incremental or rescore:
        done, carried = _published_for(output_path, partition, identity, rescore)
        todo = [s for s in shards if _key(s.fingerprint) not in done]
        if not todo:
            return None
        names = {s.name for s in todo}
        carried = [m for m in carried if m["name"] not in names]
    resumed, to_score = [], []
    for s in todo:
        marker = publish.read_marker(partition, s, identity)
        if marker is not None:
            resumed.append(marker)
        else:
            to_score.append(s)
    return Plan(to_score, resumed, carried)
