"""``ShardInput``: every epoch yields each row of the shard exactly once, reshuffled per epoch with a seed that
survives restarts; a kept shard is read once and then served from the worker's memory. Owned rows (by shard
key) cover a split exactly once over the ranks, are the same after a restart, and training ranks repeat rows up to
the largest shard so that every rank takes the same number of steps."""

from __future__ import annotations

import numpy as np
import ray.data
import torch

from pipelines.data.split import SHARD_KEY, shard_keys
from pipelines.train.input import RowOwner, ShardInput

ROWS, BATCH = 1000, 64


def _shard():
    """A real Ray Data iterator over rows ``x[i] = (i, i, i, i)``, 4 values viewed as (1, 2, 2), in one block."""
    x = np.repeat(np.arange(ROWS, dtype=np.float32)[:, None], 4, axis=1)
    ds = ray.data.from_numpy(x).repartition(1)
    return ds.map_batches(lambda b: {"x": b["data"]}).materialize().iterator()


def _ids(input_: ShardInput, epoch: int, shuffle: bool) -> list[int]:
    batches = list(input_.batches(BATCH, epoch, shuffle))
    assert all(b.shape[1:] == (1, 2, 2) and b.dtype == torch.float32 for b in batches)
    assert [len(b) for b in batches[:-1]] == [BATCH] * (len(batches) - 1)
    return [int(v) for b in batches for v in b[:, 0, 0, 0]]


def test_kept_shard_is_read_once_then_reshuffled_from_memory_and_a_restart_replays_it(ray_local):
    kept = ShardInput(_shard(), (1, 2, 2), torch.device("cpu"), keep=True, shuffle_buffer=256, seed=3)
    first = _ids(kept, 1, shuffle=True)
    assert sorted(first) == list(range(ROWS)) and kept.rows is not None and kept.rows.shape == (ROWS, 1, 2, 2)
    kept.shard = None  # later epochs must not touch Ray Data any more
    second, third = _ids(kept, 2, shuffle=True), _ids(kept, 3, shuffle=True)
    assert sorted(second) == sorted(third) == list(range(ROWS))  # each row exactly once per epoch
    assert len({tuple(first), tuple(second), tuple(third)}) == 3
    # a worker restarted before epoch 2 reads its shard afresh and replays epoch 2 (in another block layout too when
    # the rows are owned, which orders them by shard key: test_owned_rows_cover_the_split_once_...; unowned rows
    # keep the order Ray Data hands them in, which several blocks do not fix)
    restarted = ShardInput(_shard(), (1, 2, 2), torch.device("cpu"), keep=True, shuffle_buffer=256, seed=3)
    assert _ids(restarted, 2, shuffle=True) == second
    other_seed = ShardInput(_shard(), (1, 2, 2), torch.device("cpu"), keep=True, shuffle_buffer=256, seed=4)
    assert _ids(other_seed, 2, shuffle=True) != second
    assert _ids(kept, 4, shuffle=False) == list(range(ROWS))  # validation order: as stored


def test_streamed_shard_reshuffles_every_epoch_and_keeps_nothing(ray_local):
    streamed = ShardInput(_shard(), (1, 2, 2), torch.device("cpu"), keep=False, shuffle_buffer=256, seed=0)
    one, two = _ids(streamed, 1, shuffle=True), _ids(streamed, 2, shuffle=True)
    assert sorted(one) == sorted(two) == list(range(ROWS)) and one != two
    assert streamed.rows is None
    replay = ShardInput(_shard(), (1, 2, 2), torch.device("cpu"), keep=False, shuffle_buffer=256, seed=0)
    assert _ids(replay, 2, shuffle=True) == two  # the buffer's seed is a function of (seed, epoch)
    assert _ids(streamed, 3, shuffle=False) == list(range(ROWS))  # validation order: as stored


def _keyed(rows: int, blocks: int) -> ray.data.Dataset:
    """A materialized split of ``rows`` rows ``x[i] = (i, i, i, i)`` with the shard key of id ``i``, in ``blocks``
    blocks (a restart may see another block layout)."""
    x = np.repeat(np.arange(rows, dtype=np.float32)[:, None], 4, axis=1)
    ds = ray.data.from_numpy(x).repartition(blocks)
    return ds.map_batches(lambda b: {"x": b["data"], SHARD_KEY: shard_keys(b["data"][:, 0].astype(int))}).materialize()


def _owned(ds: ray.data.Dataset, rank: int, world: int = 2) -> ShardInput:
    cpu = torch.device("cpu")
    return ShardInput(ds.iterator(), (1, 2, 2), cpu, keep=True, shuffle_buffer=None, seed=rank, owner=RowOwner(rank, 2))


def _epoch(input_: ShardInput, epoch: int, pad_to: int) -> list[list[int]]:
    return [[int(v) for v in b[:, 0, 0, 0]] for b in input_.batches(16, epoch, shuffle=True, pad_to=pad_to)]


def test_owned_rows_cover_the_split_once_and_every_rank_takes_the_same_steps(ray_local):
    ranks = [_owned(_keyed(101, 3), r) for r in (0, 1)]
    counts = [r.load(16) for r in ranks]
    assert sum(counts) == 101 and counts[0] != counts[1]  # an odd total: one rank owns more rows
    own = [sorted(v for b in _epoch(r, 1, pad_to=0) for v in b) for r in ranks]
    assert sorted(own[0] + own[1]) == list(range(101))  # every row once, on exactly one rank
    padded = [_epoch(r, 1, pad_to=max(counts)) for r in ranks]
    assert [len(p) for p in padded] == [-(-max(counts) // 16)] * 2  # the same number of steps on both ranks
    for rank, epoch in enumerate(padded):
        seen = [v for b in epoch for v in b]
        assert len(seen) == max(counts) and sorted(set(seen)) == own[rank]  # own rows only, some repeated
        assert ranks[rank].epoch_rows == counts[rank]
    # a restarted rank (fresh input, another block layout) owns the same rows, in the same order each epoch
    again = _owned(_keyed(101, 7), 1)
    again.load(16)
    assert torch.equal(again.rows, ranks[1].rows)
    assert _epoch(again, 2, max(counts)) == _epoch(ranks[1], 2, max(counts))


def test_a_rank_that_owns_no_row_still_takes_its_steps(ray_local):
    ds = _keyed(1, 1)
    ranks = [_owned(ds, r) for r in (0, 1)]
    counts = [r.load(16) for r in ranks]
    empty = counts.index(0)
    assert sorted(counts) == [0, 1]
    assert _epoch(ranks[empty], 1, pad_to=0) == []  # validation: nothing to read, nothing counted twice
    assert _epoch(ranks[empty], 1, pad_to=1) == [[0]]  # training: one step, repeating the split's spare row
    assert ranks[empty].epoch_rows == 0
