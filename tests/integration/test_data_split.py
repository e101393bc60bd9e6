"""The train/validation split is the same for any shard layout, and every DDP rank takes the same number of
steps per epoch (Ray Train splits each dataset with ``streaming_split(equal=True)``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import ray.train
from ray import cloudpickle
from ray.train import RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from pipelines.config import DataConfig
from pipelines.data import corpora, load_dataset, split_dataset


def _write(root: Path, rows: int, shards: int) -> None:
    x = np.arange(rows * 3, dtype=np.float32).reshape(rows, 3)
    corpora.write_vector_shards(root, np.array([f"row-{i:04d}" for i in range(rows)]), x, None, shards)


def _val_ids(path: Path) -> set[str]:
    train, val = split_dataset(load_dataset(DataConfig(), str(path)).dataset, 0.25)
    train_ids = {r["id"] for r in train.select_columns(["id"]).take_all()}
    val_ids = {r["id"] for r in val.select_columns(["id"]).take_all()}
    assert not train_ids & val_ids and len(train_ids | val_ids) == 300
    return val_ids


def test_split_is_the_same_for_any_shard_layout(ray_local, tmp_path):
    for shards in (1, 4, 7):
        _write(tmp_path / f"s{shards}", 300, shards)
    one, four, seven = (_val_ids(tmp_path / f"s{s}") for s in (1, 4, 7))
    assert one == four == seven
    assert 0.17 < len(one) / 300 < 0.33  # a hash split: about val_fraction


def _count_batches(config: dict) -> None:
    shard = ray.train.get_dataset_shard("train")
    epochs = []
    for _ in range(2):
        sizes = [len(b["x"]) for b in shard.iter_batches(batch_size=config["batch_size"])]
        epochs.append({"batches": len(sizes), "rows": sum(sizes)})
    rank = ray.train.get_context().get_world_rank()
    Path(config["out"], f"rank-{rank}.json").write_text(json.dumps(epochs))


def test_every_rank_takes_the_same_number_of_batches(ray_local, tmp_path):
    _write(tmp_path / "data", 51, 4)  # shards of 13, 13, 13, 12 rows: an odd total, uneven blocks
    ds = load_dataset(DataConfig(), str(tmp_path / "data")).dataset.select_columns(["x"])
    (tmp_path / "out").mkdir()
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import a test module
    TorchTrainer(
        _count_batches,
        train_loop_config={"batch_size": 4, "out": str(tmp_path / "out")},
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 0.5}),
        run_config=RunConfig(name="equal-steps", storage_path=str(tmp_path / "runs")),
        datasets={"train": ds},
    ).fit()
    ranks = [json.loads((tmp_path / "out" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1], ranks
    # equal=True gives each rank floor(51 / 2) = 25 rows (one row is left out per epoch): 7 batches of <= 4
    assert ranks[0] == [{"batches": 7, "rows": 25}] * 2
