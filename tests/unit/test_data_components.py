"""The code size measured from the data (``data.latent_variance``): principal components holding a variance share."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.config import ConfigError
from pipelines.data.components import MAX_VALUES, check_measurable, components_holding, cross_moments
from tests.support.low_rank import rank3


@pytest.mark.parametrize("share, components", [(0.5, 1), (0.8, 2), (0.9, 3), (0.99, 3)])
def test_the_fewest_components_holding_the_share(share, components):
    m = cross_moments(rank3(4000))
    assert components_holding(float(m["count"]), m["sum"], m["cross"], share) == components


def test_moments_of_parts_add_up_to_the_whole():
    x = rank3(500).reshape(500, 4, 4)  # any sample shape: flattened
    parts = [cross_moments(x[:123]), cross_moments(x[123:])]
    whole = cross_moments(x)
    for key in ("count", "sum", "cross"):
        np.testing.assert_allclose(sum(p[key] for p in parts), whole[key])


def test_constant_samples_take_one_component():
    m = cross_moments(np.ones((10, 5)))
    assert components_holding(float(m["count"]), m["sum"], m["cross"], 0.9) == 1


def test_samples_too_large_to_measure_are_refused_naming_the_corpus_and_setting():
    check_measurable(MAX_VALUES, "data/x")
    with pytest.raises(ConfigError, match=r"data/x: data.latent_variance measures samples of at most 4096 values"):
        check_measurable(MAX_VALUES + 1, "data/x")
