"""Config mistakes get one clear line and exit status 2 before anything starts."""

from __future__ import annotations

import pytest

from tests.support.cli import assert_clean_error, invoke, train


def test_unknown_config_key(home):
    assert_clean_error(train("train.epochz=2"), "train.epochz: no such config key")


def test_unknown_model_lists_known(home):
    assert_clean_error(train("model.name=transformer"), "unknown model 'transformer'", "dense", "vae")


@pytest.mark.parametrize(
    "args, message",
    [
        (["score.batchsize=512"], "error: config: score.batchsize: no such config key"),
        (["--config", "jobs/configs/mnist_dense.yaml", "score.psi_limt=1"], "score.psi_limt: no such config key"),
        (["train.epochs=3"], "error: override 'train.epochs=3': only score.* keys can be set here"),
        (["--batch-size", "0"], "score.batch_size: Input should be greater than or equal to 1"),
        (["--config", "missing.yaml"], "error: config file missing.yaml does not exist"),
    ],
)
def test_score_settings_mistakes(home, args, message):
    assert_clean_error(invoke("score", *args), message)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["score", "--mode", "foo"], ["Invalid value for '--mode'", "'foo' is not one of", "'embed'"]),
        (["data", "synthetic", "--kind", "audio"], ["Invalid value for '--kind'", "'audio' is not one of", "'series'"]),
    ],
)
def test_closed_choices_are_usage_errors(home, args, fragments):
    assert_clean_error(invoke(*args), "Usage: ", *fragments)
