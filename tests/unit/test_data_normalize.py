"""Normalization moments merge across batches of any size, empty ones included (a batch of the validation pass
may hold no training row)."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.data.normalize import combine_moments, partial_moments


@pytest.mark.parametrize("kind", ["minmax", "standard"])
@pytest.mark.parametrize("scope", ["global", "feature", "channel"])
def test_moments_of_batches_merge_to_those_of_the_whole(kind, scope):
    x = np.random.default_rng(1).normal(size=(10, 3, 4, 4)).astype(np.float32)
    parts = [partial_moments(b, scope) for b in (x[:3], x[3:3], x[3:])]  # the middle batch is empty
    merged, whole = combine_moments(parts, kind), combine_moments([partial_moments(x, scope)], kind)
    np.testing.assert_allclose(merged.shift, whole.shift, rtol=1e-6)
    np.testing.assert_allclose(merged.scale, whole.scale, rtol=1e-6)


def test_only_empty_batches_cannot_be_fitted():
    with pytest.raises(ValueError, match="empty training split"):
        combine_moments([partial_moments(np.zeros((0, 5), np.float32), "feature")], "minmax")
