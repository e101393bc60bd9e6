"""One worker's training or validation input: its Ray Data shard, streamed, or streamed once and then kept.

``keep=False`` (``data.cache=stream``): every epoch streams the shard again with ``iter_torch_batches``; with
shuffling on, a local shuffle buffer reorders rows, seeded per (seed, rank, epoch).

``keep=True`` (the splits were small enough to cache): the first pass streams the shard as above and keeps its
rows as one ``[N, *input_shape]`` float32 tensor on the host (pinned when training on a GPU); later epochs draw
batches from it in a fresh seeded permutation, the way a plain PyTorch loop over in-memory tensors does.
Nothing of Ray Data runs in the background after that (no split coordinator, no prefetch thread), which
matters when the workers' threads fill every core. Each rank keeps the rows of its first-pass split
(``streaming_split(equal=True)``: equal counts), and reshuffles within them every epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from ray.data import DataIterator


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
    ):
        self.shard, self.input_shape, self.device = shard, tuple(input_shape), device
        self.keep, self.shuffle_buffer, self.seed = keep, shuffle_buffer, seed
        self.rows: torch.Tensor | None = None  # [N, *input_shape] on the host, once kept

    def batches(self, batch_size: int, epoch: int, shuffle: bool) -> Iterator[torch.Tensor]:
        """This epoch's batches; the order depends only on (seed, epoch, shuffle), never on restarts."""
        if self.rows is not None:
            yield from self._kept(batch_size, epoch, shuffle)
            return
        parts: list[torch.Tensor] = []
        for x in self._streamed(batch_size, epoch, shuffle):
            if self.keep:
                parts.append(x.cpu())  # the same tensor on CPU; a host copy from a GPU
            yield x
        if self.keep:
            rows = torch.cat(parts) if parts else torch.zeros((0, *self.input_shape))
            self.rows = rows.pin_memory() if self.device.type == "cuda" else rows  # pinned: async copies

    def _streamed(self, batch_size: int, epoch: int, shuffle: bool) -> Iterator[torch.Tensor]:
        buffer = self.shuffle_buffer if shuffle else None
        for batch in self.shard.iter_torch_batches(
            batch_size=batch_size,
            dtypes=torch.float32,
            device=self.device,
            local_shuffle_buffer_size=buffer,
            local_shuffle_seed=_epoch_seed(self.seed, epoch) if buffer else None,
        ):
            x = batch["x"]
            yield x.reshape(len(x), *self.input_shape)

    def _kept(self, batch_size: int, epoch: int, shuffle: bool) -> Iterator[torch.Tensor]:
        rows = self.rows
        assert rows is not None  # only called once the first pass kept them
        if shuffle:
            order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(_epoch_seed(self.seed, epoch)))
            chunks = order.split(batch_size)
        else:
            chunks = (slice(i, i + batch_size) for i in range(0, len(rows), batch_size))
        for idx in chunks:
            yield rows[idx].to(self.device, non_blocking=True)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch) % 2**31
