"""End-of-run pictures: loss curves, reconstructions, a 2-D map of codes, the score histogram, and prior
samples / an interpolation strip for generative families, drawn from rows that represent the validation split
(:mod:`pipelines.tracking.plot_rows`): a uniform sample, every score, the extreme rows and rows of each label.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no global backend state).
Inputs are drawn as images when ``input_shape`` is (C, H, W) or a square vector (784 -> 28 x 28), as one
line per feature when it is a series (T, F), and as a line otherwise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from pipelines.bundle import ModelBundle
from pipelines.tracking.plot_rows import Row, ScoreSummary, row_at

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


def reconstructions(
    rows: list[tuple[str, Row]], x: np.ndarray, x_hat: np.ndarray, input_shape: tuple[int, ...]
) -> Figure:
    """Normalized inputs ``x`` vs reconstructions ``x_hat`` ``[N, *input_shape]`` of ``(title, row)`` pairs, titled
    with its row's title and score: two image rows, or overlaid lines per sample."""
    x = x.reshape(len(rows), *input_shape)  # normalized, like the reconstructions: one scale for both
    titles = [f"{title}\n{r['score']:.3g}" for title, r in rows]
    images = as_images(x[:1], input_shape) is not None
    fig = _figure(1.5 * len(rows) if images else 2.2 * len(rows), 3.4 if images else 2.4)
    axes = fig.subplots(2 if images else 1, len(rows), squeeze=False)
    for i, title in enumerate(titles):
        if images:
            _draw(axes[0, i], x[i], input_shape, as_images(x[i : i + 1], input_shape)[0])  # type: ignore[index]
            _draw(axes[1, i], x_hat[i], input_shape, as_images(x_hat[i : i + 1], input_shape)[0])  # type: ignore[index]
        else:
            _draw(axes[0, i], x[i], input_shape, None, color="tab:blue", linewidth=0.8)
            _draw(axes[0, i], x_hat[i], input_shape, None, color="tab:orange", linewidth=0.8, linestyle="--")
        axes[0, i].set_title(title, fontsize=7)
    axes[0, 0].set_ylabel("input" if images else "input (solid)\nrecon (dashed)", fontsize=8)
    if images:
        axes[1, 0].set_ylabel("reconstruction", fontsize=8)
    fig.suptitle("reconstructions: best, median and worst score of the validation split; rows per label", fontsize=8)
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


def score_histogram(summary: ScoreSummary, calibration: dict[str, Any]) -> Figure:
    """Every validation score, per label (normal vs anomalous for binary labels), with the calibrated
    threshold(s); the title carries the AUROC when the labels are binary."""
    fig = _figure(5.5, 3.4)
    ax = fig.subplots()
    step = max(1, len(summary.edges) // 50)  # 50 bins on screen
    edges = summary.edges[::step]
    positive = summary.positive_label()
    for label in sorted(summary.counts):
        counts = np.add.reduceat(summary.counts[label], np.arange(0, len(summary.counts[label]), step))
        name = "all rows" if label == "" else ("anomalous" if label == positive else "normal") if positive else label
        ax.stairs(counts[: len(edges) - 1], edges, label=f"{name} ({int(counts.sum())})", fill=len(summary.counts) == 1)
    if "threshold" in calibration:
        q = calibration.get("threshold_quantile", "?")
        ax.axvline(calibration["threshold"], color="tab:red", label=f"threshold (q={q})")
    if "threshold_mean_std" in calibration:
        k = calibration.get("k_std", "?")
        ax.axvline(calibration["threshold_mean_std"], color="tab:red", linestyle="--", label=f"mean + {k} std")
    auroc = summary.auroc()
    title = f"every validation row's score ({summary.total} rows)"
    ax.set_title(title + (f", AUROC {auroc:.3f}" if auroc is not None else ""), fontsize=9)
    ax.set_xlabel("anomaly score"), ax.set_ylabel("validation rows")
    ax.legend(fontsize=7, ncol=2 if len(summary.counts) > 6 else 1)
    fig.tight_layout()
    return fig


def _shown_rows(summary: ScoreSummary, sample: dict[str, np.ndarray], scores: np.ndarray) -> list[tuple[str, Row]]:
    """Best, median (of the sample) and worst rows by score, then one row per label (two when few labels)."""
    shown: list[tuple[str, Row]] = []
    if summary.best is not None:
        shown.append(("best", summary.best))
    if len(scores):
        shown.append(("median", row_at(sample, scores, int(np.argsort(scores)[len(scores) // 2]))))
    if summary.worst is not None:
        shown.append(("worst", summary.worst))
    per_label = 2 if len(summary.examples) <= 5 else 1
    for label in sorted(summary.examples):
        shown += [(f"label {label}", r) for r in summary.examples[label][:per_label]]
    return shown


def _interpolation_ends(summary: ScoreSummary, x: torch.Tensor, bundle: ModelBundle) -> tuple[torch.Tensor, list[Row]]:
    """Two normalized rows ``[2, *input_shape]`` to interpolate between: of the first and last label when there
    are labels (the rows used are returned), else the sample's first two."""
    labels = sorted(summary.examples)
    if len(labels) < 2:
        return x[:2], []
    ends = [summary.examples[labels[0]][0], summary.examples[labels[-1]][0]]
    raw = np.stack([np.asarray(r["x"], np.float32) for r in ends])
    return torch.from_numpy(bundle.normalize(raw)), ends


def _record(rows: list[Row] | dict[str, np.ndarray]) -> dict[str, list[str]]:
    """The ids and the distinct labels of the rows a picture shows."""
    ids: Any
    labels: Any
    if isinstance(rows, dict):
        ids, labels = rows.get("id", []), rows.get("label", [])
    else:
        ids, labels = [r["id"] for r in rows], [r["label"] for r in rows if r["label"] is not None]
    return {"ids": [str(i) for i in ids], "labels": sorted({str(v) for v in labels})}


@torch.no_grad()
def render(
    bundle: ModelBundle,
    sample: dict[str, np.ndarray],
    summary: ScoreSummary,
    histories: dict[str, list[tuple[int, float]]],
    out_dir: str | Path,
) -> tuple[list[Path], dict[str, Any]]:
    """Draw every picture of a trained bundle from a uniform ``sample`` of validation rows (``id``, ``x``
    raw, ``label``?) and the ``summary`` of every validation score. Returns the PNG paths and what each
    picture shows (row ids, labels, histogram counts), which is saved beside them as ``plot_rows.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, shape = bundle.model.eval(), bundle.input_shape
    x = torch.from_numpy(bundle.normalize(sample["x"]))
    scores = model.score(x).float().numpy() if len(x) else np.zeros(0)
    shown = _shown_rows(summary, sample, scores)
    x_shown = torch.from_numpy(bundle.normalize(np.stack([np.asarray(r["x"], np.float32) for _, r in shown])))
    examples = [r for rows in summary.examples.values() for r in rows]
    mapped = torch.cat([x, torch.from_numpy(bundle.normalize(np.stack([r["x"] for r in examples])))]) if examples else x
    mapped_labels = None
    if "label" in sample:
        mapped_labels = np.concatenate([np.asarray(sample["label"]).astype(str), [str(r["label"]) for r in examples]])
    figures = {
        "loss_curves": loss_curves(histories),
        "reconstructions": reconstructions(shown, x_shown.numpy(), model(x_shown).float().numpy(), shape),
        "code_map": code_map(model.embed(mapped).float().numpy(), mapped_labels),
        "score_histogram": score_histogram(summary, bundle.calibration),
    }
    shows: dict[str, Any] = {
        "reconstructions": _record([r for _, r in shown]),
        "code_map": {
            **_record(sample),
            "labels": sorted(set(map(str, mapped_labels))) if mapped_labels is not None else [],
        },
        "score_histogram": {
            "rows": summary.total,
            "per_label": {k: int(v.sum()) for k, v in summary.counts.items()},
            "auroc": summary.auroc(),
        },
    }
    if model.generative:
        ends, rows = _interpolation_ends(summary, x, bundle)
        z0, z1 = model.encode(ends).float()
        steps = torch.linspace(0, 1, N_STEPS).unsqueeze(1)
        path = model.decode((1 - steps) * z0 + steps * z1)
        figures["prior_samples"] = sample_grid([("prior sample", model.sample(2 * N_SHOW).float().numpy())], shape)
        title = f"label {rows[0]['label']} -> {rows[1]['label']}" if rows else "interpolation"
        figures["interpolation"] = sample_grid([(title, path.float().numpy())], shape)
        shows["interpolation"] = _record(rows)
    paths = []
    for name, fig in figures.items():
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1])
    (out / "plot_rows.json").write_text(json.dumps(shows, indent=1, default=str))
    return paths, shows


# The scoring run's gallery: its highest-scored rows next to their reconstructions, in the data's raw units.

GALLERY_COLUMNS, TABLE_FEATURES = 4, 12


def _short(text: str, width: int = 36) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _grey_rgb(picture: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``[H, W]`` (grey) or ``[H, W, 3]`` values scaled from ``lo..hi`` to RGB in 0..1 ``[H, W, 3]``."""
    scaled = np.clip((picture - lo) / (hi - lo or 1.0), 0.0, 1.0)
    return scaled if scaled.ndim == 3 else np.repeat(scaled[..., None], 3, axis=-1)


def triptych(image: np.ndarray, recon: np.ndarray, error: np.ndarray, error_max: float) -> np.ndarray:
    """Input | reconstruction | absolute error side by side as one RGB picture ``[H, 3W + 2, 3]`` (white
    gutters): input and reconstruction on the input's grey (or colour) scale, the error on inferno over
    ``0..error_max``."""
    lo, hi = float(image.min()), float(image.max())
    heat = colormaps["inferno"](np.clip(error / (error_max or 1.0), 0.0, 1.0))[..., :3]
    gutter = np.ones((image.shape[0], 1, 3))
    return np.concatenate([_grey_rgb(image, lo, hi), gutter, _grey_rgb(recon, lo, hi), gutter, heat], axis=1)


def top_images(titles: list[str], x: np.ndarray, x_hat: np.ndarray, input_shape: tuple[int, ...]) -> Figure:
    """Input | reconstruction | absolute error of each image ``x``, ``x_hat`` ``[N, *input_shape]`` (raw values),
    four triptychs to a row under their ``titles``; input and reconstruction share the input's grey scale, the
    errors one colour scale for the whole gallery. Each triptych is one picture (:func:`triptych`), so the
    gallery draws N images rather than 3N axes."""
    images, recons = as_images(x, input_shape), as_images(x_hat, input_shape)
    assert images is not None and recons is not None, "top_images draws image-shaped samples"
    errors = np.abs(images - recons)
    errors = errors.mean(axis=-1) if errors.ndim == 4 else errors  # RGB: mean over channels
    error_max = float(errors.max())
    columns, rows = min(GALLERY_COLUMNS, len(x)), math.ceil(len(x) / GALLERY_COLUMNS)
    height = 1.55 * rows + 0.5  # inches: each row's titles and triptychs, and the gallery's title above them
    fig = _figure(3.6 * columns, height)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=1 - 0.75 / height, wspace=0.05, hspace=0.45)
    for i, ax in enumerate(fig.subplots(rows, columns, squeeze=False).reshape(-1)):
        ax.axis("off")
        if i < len(x):
            ax.imshow(triptych(images[i], recons[i], errors[i], error_max), interpolation="nearest")
            ax.set_title(titles[i], fontsize=8)
    return fig


def top_series(
    titles: list[str], x: np.ndarray, x_hat: np.ndarray, input_shape: tuple[int, ...], names: list[str]
) -> Figure:
    """Each window ``x`` [N, T, F] (raw values) as one solid line per feature with its reconstruction ``x_hat``
    dashed in the same colour, four windows to a row under their ``titles``."""
    x, x_hat = x.reshape(len(x), *input_shape), x_hat.reshape(len(x), *input_shape)
    columns = min(GALLERY_COLUMNS, len(x))
    fig = _figure(3.6 * columns, 2.3 * math.ceil(len(x) / columns))
    axes = fig.subplots(math.ceil(len(x) / columns), columns, squeeze=False).reshape(-1)
    for i, ax in enumerate(axes):
        if i >= len(x):
            ax.axis("off")
            continue
        for f in range(x.shape[2]):
            ax.plot(x[i, :, f], color=f"C{f}", linewidth=1.0, label=names[f])
            ax.plot(x_hat[i, :, f], color=f"C{f}", linewidth=1.0, linestyle="--")
        ax.set_title(titles[i], fontsize=8)
        ax.tick_params(labelsize=6)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper right", fontsize=7, ncol=min(x.shape[2], 6))
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


def top_features(titles: list[str], x: np.ndarray, x_hat: np.ndarray, errors: np.ndarray, names: list[str]) -> Figure:
    """Rows ``x`` [N, D] (raw values) by their largest per-feature reconstruction errors ``errors`` [N, D]: a
    heatmap of the features with the largest errors (each row's largest among them), every cell annotated
    with the input value and its reconstruction ``x_hat`` [N, D]."""
    own = list(dict.fromkeys(errors.argmax(axis=1).tolist()))  # each row's largest error
    ranked = [f for f in np.argsort(-errors.max(axis=0), kind="stable").tolist() if f not in own]
    features = sorted((own + ranked)[: max(TABLE_FEATURES, len(own))], key=lambda f: -errors[:, f].max())
    cells = errors[:, features]
    fig = _figure(2.5 + 1.05 * len(features), 1.2 + 0.42 * len(x))
    ax = fig.subplots()
    image = ax.imshow(cells, cmap="Reds", aspect="auto", vmin=0)
    for r in range(len(x)):
        for c, f in enumerate(features):
            dark = cells[r, c] > 0.6 * cells.max()
            text = f"{x[r, f]:.3g}\n→{x_hat[r, f]:.3g}"
            ax.text(c, r, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    ax.set_xticks(range(len(features)), [_short(names[f], 16) for f in features], rotation=30, ha="right", fontsize=7)
    ax.set_yticks(range(len(x)), titles, fontsize=7)
    ax.set_title("cell: input → reconstruction; colour: that feature's reconstruction error", fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01).ax.tick_params(labelsize=6)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return fig


@torch.no_grad()
def render_top(
    bundle: ModelBundle,
    ids: list[Any],
    scores: np.ndarray,
    x_raw: np.ndarray,
    names: list[str] | None,
    out_dir: str | Path,
) -> Path:
    """Draw the highest-scored rows (``ids`` [N], ``scores`` [N] descending, raw samples ``x_raw`` [N, D]) next to
    their reconstructions as ``top_anomalies.png`` in ``out_dir`` (with ``top_anomalies.json``: the rows shown):
    images as input | reconstruction | error, windows (T, F) as lines, other vectors as their largest
    per-feature errors, named by ``names`` [D or F] (None: images, or a vector drawn as an image when square)."""
    model, shape = bundle.model.eval(), bundle.input_shape
    x = torch.from_numpy(bundle.normalize(x_raw))
    logits = model.decode_logits(model.encode(x))
    recon = bundle.normalizer.invert_flat(model.output_activation(logits).float().numpy().reshape(len(x), -1))
    raw = np.asarray(x_raw, np.float32).reshape(len(x), -1)
    titles = [
        f"#{i + 1} {_short(str(row_id))}\nscore {s:.4g}" for i, (row_id, s) in enumerate(zip(ids, scores, strict=True))
    ]
    if names is None and as_images(raw[:1].reshape(1, *shape), shape) is not None:
        kind, fig = "images", top_images(titles, raw.reshape(len(x), *shape), recon.reshape(len(x), *shape), shape)
    elif len(shape) == 2:
        kind, fig = "windows", top_series(titles, raw, recon, shape, names or [f"feature {f}" for f in range(shape[1])])
    else:
        errors = model.entry_error(logits, x).float().numpy().reshape(len(x), -1)
        titles = [t.replace("\n", "  ") for t in titles]
        kind, fig = "table", top_features(titles, raw, recon, errors, names or [f"x[{f}]" for f in range(raw.shape[1])])
    what = {
        "images": "input | reconstruction | |error| (bright: large)",
        "windows": "input solid, reconstruction dashed",
        "table": "the features they reconstruct worst",
    }[kind]
    fig.suptitle(f"the {len(ids)} highest anomaly scores: {what}", fontsize=10)
    out = Path(out_dir)
    fig.savefig(out / "top_anomalies.png")
    shows = {"kind": kind, "ids": [str(i) for i in ids], "scores": [float(s) for s in scores]}
    (out / "top_anomalies.json").write_text(json.dumps(shows, indent=1))
    return out / "top_anomalies.png"
