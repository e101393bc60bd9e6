"""Config mistakes get one clear line and exit status 2 before anything starts."""

from __future__ import annotations

from tests.support.cli import assert_clean_error, train


def test_unknown_config_key(home):
    assert_clean_error(train("train.epochz=2"), "train.epochz: no such config key")


def test_unknown_model_lists_known(home):
    assert_clean_error(train("model.name=transformer"), "unknown model 'transformer'", "dense", "vae")
