"""The end-of-run pictures represent the validation split even when the corpus is sorted by label (as MNIST is
shipped): every label appears in the reconstructions and the code map, and the histogram counts every row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipelines import tracking
from pipelines.config import load_config
from pipelines.data.corpora import mnist_arrays, write_vector_shards
from pipelines.data.split import is_validation
from pipelines.train.driver import run_training


def test_pictures_cover_every_label_of_a_label_sorted_corpus(ray_local, home, tmp_path):
    x, y = mnist_arrays()
    picked = np.concatenate([np.flatnonzero(y == d)[:50] for d in range(10)])  # sorted by label
    ids = np.array([f"digit-{i:05d}" for i in picked])
    corpus = tmp_path / "sorted"
    write_vector_shards(corpus, ids, x[picked], y[picked], shards=2)
    job = load_config(
        None,
        [
            f"home={home}",
            "name=sorted-plots",
            f"data.path={corpus}",
            "model.hidden=[32]",
            "model.latent_dim=4",
            "train.epochs=1",
            "train.num_workers=1",
            "train.plot_rows=32",  # a small sample: the first 32 rows in read order would hold 3 digits
            "tracking.registered_model=sorted-plots",
        ],
        home=str(home),
    )
    result = run_training(job, log=lambda _m: None)

    uri = job.tracking_uri
    local = Path(tracking.client(uri).download_artifacts(result.run_id, "plots", str(tmp_path / "plots")))
    assert {p.name for p in local.glob("*.png")} >= {"reconstructions.png", "code_map.png", "score_histogram.png"}
    shows = json.loads((local / "plot_rows.json").read_text())
    digits = [str(d) for d in range(10)]
    assert shows["reconstructions"]["labels"] == digits
    assert shows["code_map"]["labels"] == digits
    val_rows = int(is_validation(ids, job.data.val_fraction).sum())
    histogram = shows["score_histogram"]
    assert histogram["rows"] == val_rows and sum(histogram["per_label"].values()) == val_rows
    assert sorted(histogram["per_label"]) == digits
    # the uniform sample is spread over the split, not its first rows in read order
    sampled = {i.split("-")[1] for i in shows["code_map"]["ids"]}
    assert len({int(i) for i in sampled} & set(picked[-100:].tolist())) > 0  # rows of digits 8 and 9


def test_a_split_summarized_in_the_actor_gives_what_the_driver_gives(ray_local, tmp_path, monkeypatch):
    """A split above ``IN_PROCESS_ROWS`` is summarized in a Ray Data actor, a small one in the driver: the same
    histogram, extremes, sample and labelled scores either way."""
    import ray.data
    import torch

    from aecore import build_model
    from pipelines.bundle import ModelBundle, Normalizer, bundle_files, calibrate
    from pipelines.tracking import plot_rows

    model = build_model({"name": "dense", "input_shape": [6], "hidden": [4], "latent_dim": 2}).eval()
    x = np.random.default_rng(0).normal(size=(200, 6)).astype(np.float32)
    with torch.no_grad():
        calibration = calibrate(model.score(torch.from_numpy(x)).numpy())
    files = bundle_files(ModelBundle(model, Normalizer("none"), calibration, {}).save(tmp_path / "bundle"))
    rows = ray.data.from_items([{"id": f"row-{i}", "x": x[i], "label": i % 2} for i in range(len(x))])

    def summary() -> plot_rows.ScoreSummary:
        return plot_rows.summarize_scores(rows, files, calibration, n=40, seed=3)

    here = summary()
    monkeypatch.setattr(plot_rows, "IN_PROCESS_ROWS", 0)
    in_actor = summary()
    assert here.total == in_actor.total == len(x)
    assert all(np.array_equal(here.counts[k], in_actor.counts[k]) for k in ("0", "1"))
    assert here.best is not None and here.worst is not None and in_actor.best is not None and in_actor.worst is not None
    assert (here.best["id"], here.worst["id"]) == (in_actor.best["id"], in_actor.worst["id"])
    assert sorted(r["id"] for r in here.sample) == sorted(r["id"] for r in in_actor.sample)
    assert here.labelled.metrics(0.0) == in_actor.labelled.metrics(0.0)
