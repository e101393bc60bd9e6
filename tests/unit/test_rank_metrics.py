"""Per-epoch figures over data-parallel ranks (two real gloo processes, no Ray): a family's epoch tallies (the
VQ-VAE's codebook usage) are summed over every rank before its epoch metrics are read, and loss sums from a rank
that saw no rows join the all-reduce with zeros (no hang, no row counted twice)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from aecore import build_model
from aecore.models.vq_vae import codebook_usage
from pipelines.train.metrics import LossSums, sum_over_ranks_

VQ = {"name": "vq_vae", "input_shape": [8], "hidden": [8], "latent_dim": 4, "code_dim": 2, "codebook_size": 16}


def _rank(rank: int, world: int, init_file: str, out: str) -> None:
    """One rank: a training batch of its own (rank 1's rows differ), then the cross-rank figures, to ``out``."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        model = build_model(VQ, seed=0)
        model.train()
        x = torch.Generator().manual_seed(rank)
        model.loss(torch.randn(32, 8, generator=x) * (1 + 4 * rank))
        own = model.usage.clone()
        sum_over_ranks_(model.epoch_tallies())
        metrics = model.epoch_metrics()
        sums = LossSums(torch.device("cpu"))
        if rank == 0:  # rank 1 owns no validation row
            sums.add({"loss": torch.tensor(2.0)}, 3)
            sums.rows = 3
        total = sums.all_reduce()
        result = {"own": own.tolist(), "metrics": metrics, "count": total.count, "rows": total.rows}
        result["means"] = total.means("val")
        Path(out, f"rank-{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def test_codebook_usage_and_loss_sums_cover_every_rank(tmp_path):
    mp.spawn(_rank, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    every = torch.tensor(ranks[0]["own"]) + torch.tensor(ranks[1]["own"])
    assert ranks[0]["own"] != ranks[1]["own"]  # the ranks used the codebook differently
    for r in ranks:
        assert r["metrics"] == codebook_usage(every)  # every rank's batches, on every rank
        assert (r["count"], r["rows"], r["means"]) == (3, 3, {"val_loss": 2.0})
