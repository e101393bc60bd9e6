"""The training split's principal components: the code size measured from them (``data.latent_variance``) and the
subspace a linear model starts at (``train.principal_start``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from pipelines.config import ConfigError
from pipelines.data.components import MAX_VALUES, PrincipalComponents, check_measurable, cross_moments
from tests.support.low_rank import rank3


def _principal(x: np.ndarray) -> PrincipalComponents:
    m = cross_moments(x)
    return PrincipalComponents.from_moments(float(m["count"]), m["sum"], m["cross"])


@pytest.mark.parametrize("share, components", [(0.5, 1), (0.8, 2), (0.9, 3), (0.99, 3)])
def test_the_fewest_components_holding_the_share(share, components):
    assert _principal(rank3(4000)).holding(share) == components


def test_the_components_are_pcas_largest_first():
    x = rank3(2000, values=6) + np.arange(6, dtype=np.float32)  # off-centre
    found = _principal(x)
    pca = PCA(6).fit(x)
    np.testing.assert_allclose(found.mean, pca.mean_, atol=1e-5)
    np.testing.assert_allclose(found.variances[:3], pca.explained_variance_[:3] * (1999 / 2000), rtol=1e-4)
    for ours, theirs in zip(found.leading(3).components, pca.components_[:3], strict=True):  # up to sign
        assert abs(float(ours @ theirs)) == pytest.approx(1.0, abs=1e-4)
    assert found.leading(2).components.shape == (2, 6) and len(found.leading(2).variances) == 6


def test_moments_of_parts_add_up_to_the_whole():
    x = rank3(500).reshape(500, 4, 4)  # any sample shape: flattened
    parts = [cross_moments(x[:123]), cross_moments(x[123:])]
    whole = cross_moments(x)
    for key in ("count", "sum", "cross"):
        np.testing.assert_allclose(sum(p[key] for p in parts), whole[key])


def test_constant_samples_take_one_component():
    assert _principal(np.ones((10, 5))).holding(0.9) == 1


def test_samples_too_large_to_measure_are_refused_naming_the_corpus_and_setting():
    check_measurable(MAX_VALUES, "data/x")
    with pytest.raises(ConfigError, match=r"data/x: data.latent_variance measures samples of at most 4096 values"):
        check_measurable(MAX_VALUES + 1, "data/x")
