"""One worker's training or validation input: its Ray Data shard, streamed, or streamed once and then kept.

Which rows a rank reads:

- Split by Ray Train (the training split when ``data.cache=stream``): ``streaming_split(equal=True)`` hands every
  rank the same number of rows, which drops up to ``world_size - 1`` rows per epoch (counted as
  ``train_rows_dropped``), and which rows a rank gets may differ after a restart.
- Owned (:class:`RowOwner`: the validation split always, the training split when the splits are cached): every
  rank reads the whole split and keeps the rows whose shard key (a hash of the id) modulo ``world_size`` is its
  rank. Every row is used exactly once, and a rank owns the same rows after a restart with as many workers. A
  training rank owning fewer rows than the largest shard repeats its own rows (wrapping around its epoch order)
  up to that count, so every rank takes the same number of steps; a rank owning none repeats the split's
  smallest-key row. Validation is never padded: its loss is an exact mean over every validation row.

``keep=False`` (``data.cache=stream``): every epoch streams the shard again with ``iter_torch_batches``; with
shuffling on, a local shuffle buffer reorders rows, seeded per (seed, rank, epoch).

``keep=True`` (the splits were small enough to cache): the shard is read once, in stored order, before the first
epoch, and its rows are kept as one ``[N, *input_shape]`` float32 tensor on the host (pinned when training on a
GPU), ordered by shard key when owned, so a restarted worker holds the same tensor; epochs draw batches from it
in a fresh seeded permutation, the way a plain PyTorch loop over in-memory tensors does. Nothing of Ray Data runs
in the background after that (no split coordinator, no prefetch thread), which matters when the workers' threads
fill every core.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from ray.data import DataIterator

from pipelines.data.split import SHARD_KEY


@dataclass(frozen=True)
class RowOwner:
    """Rank ``rank`` of ``world_size`` owns the rows whose shard key ``% world_size == rank``."""

    rank: int
    world_size: int

    def mask(self, keys: torch.Tensor) -> torch.Tensor:
        """``[B]`` bool: which rows of shard keys ``[B]`` (int64, >= 0) this rank owns."""
        return keys.remainder(self.world_size) == self.rank


def padded_order(order: torch.Tensor, total: int) -> torch.Tensor:
    """``order`` ``[N]`` (N >= 1) repeated, wrapping around, to ``max(N, total)`` indices."""
    if total <= len(order):
        return order
    return order.repeat(-(-total // len(order)))[:total]


class ShardInput:
    """Batches ``[B, *input_shape]`` of one rank's shard, on ``device``."""

    def __init__(
        self,
        shard: DataIterator,
        input_shape: tuple[int, ...],
        device: torch.device,
        keep: bool,
        shuffle_buffer: int | None,
        seed: int,
        owner: RowOwner | None = None,
    ):
        self.shard, self.input_shape, self.device = shard, tuple(input_shape), device
        self.keep, self.shuffle_buffer, self.seed, self.owner = keep, shuffle_buffer, seed, owner
        self.rows: torch.Tensor | None = None  # [N, *input_shape] on the host, once kept
        self.spare: torch.Tensor | None = None  # [1, *input_shape]: the split's smallest-key row (owned, kept)
        self._spare_key = 0
        self.epoch_rows = 0
        """Distinct rows the latest epoch yielded (repeated rows not counted)."""

    def batches(self, batch_size: int, epoch: int, shuffle: bool, pad_to: int = 0) -> Iterator[torch.Tensor]:
        """This epoch's batches; the order depends only on (seed, epoch, shuffle), never on restarts. A kept,
        owned input repeats rows up to ``pad_to`` rows in all."""
        if self.keep:
            if self.rows is None:
                self.load(batch_size)
            yield from self._kept(batch_size, epoch, shuffle, pad_to)
            return
        self.epoch_rows = 0
        for x, _ in self._streamed(batch_size, epoch, shuffle, self.device):
            self.epoch_rows += len(x)
            yield x

    def load(self, batch_size: int) -> int:
        """Read the shard once and keep its rows (owned rows in shard-key order, so a restarted rank holds the same
        tensor); returns how many rows this rank keeps."""
        parts: list[torch.Tensor] = []
        keys: list[torch.Tensor] = []
        for x, k in self._streamed(batch_size, 0, False, torch.device("cpu")):
            parts.append(x)
            keys.append(k if k is not None else torch.zeros(len(x), dtype=torch.int64))
        rows = torch.cat(parts) if parts else torch.zeros((0, *self.input_shape))
        self._set_rows(rows[torch.cat(keys).argsort(stable=True)] if keys else rows)
        return len(rows)

    def _set_rows(self, rows: torch.Tensor) -> None:
        self.rows = rows.pin_memory() if self.device.type == "cuda" else rows  # pinned: async copies

    def _streamed(
        self, batch_size: int, epoch: int, shuffle: bool, device: torch.device
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """``(x [B, *input_shape], shard keys [B] or None)`` of the rows this rank reads (owned rows only)."""
        buffer = self.shuffle_buffer if shuffle else None
        for batch in self.shard.iter_torch_batches(
            batch_size=batch_size,
            dtypes={"x": torch.float32, SHARD_KEY: torch.int64} if self.owner else torch.float32,
            device=device,
            local_shuffle_buffer_size=buffer,
            local_shuffle_seed=_epoch_seed(self.seed, epoch) if buffer else None,
        ):
            x = batch["x"]
            x = x.reshape(len(x), *self.input_shape)
            if self.owner is None:
                yield x, None
                continue
            keys = batch[SHARD_KEY]
            self._note_spare(x, keys)
            mine = self.owner.mask(keys)
            if bool(mine.any()):
                yield x[mine], keys[mine].cpu()

    def _note_spare(self, x: torch.Tensor, keys: torch.Tensor) -> None:
        """Remember the smallest-key row seen so far (``x`` ``[B, ...]``, ``keys`` ``[B]``): a training rank that
        owns no row repeats it."""
        if not self.keep or len(keys) == 0:
            return
        i = int(keys.argmin())
        if self.spare is None or int(keys[i]) < self._spare_key:
            self.spare, self._spare_key = x[i : i + 1].cpu(), int(keys[i])

    def _kept(self, batch_size: int, epoch: int, shuffle: bool, pad_to: int) -> Iterator[torch.Tensor]:
        rows = self.rows
        assert rows is not None  # only called once rows are kept
        self.epoch_rows = len(rows)
        if len(rows) == 0:
            if pad_to == 0 or self.spare is None:
                return
            rows = self.spare
        if shuffle:
            order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(_epoch_seed(self.seed, epoch)))
        else:
            order = torch.arange(len(rows))
        for idx in padded_order(order, pad_to).split(batch_size):
            yield rows[idx].to(self.device, non_blocking=True)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % 2**31
