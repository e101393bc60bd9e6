"""End-of-run pictures: loss curves, reconstructions, a 2-D map of codes, the score histogram, and prior
samples / an interpolation strip for generative families.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no global backend state).
Inputs are drawn as images when ``input_shape`` is (C, H, W) or a square vector (784 -> 28 x 28), as one
line per feature when it is a series (T, F), and as a line otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.bundle import ModelBundle

N_SHOW, N_STEPS = 8, 8


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def as_images(x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray | None:
    """``[N, *input_shape]`` -> ``[N, H, W]`` (or ``[N, H, W, 3]``) when the samples are pictures, else None."""
    if len(input_shape) == 3:
        c = input_shape[0]
        return np.moveaxis(x, 1, -1) if c == 3 else x[:, 0]
    if len(input_shape) == 1:
        side = math.isqrt(input_shape[0])
        if side >= 4 and side * side == input_shape[0]:
            return x.reshape(len(x), side, side)
    return None


def _draw(ax, sample: np.ndarray, input_shape: tuple[int, ...], image: np.ndarray | None, **line) -> None:
    """One sample on ``ax``: an image, or lines (a series ``(T, F)`` gives F lines)."""
    ax.set_xticks([]), ax.set_yticks([])
    if image is not None:
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None)
    else:
        ax.plot(sample.reshape(input_shape[0], -1) if len(input_shape) == 2 else sample.reshape(-1), **line)


def sample_grid(rows: list[tuple[str, np.ndarray]], input_shape: tuple[int, ...]) -> Figure:
    """A grid: one labelled row per ``(title, samples [N, *input_shape])``."""
    n = max(len(x) for _, x in rows)
    fig = _figure(1.4 * n, 1.5 * len(rows))
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (title, x) in enumerate(rows):
        images = as_images(x, input_shape)
        for i in range(n):
            ax = axes[r, i]
            if i < len(x):
                _draw(ax, x[i], input_shape, None if images is None else images[i], linewidth=0.8)
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(title, fontsize=8)
    fig.tight_layout()
    return fig


def reconstructions(x: np.ndarray, x_hat: np.ndarray, input_shape: tuple[int, ...]) -> Figure:
    """Inputs vs reconstructions ``[N, *input_shape]``: two image rows, or overlaid lines per sample."""
    if as_images(x[:1], input_shape) is not None:
        return sample_grid([("input", x), ("reconstruction", x_hat)], input_shape)
    fig = _figure(2.2 * len(x), 2.0)
    axes = fig.subplots(1, len(x), squeeze=False)[0]
    for ax, a, b in zip(axes, x, x_hat, strict=False):
        _draw(ax, a, input_shape, None, color="tab:blue", linewidth=0.8)
        _draw(ax, b, input_shape, None, color="tab:orange", linewidth=0.8, linestyle="--")
    axes[0].set_ylabel("input (solid)\nrecon (dashed)", fontsize=8)
    fig.tight_layout()
    return fig


def loss_curves(histories: dict[str, list[tuple[int, float]]]) -> Figure:
    """One panel per loss term (``train_T`` / ``val_T`` histories of ``(epoch, value)``)."""
    terms = sorted({k.split("_", 1)[1] for k in histories if "_" in k})
    fig = _figure(4.0 * len(terms), 3.0)
    axes = fig.subplots(1, max(len(terms), 1), squeeze=False)[0]
    for ax, term in zip(axes, terms, strict=False):  # one empty axis when there are no terms
        for split in ("train", "val"):
            points = histories.get(f"{split}_{term}", [])
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=split)
        ax.set_title(term, fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pca_2d(codes: np.ndarray) -> np.ndarray:
    """Project ``[N, k]`` codes on their first two principal components ``[N, 2]`` (zero-padded if k < 2)."""
    centered = codes - codes.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    proj = centered @ vt[:2].T
    return np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))


def code_map(codes: np.ndarray, labels: np.ndarray | None) -> Figure:
    """Validation codes ``[N, k]`` in their PCA plane, coloured by label when there are labels."""
    xy = pca_2d(codes.astype(np.float64))
    fig = _figure(5.0, 4.5)
    ax = fig.subplots()
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.7)
    else:
        names, index = np.unique(np.asarray(labels).astype(str), return_inverse=True)
        if len(names) <= 20:
            for i, name in enumerate(names):
                ax.scatter(xy[index == i, 0], xy[index == i, 1], s=6, alpha=0.8, label=name)
            ax.legend(fontsize=7, title="label", loc="best", markerscale=2)
        else:
            ax.scatter(xy[:, 0], xy[:, 1], c=index, cmap="viridis", s=6, alpha=0.8)
    ax.set_title(f"validation codes (PCA of {codes.shape[1]}-d embedding)", fontsize=9)
    ax.set_xlabel("PC 1"), ax.set_ylabel("PC 2")
    fig.tight_layout()
    return fig


def score_histogram(scores: np.ndarray, calibration: dict) -> Figure:
    """Histogram of validation scores ``[N]`` with the calibrated threshold(s)."""
    fig = _figure(5.0, 3.2)
    ax = fig.subplots()
    ax.hist(scores, bins=50, color="tab:blue", alpha=0.8)
    if "threshold" in calibration:
        ax.axvline(
            calibration["threshold"],
            color="tab:red",
            label=f"threshold (q={calibration.get('threshold_quantile', '?')})",
        )
    if "threshold_mean_std" in calibration:
        ax.axvline(
            calibration["threshold_mean_std"],
            color="tab:red",
            linestyle="--",
            label=f"mean + {calibration.get('k_std', '?')} std",
        )
    ax.set_xlabel("anomaly score"), ax.set_ylabel("validation rows")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@torch.no_grad()
def render(
    bundle: ModelBundle,
    x_raw: np.ndarray,
    labels: np.ndarray | None,
    histories: dict[str, list[tuple[int, float]]],
    out_dir: str | Path,
) -> list[Path]:
    """Draw every picture for a trained bundle and validation rows ``x_raw`` ``[N, ...]``; returns PNG paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, shape = bundle.model.eval(), bundle.input_shape
    x = torch.from_numpy(bundle.normalize(x_raw))
    figures = {
        "loss_curves": loss_curves(histories),
        "reconstructions": reconstructions(x[:N_SHOW].numpy(), model(x[:N_SHOW]).float().numpy(), shape),
        "code_map": code_map(model.embed(x).float().numpy(), labels),
        "score_histogram": score_histogram(model.score(x).float().numpy(), bundle.calibration),
    }
    if model.generative:
        z0, z1 = model.encode(x[:2]).float()
        steps = torch.linspace(0, 1, N_STEPS).unsqueeze(1)
        path = model.decode((1 - steps) * z0 + steps * z1)
        figures["prior_samples"] = sample_grid([("prior sample", model.sample(2 * N_SHOW).float().numpy())], shape)
        figures["interpolation"] = sample_grid([("interpolation", path.float().numpy())], shape)
    paths = []
    for name, fig in figures.items():
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1])
    return paths
