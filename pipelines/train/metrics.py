"""Per-epoch figures summed over samples on each rank and combined across ranks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


def _distributed() -> bool:
    """Whether there are other ranks to talk to (one worker's collectives would each cost a round through gloo for
    nothing, several per epoch)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_objects(value: Any) -> list[Any]:
    """``[value of rank 0, value of rank 1, ...]`` on every rank."""
    if not _distributed():
        return [value]
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, value)
    return parts


def max_over_ranks(value: int) -> int:
    """The largest ``value`` of any rank, on every rank."""
    return max(gather_objects(int(value)))


def sum_over_ranks_(tensors: list[torch.Tensor]) -> None:
    """Replace each tensor (any shape, e.g. per-code counts ``[K]``) by its sum over every rank, in place. Every
    rank must pass tensors of the same shapes in the same order."""
    if _distributed():
        for t in tensors:
            dist.all_reduce(t)


def gather_array(values: np.ndarray) -> np.ndarray:
    """A 1-D array from every rank, concatenated in rank order (every rank gets the result)."""
    return np.concatenate(gather_objects(values))


@dataclass
class LossSums:
    """Loss terms summed as ``term x batch size`` over the batches seen, the number of samples (``count``, rows
    repeated to even out the ranks' steps included) and of distinct rows (``rows``, set by the caller).

        Sums stay on the device while an epoch runs (no step waits on a host copy) and are read once, after
        :meth:`all_reduce`.
    """

    device: torch.device
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    count: int = 0
    rows: int = 0

    def add(self, terms: dict[str, torch.Tensor], batch_size: int) -> None:
        """Add one batch's mean loss terms (detached scalars)."""
        for key, value in terms.items():
            total = self.terms.get(key)
            term = value.detach().double() * batch_size
            self.terms[key] = term if total is None else total + term
        self.count += batch_size

    def all_reduce(self) -> LossSums:
        """The sums over every rank. Ranks agree on the keys first, so a rank that saw no batch (an empty
        shard) contributes zeros instead of leaving the others waiting in a mismatched all-reduce."""
        if not _distributed():
            return self
        keys = sorted(set().union(*gather_objects(sorted(self.terms))))
        zero = torch.zeros((), dtype=torch.float64, device=self.device)
        values = [self.terms.get(k, zero).reshape(()) for k in keys]
        counts = torch.tensor([float(self.count), float(self.rows)], dtype=torch.float64, device=self.device)
        packed = torch.cat([torch.stack(values) if values else counts[:0], counts])
        dist.all_reduce(packed)
        total = packed.tolist()
        reduced = {k: torch.tensor(v, dtype=torch.float64) for k, v in zip(keys, total[:-2], strict=True)}
        return LossSums(self.device, reduced, round(total[-2]), round(total[-1]))

    def means(self, prefix: str) -> dict[str, float]:
        """``{f"{prefix}_{term}": sum / count}`` (a count of 0 reads as 1)."""
        n = max(self.count, 1)
        return {f"{prefix}_{k}": float(v) / n for k, v in self.terms.items()}
