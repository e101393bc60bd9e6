"""The scoring run's gallery: the candidates the actors hand back merge to exactly the k highest scores, and every
kind of sample (image, window, tabular row) is drawn."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aecore import build_model
from pipelines.bundle import ModelBundle, Normalizer, calibrate
from pipelines.score.top import TopRows, encode, pick
from pipelines.tracking import plots
from tests.unit.test_models_contract import FAMILIES, example_shape, small_model


def _offer(top: TopRows, ids: np.ndarray, scores: np.ndarray, x: np.ndarray, block: int) -> int:
    """Stream rows through one actor's running top k in blocks, as :class:`Scorer` does; rows handed back."""
    kept, sent = np.zeros(0), 0
    for lo in range(0, len(ids), block):
        chosen, kept = pick(scores[lo : lo + block], kept, top.k)
        top.add(encode(ids[lo : lo + block][chosen], scores[lo : lo + block][chosen], x[lo : lo + block][chosen]))
        sent += int(chosen.sum())
    return sent


@pytest.mark.parametrize("actors, block", [(1, 7), (3, 64), (2, 5000)])
def test_actor_candidates_merge_to_the_k_highest_scores(actors, block):
    rng = np.random.default_rng(actors)
    n, k = 5000, 16
    ids, scores = np.array([f"r{i}" for i in range(n)]), rng.normal(size=n).astype(np.float32)
    x = rng.random((n, 3, 2, 2), dtype=np.float32)
    top = TopRows(k)
    sent = sum(_offer(top, ids[a::actors], scores[a::actors], x[a::actors], block) for a in range(actors))
    best = np.argsort(-scores, kind="stable")[:k]
    assert top.ids == ids[best].tolist() and np.array_equal(top.scores, scores[best].astype(np.float64))
    assert np.array_equal(top.x, x[best].reshape(k, -1))  # each row's own raw sample travels with it
    assert sent < 12 * k * actors  # about k ln(n / k) per actor in random order, not every row


def test_a_block_hands_back_nothing_below_the_actors_top_k():
    chosen, kept = pick(np.array([5.0, 1.0, 9.0]), np.array([2.0, 3.0]), 2)
    assert chosen.tolist() == [True, False, True] and kept.tolist() == [5.0, 9.0]
    chosen, kept = pick(np.array([1.0, 4.0]), kept, 2)
    assert not chosen.any() and kept.tolist() == [5.0, 9.0]
    assert not pick(np.array([1.0]), np.zeros(0), 0)[0].any()  # a gallery of 0 rows: no candidates


@pytest.mark.parametrize(
    "model_cfg, names, kind",
    [
        ({"name": "dense", "input_shape": [784], "hidden": [16], "latent_dim": 3}, None, "images"),
        ({"name": "conv", "input_shape": [3, 12, 12], "latent_dim": 2}, None, "images"),
        ({"name": "recurrent", "input_shape": [16, 2], "latent_dim": 2}, ["value", "load"], "windows"),
        ({"name": "vae", "input_shape": [16], "hidden": [8], "latent_dim": 2}, [f"f{i}" for i in range(16)], "table"),
    ],
)
def test_gallery_draws_every_kind_of_sample(tmp_path, model_cfg, names, kind):
    model = build_model(model_cfg).eval()
    x = np.random.default_rng(0).random((6, *model.config.input_shape), dtype=np.float32) * 255
    normalizer = Normalizer("minmax", 0.0, 255.0)
    with torch.no_grad():
        scores = model.score(torch.from_numpy(normalizer.apply(x))).numpy()
    bundle = ModelBundle(model, normalizer, calibrate(scores), {})
    order = np.argsort(-scores)
    ids = [f"row-{i}" for i in order]
    path = plots.render_top(bundle, ids, scores[order], x[order].reshape(6, -1), names, tmp_path)
    shows = json.loads((tmp_path / "top_anomalies.json").read_text())
    assert shows["kind"] == kind and shows["ids"] == ids and path.stat().st_size > 10_000


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_gets_a_gallery(tmp_path, name):
    model = small_model(name).eval()
    x = np.random.default_rng(0).random((4, *example_shape(name)), dtype=np.float32)
    with torch.no_grad():
        scores = model.score(torch.from_numpy(x)).numpy()
    bundle = ModelBundle(model, Normalizer("none"), calibrate(scores), {})
    plots.render_top(bundle, ["a", "b", "c", "d"], scores, x.reshape(4, -1), None, tmp_path)
    kind = {3: "images", 2: "windows", 1: "table"}[len(example_shape(name))]
    assert json.loads((tmp_path / "top_anomalies.json").read_text())["kind"] == kind


def test_a_triptych_shows_input_reconstruction_and_error_side_by_side():
    image = np.array([[0.0, 2.0], [4.0, 8.0]])
    recon = np.array([[1.0, 2.0], [4.0, 16.0]])  # out of the input's range: clipped to its scale
    strip = plots.triptych(image, recon, np.abs(image - recon), error_max=8.0)
    assert strip.shape == (2, 3 * 2 + 2, 3) and strip.min() >= 0.0 and strip.max() <= 1.0
    np.testing.assert_allclose(strip[:, :2, 0], image / 8.0)  # input on its own grey scale
    np.testing.assert_allclose(strip[:, 3:5, 1], [[0.125, 0.25], [0.5, 1.0]])  # the reconstruction, clipped
    assert (strip[:, [2, 5]] == 1.0).all()  # white gutters
    hot, cold = strip[1, 7], strip[0, 7]  # error 8 (the largest) vs 0
    assert hot.sum() > cold.sum()
