"""``ShardInput``: every epoch yields each row of the shard exactly once, reshuffled per epoch with a seed that
survives restarts; a kept shard is streamed once and then served from the worker's memory."""

from __future__ import annotations

import numpy as np
import ray.data
import torch

from pipelines.train.input import ShardInput

ROWS, BATCH = 1000, 64


def _shard():
    """A real Ray Data iterator over rows ``x[i] = (i, i, i, i)``, 4 values viewed as (1, 2, 2)."""
    x = np.repeat(np.arange(ROWS, dtype=np.float32)[:, None], 4, axis=1)
    return ray.data.from_numpy(x).map_batches(lambda b: {"x": b["data"]}).materialize().iterator()


def _ids(input_: ShardInput, epoch: int, shuffle: bool) -> list[int]:
    batches = list(input_.batches(BATCH, epoch, shuffle))
    assert all(b.shape[1:] == (1, 2, 2) and b.dtype == torch.float32 for b in batches)
    assert [len(b) for b in batches[:-1]] == [BATCH] * (len(batches) - 1)
    return [int(v) for b in batches for v in b[:, 0, 0, 0]]


def test_kept_shard_is_streamed_once_then_reshuffled_from_memory(ray_local):
    kept = ShardInput(_shard(), (1, 2, 2), torch.device("cpu"), keep=True, shuffle_buffer=256, seed=3)
    first = _ids(kept, 1, shuffle=True)
    assert sorted(first) == list(range(ROWS)) and kept.rows is not None and kept.rows.shape == (ROWS, 1, 2, 2)
    assert first != list(range(ROWS))  # the streamed first epoch goes through the shuffle buffer
    kept.shard = None  # later epochs must not touch Ray Data any more
    second, third = _ids(kept, 2, shuffle=True), _ids(kept, 3, shuffle=True)
    assert sorted(second) == sorted(third) == list(range(ROWS))  # each row exactly once per epoch
    assert second != third and second != first
    # the order is a function of (seed, epoch): a restarted worker replays epoch 2 identically
    again = ShardInput(None, (1, 2, 2), torch.device("cpu"), keep=True, shuffle_buffer=256, seed=3)
    again.rows = kept.rows
    assert _ids(again, 2, shuffle=True) == second
    other_seed = ShardInput(None, (1, 2, 2), torch.device("cpu"), keep=True, shuffle_buffer=256, seed=4)
    other_seed.rows = kept.rows
    assert _ids(other_seed, 2, shuffle=True) != second
    assert sorted(_ids(kept, 4, shuffle=False)) == list(range(ROWS))


def test_streamed_shard_reshuffles_every_epoch_and_keeps_nothing(ray_local):
    streamed = ShardInput(_shard(), (1, 2, 2), torch.device("cpu"), keep=False, shuffle_buffer=256, seed=0)
    one, two = _ids(streamed, 1, shuffle=True), _ids(streamed, 2, shuffle=True)
    assert sorted(one) == sorted(two) == list(range(ROWS)) and one != two
    assert streamed.rows is None
    replay = ShardInput(_shard(), (1, 2, 2), torch.device("cpu"), keep=False, shuffle_buffer=256, seed=0)
    assert _ids(replay, 2, shuffle=True) == two  # the buffer's seed is a function of (seed, epoch)
    assert _ids(streamed, 3, shuffle=False) == list(range(ROWS))  # validation order: as stored
