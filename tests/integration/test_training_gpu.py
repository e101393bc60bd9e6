"""GPU paths of the training pipeline: one GPU per worker (NCCL) with bf16 / fp16 autocast. Skipped without CUDA."""

from __future__ import annotations

import math

import pytest
import torch

from pipelines import tracking
from pipelines.bundle import ModelBundle
from pipelines.config import load_config
from pipelines.train.driver import run_training

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_gpu_workers_train_in_mixed_precision(ray_local, mnist_small, tmp_path, precision):
    if ray_local.cluster_resources().get("GPU", 0) < 1:
        pytest.skip("the local Ray instance sees no GPU")
    workers = min(2, int(ray_local.cluster_resources()["GPU"]))
    job = load_config(
        "jobs/configs/mnist_dense.yaml",
        [
            f"name=gpu-{precision}",
            f"data.path={mnist_small}",
            f"tracking.registered_model=gpu-{precision}",
            "train.epochs=3",
            f"train.num_workers={workers}",
            "train.use_gpu=true",
            f"train.precision={precision}",
            "train.batch_size=32",
            "train.grad_clip=1.0",
            "model.hidden=[64]",
            "model.latent_dim=8",
        ],
        home=str(tmp_path),
    )
    result = run_training(job, log=lambda _: None)
    val = [v for _, v in tracking.metric_history(job.tracking_uri, result.run_id, "val_loss")]
    assert len(val) == 4 and all(math.isfinite(v) for v in val) and val[-1] < val[0]
    # the registered bundle was trained on GPU and loads and scores on CPU
    bundle = ModelBundle.load(result.bundle_dir)
    out = bundle.infer(torch.rand(4, 784).numpy() * 255)
    assert out["score"].shape == (4,) and next(bundle.model.parameters()).device.type == "cpu"
