"""The shipped image config learns the images it is given: trained in-process as a tune trial trains it (the same
epoch code, no Ray) on 48 MNIST images of one digit, its reconstruction error ends far below a blank image's.

Without ``norm: batch`` this config collapsed to a blank image (a sigmoid output stuck at 0) on digit 5 with both
seeds: its error stayed at the blank image's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aecore import make_optimizers
from pipelines.config import load_config
from pipelines.data.corpora import mnist_arrays
from pipelines.train.optim import Precision
from pipelines.train.worker import seeded_model
from pipelines.tune.trial import _train_epoch, _validate
from tests.support import REPO

CONFIG = REPO / "jobs" / "configs" / "mnist_images_conv.yaml"


@pytest.mark.parametrize("seed", [0, 1])
def test_the_image_default_does_not_collapse_to_a_blank_image(seed, tmp_path):
    job = load_config(CONFIG, ["train.epochs=40", f"train.seed={seed}"], home=str(tmp_path))
    x, y = mnist_arrays()
    images = torch.tensor((x[y == 5][:60] / 255.0).astype(np.float32).reshape(-1, 1, 28, 28))
    train, val = images[:48], images[48:]
    model = seeded_model(job, 0)
    optimizers, amp = make_optimizers(model, job.train.lr), Precision("fp32", torch.device("cpu"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a trial of tune.cpus_per_trial=1 trains
    try:
        for epoch in range(1, job.train.epochs + 1):
            _train_epoch(model, train, job, epoch, amp, optimizers)
        metrics, _ = _validate(model, val, 16)
    finally:
        torch.set_num_threads(threads)
    blank = float((val**2).mean())  # the error of an all-zero reconstruction
    assert metrics["val_mse"] < 0.5 * blank, (metrics["val_mse"], blank)
