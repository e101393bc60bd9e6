"""Per-epoch overhead of the training pipeline on tiny data: ``run_training`` for 100 epochs on 48 training rows
(a tiny dense model, 1 worker, cached input, default checkpoint and metrics cadence) against a plain PyTorch loop
doing the same 100 epochs in-process (Adam, the same batches, a validation pass per epoch).

- ``tiny_epoch_ms``: (wall of the 100-epoch run - wall of a 1-epoch run) / 99, in ms, vs the plain loop's wall
  per epoch; the 1-epoch run stands for the fixed start-up (validation, caching, worker start, MLflow run, plots,
  registration). Target: the difference (what Ray Train, checkpoints and MLflow add per epoch) < 50 ms.
- ``tiny_100_epochs_vs_3x_plain``: (wall of the 100 epochs - fixed start-up) / (3 x the plain loop's wall): the
  issue's "100 epochs on a few dozen rows within 3x the plain loop's wall time plus the fixed start-up" is a
  ratio <= 1.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile
import time

import torch

from bench.common import ray_workspace, repeated_mnist

BENCH = "train_overhead"
ROWS = 60  # 48 training rows at val_fraction 0.2 (the split hashes ids: about 48)
BATCH = 16  # three batches per epoch
MODEL = {"name": "dense", "input_shape": [784], "hidden": [32], "latent_dim": 4, "output_activation": "sigmoid"}


def _pipeline(root: pathlib.Path, data: pathlib.Path, epochs: int) -> float:
    """Wall seconds of one ``run_training`` call of ``epochs`` epochs."""
    from pipelines.config import build_config
    from pipelines.train.driver import run_training

    home = pathlib.Path(tempfile.mkdtemp(prefix="overhead", dir=root))
    job = build_config(
        {
            "name": "bench-overhead",
            "home": str(home),
            "model": MODEL,
            "data": {"path": str(data), "val_fraction": 0.2, "normalize": "minmax"},
            "train": {"epochs": epochs, "batch_size": BATCH, "num_workers": 1, "cpus_per_worker": 1.0},
            "tracking": {"registered_model": "bench-overhead"},
        }
    )
    t0 = time.perf_counter()
    run_training(job, log=lambda _: None)
    return time.perf_counter() - t0


def _plain(data: pathlib.Path, epochs: int) -> float:
    """Wall seconds of a plain loop over the same rows in memory (1 torch thread): train + validate per epoch."""
    from aecore import build_model
    from bench.train_throughput import _read

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_x, val_x = _read(data, "dense")
        model = build_model(MODEL)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        t0 = time.perf_counter()
        for _ in range(epochs):
            model.train()
            for idx in torch.randperm(len(train_x)).split(BATCH):
                opt.zero_grad(set_to_none=True)
                model.loss(train_x[idx])["loss"].backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                model.loss(val_x)
        return time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)


def run(quick: bool = False, out_dir: pathlib.Path | None = None) -> list[dict]:
    """Measure and return bench rows (see the module docstring). ``quick``: 10 epochs instead of 100."""
    epochs = 10 if quick else 100
    with ray_workspace("aepipe-bench-overhead-") as root:
        data = repeated_mnist(root / "corpus", ROWS, shards=1)
        startup = _pipeline(root, data, 1)
        wall = _pipeline(root, data, epochs)
        plain = _plain(data, epochs)
    per_epoch, plain_epoch = (wall - startup) / (epochs - 1), plain / epochs
    what = f"{epochs} epochs, {ROWS} rows (about 48 train), batch {BATCH}, dense [32], 1 worker, cached"
    return [
        {
            "bench": BENCH,
            "metric": "tiny_epoch_ms",
            "value": per_epoch * 1000,
            "reference": plain_epoch * 1000,
            "ratio": per_epoch / plain_epoch,
            "note": f"{what}: (run_training wall - 1-epoch run's wall) / {epochs - 1} vs the plain loop's wall per "
            f"epoch; overhead {(per_epoch - plain_epoch) * 1000:.1f} ms/epoch (target < 50); fixed start-up "
            f"{startup:.1f} s",
        },
        {
            "bench": BENCH,
            "metric": "tiny_100_epochs_vs_3x_plain" if not quick else "tiny_epochs_vs_3x_plain",
            "value": wall - startup,
            "reference": 3 * plain,
            "ratio": (wall - startup) / (3 * plain),
            "note": f"{what}: wall minus the fixed start-up vs 3x the plain loop's wall (target ratio <= 1)",
        },
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
