"""Training building blocks without Ray: LR schedules, early stopping, precision, checkpoint state, plots."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from aecore import build_model
from pipelines.bundle import ModelBundle, Normalizer, calibrate
from pipelines.config import TrainConfig
from pipelines.tracking import plots
from pipelines.tracking.plot_rows import score_edges, summarize_batch
from pipelines.train import checkpoint as ckpt
from pipelines.train.optim import LRSchedule, Patience, Precision

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _lrs(cfg: TrainConfig, val_losses: list[float] | None = None) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    schedule = LRSchedule(cfg, {"main": opt})
    out = []
    for epoch in range(1, cfg.epochs + 1):
        out.append(schedule.start_epoch(epoch))
        assert opt.param_groups[0]["lr"] == out[-1]
        schedule.end_epoch(val_losses[epoch - 1] if val_losses else 1.0)
    return out


def test_lr_schedules():
    assert _lrs(TrainConfig(epochs=3, lr=0.1)) == [0.1, 0.1, 0.1]
    warm = _lrs(TrainConfig(epochs=5, lr=0.1, warmup_epochs=2))
    assert warm == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.1])
    cos = _lrs(TrainConfig(epochs=5, lr=0.1, lr_schedule="cosine", warmup_epochs=1, lr_min_factor=0.1))
    expected = [0.1] + [0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4))) for k in range(4)]
    assert cos == pytest.approx(expected)
    assert cos[-1] > 0.01  # the last epoch still learns
    assert _lrs(TrainConfig(epochs=5, lr=0.1, lr_schedule="step", lr_step_epochs=2, lr_gamma=0.5)) == pytest.approx(
        [0.1, 0.1, 0.05, 0.05, 0.025]
    )
    # plateau: decays after more than 1 epoch without improvement, then counts again
    plateau = _lrs(
        TrainConfig(epochs=6, lr=0.1, lr_schedule="plateau", lr_plateau_patience=1, lr_gamma=0.1),
        [1.0, 0.5, 0.6, 0.6, 0.4, 0.7],
    )
    assert plateau == pytest.approx([0.1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_patience_and_state_round_trip():
    stop = Patience(patience=2, min_delta=0.05)
    assert [stop.update(v) for v in (1.0, 0.9, 0.88, 0.87)] == [False, False, False, True]
    again = Patience(patience=2, min_delta=0.05)
    again.load_state_dict(stop.state_dict())
    assert (again.best, again.bad_epochs) == (0.9, 2)
    assert Patience(patience=None, min_delta=0.0).update(5.0) is False


def test_bf16_autocast_and_clipping_on_cpu():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 8)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    amp = Precision("bf16", torch.device("cpu"))
    with amp.autocast():
        y = model(torch.randn(4, 8) * 100)
    assert y.dtype == torch.bfloat16
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    amp.step((y.float() ** 2).mean(), opt, grad_clip=0.5)
    # one SGD step with lr 1 moves the parameters by exactly the clipped gradient: norm 0.5 (it was far larger)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert float((before - after).norm()) == pytest.approx(0.5, rel=1e-3)
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        Precision("fp16", torch.device("cpu"))


@cuda
@pytest.mark.gpu
@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_mixed_precision_steps_on_gpu(mode):
    model = build_model({"name": "dense", "input_shape": [64], "hidden": [32], "latent_dim": 4}).cuda()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    amp = Precision(mode, torch.device("cuda"))
    x = torch.rand(128, 64, device="cuda")
    losses = []
    for _ in range(30):
        with amp.autocast():
            loss = model.loss(x)["loss"]
        amp.step(loss, opt, grad_clip=1.0)
        losses.append(float(loss))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    assert amp.scaler.is_enabled() == (mode == "fp16")


def test_rng_state_round_trip(tmp_path):
    ckpt.seed_everything(7)
    state = ckpt.rng_state()
    draws = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    model = build_model({"name": "dense", "input_shape": [16], "hidden": [8], "latent_dim": 2})
    bundle = ModelBundle(model, Normalizer("none"), {}, {})
    ckpt.save(tmp_path, bundle, {"epoch": 3, "rng": [state]})
    other = build_model({"name": "dense", "input_shape": [16], "hidden": [8], "latent_dim": 2, "seed": 5})
    loaded = ckpt.restore(tmp_path, other)  # weights_only=True load: plain values and tensors only
    assert loaded["epoch"] == 3
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values(), strict=True))
    ckpt.set_rng_state(loaded["rng"][0])
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == draws


def _bundle(model_cfg: dict, n: int) -> tuple[ModelBundle, np.ndarray]:
    model = build_model(model_cfg).eval()
    x = np.random.default_rng(0).random((n, *model.config.input_shape), dtype=np.float32)
    with torch.no_grad():
        scores = model.score(torch.from_numpy(x)).numpy()
    return ModelBundle(model, Normalizer("none"), calibrate(scores, 0.9), {}), x


@pytest.mark.parametrize(
    "model_cfg, images",
    [
        ({"name": "dense", "input_shape": [784], "hidden": [16], "latent_dim": 3}, True),
        ({"name": "vae", "input_shape": [20], "hidden": [16], "latent_dim": 2}, False),
        ({"name": "conv", "input_shape": [1, 12, 12], "latent_dim": 2}, True),
        ({"name": "recurrent", "input_shape": [16, 2], "latent_dim": 2}, False),
    ],
)
def test_plots_render_for_every_input_kind(tmp_path, model_cfg, images):
    bundle, x = _bundle(model_cfg, 40)
    assert (plots.as_images(x[:1], bundle.input_shape) is not None) == images
    labels = np.arange(40) % 3
    history = {
        "train_loss": [(1, 0.5), (2, 0.4)],
        "val_loss": [(0, 0.7), (1, 0.5), (2, 0.45)],
        "val_reconstruction": [(1, 0.5), (2, 0.45)],
    }
    batch = {"id": np.array([f"r{i}" for i in range(40)]), "x": x, "label": labels}
    summary = summarize_batch(bundle, batch, score_edges(bundle.calibration))
    paths, shows = plots.render(bundle, batch, summary, history, tmp_path)
    names = {p.stem for p in paths}
    assert shows["score_histogram"]["rows"] == 40 and shows["code_map"]["labels"] == ["0", "1", "2"]
    expected = {"loss_curves", "reconstructions", "code_map", "score_histogram"}
    assert names == (expected | {"prior_samples", "interpolation"} if bundle.model.generative else expected)
    assert all(p.stat().st_size > 5000 for p in paths)


def test_pca_projection_matches_first_components():
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(200, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
    xy = plots.pca_2d(codes)
    # the two leading axes carry (almost) all variance, in order
    assert xy.var(axis=0)[0] == pytest.approx(codes[:, 0].var(), rel=0.05)
    assert xy.var(axis=0)[1] == pytest.approx(codes[:, 1].var(), rel=0.05)
    assert plots.pca_2d(codes[:, :1]).shape == (200, 2)
