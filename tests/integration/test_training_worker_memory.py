"""The training workers' malloc setting (``train.keep_freed_memory``): real Ray worker processes started with
``worker_env`` run conv training steps without page-faulting their activations in again every step."""

from __future__ import annotations

from pipelines.config import TrainConfig
from pipelines.train.driver import KEEP_FREED_MEMORY, worker_env


def test_kept_memory_stops_per_step_page_faults(ray_local):
    def _faults_per_step(steps: int = 20) -> tuple[float, str]:
        """Minor page faults per conv training step (batch 128 of 28x28, after 5 warm-up steps) in this process."""
        import os
        import resource

        import torch

        from aecore import build_model

        torch.set_num_threads(1)
        model = build_model({"name": "conv", "input_shape": [1, 28, 28], "channels": [16, 32], "latent_dim": 32})
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch.rand(128, 1, 28, 28)
        faults = []
        for _ in range(5 + steps):
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)
            opt.zero_grad()
            model.loss(x)["loss"].backward()
            opt.step()
        return (faults[-1] - faults[5]) / (steps - 1), os.environ.get("GLIBC_TUNABLES", "")

    ray = ray_local  # defined in the test so that Ray ships the function by value
    task = ray.remote(num_cpus=0.5)(_faults_per_step)
    tuned, tuned_env = ray.get(task.options(runtime_env={"env_vars": worker_env(TrainConfig())}).remote())
    default, default_env = ray.get(
        task.options(runtime_env={"env_vars": worker_env(TrainConfig(keep_freed_memory=False))}).remote()
    )
    assert tuned_env == KEEP_FREED_MEMORY and default_env == ""
    # glibc's defaults unmap a step's freed activations and fault them in again (hundreds of pages a step)
    assert default > 200, (tuned, default)
    assert tuned < 0.1 * default, (tuned, default)
    print(f"minor faults per step: {tuned:.0f} kept, {default:.0f} glibc defaults")
