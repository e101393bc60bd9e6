"""Whatever samples training accepts for a model, scoring accepts too: one shared shape check."""

from __future__ import annotations

import numpy as np
import pytest

from aecore import build_model
from pipelines.bundle import ModelBundle, Normalizer, accepts_shape
from pipelines.config import ConfigError, load_config
from pipelines.train.driver import _check_shape

CASES = [
    ((1, 28, 28), (1, 28, 28), True),
    ((784,), (1, 28, 28), True),  # flat vectors for an image model
    ((784,), (784,), True),
    ((48,), (16, 3), True),  # flat windows for a sequence model
    ((100,), (1, 28, 28), False),
    ((28, 28), (1, 28, 28), False),  # same values, another non-flat shape
    ((1, 28, 28), (784,), False),
]


@pytest.mark.parametrize(("sample", "model", "ok"), CASES)
def test_training_and_scoring_accept_the_same_shapes(tmp_path, sample, model, ok):
    assert accepts_shape(sample, model) is ok
    job = load_config(None, [f"home={tmp_path}", f"model.input_shape={list(model)}"], home=str(tmp_path))
    bundle = ModelBundle(build_model(job.model), Normalizer("none"), {"threshold": 1.0}, {})
    if ok:
        _check_shape(job, sample)
        bundle.check_shape(sample, "corpus")
    else:
        with pytest.raises(ConfigError):
            _check_shape(job, sample)
        with pytest.raises(ValueError, match="corpus: samples have shape"):
            bundle.check_shape(sample, "corpus")


def test_an_image_model_scores_flat_vectors():
    model = build_model({"name": "conv", "input_shape": [1, 28, 28], "channels": [4], "latent_dim": 4})
    bundle = ModelBundle(model, Normalizer("none"), {"threshold": 1.0}, {})
    bundle.check_shape((784,), "corpus")
    x = np.random.default_rng(0).random((3, 784), dtype=np.float32)
    out = bundle.infer(x)
    assert out["score"].shape == (3,) and np.isfinite(out["score"]).all()
    np.testing.assert_allclose(out["score"], bundle.infer(x.reshape(3, 1, 28, 28))["score"], rtol=1e-6)
