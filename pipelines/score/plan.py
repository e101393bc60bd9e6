"""What a scoring run has to do: the corpus's input shards against what is already published or staged."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pipelines.config import DataConfig
from pipelines.score import publish

ShardKey = tuple[str, int, int, int | None]


@dataclass(frozen=True)
class Plan:
    """Which shards a run scores, which it resumes from staging and which it carries from the partition."""

    to_score: list[publish.Shard]
    resumed: list[dict[str, Any]]
    """Markers of shards a killed run already staged."""
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


def _published_for(
    output_path: str, final: Path, identity: dict[str, str]
) -> tuple[set[ShardKey], list[dict[str, Any]]]:
    """Shards every published partition under ``output_path`` holds for this model version and mode, and the
    shard entries of ``final``'s own manifest (carried over when it is re-published)."""
    done: set[ShardKey] = set()
    carried: list[dict[str, Any]] = []
    for part in publish.published_partitions(output_path):
        manifest = publish.read_manifest(part)
        m = manifest["model"]
        if {"model_name": m["name"], "model_version": m["version"], "mode": m["mode"]} == identity:
            done |= {_key(s) for s in manifest["shards"]}
            if part == final:
                carried = manifest["shards"]
    return done, carried


def make_plan(
    shards: list[publish.Shard],
    *,
    incremental: bool,
    output_path: str,
    final: Path,
    staging: Path,
    identity: dict[str, str],
) -> Plan | None:
    """Decide what to score, resume and carry over; None when incremental mode has nothing new."""
    carried: list[dict[str, Any]] = []
    todo = shards
    if incremental:
        done, carried = _published_for(output_path, final, identity)
        todo = [s for s in shards if _key(s.fingerprint) not in done]
        if not todo:
            return None
        names = {s.name for s in todo}
        carried = [m for m in carried if m["name"] not in names]
    resumed, to_score = [], []
    for s in todo:
        marker = publish.read_marker(staging, s, identity)
        if marker is not None:
            resumed.append(marker)
        else:
            to_score.append(s)
    return Plan(to_score, resumed, carried)
