"""Config mistakes get one clear line and exit status 2 before anything starts."""

from __future__ import annotations

import pytest

from tests.support.cli import assert_clean_error, invoke, train


def test_unknown_config_key(home):
    assert_clean_error(train("train.epochz=2"), "train.epochz: no such config key")


def test_resume_policy_in_the_config(home):
    assert_clean_error(train("train.resume=maybe"), "train.resume: Input should be 'auto', 'never' or 'require'")


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
        (["train", "--resume", "maybe"], ["Invalid value for '--resume'", "'maybe' is not one of", "'require'"]),
    ],
)
def test_closed_choices_are_usage_errors(home, args, fragments):
    assert_clean_error(invoke(*args), "Usage: ", *fragments)


@pytest.fixture()
def no_ray(monkeypatch):
    """Fails the test if the command reaches a Ray start: these mistakes must be refused while parsing."""
    import ray

    def refuse(*args, **kwargs):
        raise AssertionError("the command started Ray before refusing its arguments")

    monkeypatch.setattr(ray, "init", refuse)


BROKEN_YAML = "name: broken\ntrain:\n  epochs: [1\n"


@pytest.mark.parametrize(
    "args, fragments",
    [
        pytest.param(["score", "--psi-limit", "0"], ["score.psi_limit", "greater than 0"], id="psi-limit"),
        pytest.param(["score", "--ks-alpha", "0"], ["score.ks_alpha", "greater than 0"], id="ks-alpha"),
        pytest.param(["score", "score.ks_alpha=1"], ["score.ks_alpha", "less than 1"], id="ks-alpha-override"),
        pytest.param(["score", "score.drift_bins=7"], ["score.drift_bins", "must divide 100"], id="drift-bins"),
        pytest.param(
            ["score", "score.batch_size=[64"],
            ["override 'score.batch_size=[64'", "score.batch_size", "not valid YAML"],
            id="score-override-yaml",
        ),
        pytest.param(
            ["train", "model.hidden=[64"],
            ["override 'model.hidden=[64'", "model.hidden", "not valid YAML"],
            id="train-override-yaml",
        ),
        pytest.param(["train", "data.val_fraction=0"], ["data.val_fraction", "greater than 0"], id="val-fraction-0"),
        pytest.param(["train", "data.val_fraction=1"], ["data.val_fraction", "less than 1"], id="val-fraction-1"),
        pytest.param(
            ["score", "--config", "{broken}"],
            ["broken.yaml: not valid YAML (line 3, key train.epochs)"],
            id="score-config-yaml",
        ),
        pytest.param(
            ["train", "--config", "{broken}"],
            ["broken.yaml: not valid YAML (line 3, key train.epochs)"],
            id="train-config-yaml",
        ),
        pytest.param(
            ["tune", "--config", "jobs/configs/digits_dense.yaml", "tune.space=[{{data.normalize: [none]}}]"],
            ["jobs/configs/digits_dense.yaml: tune.space[0]: data.normalize: only model.* and train.* keys"],
            id="tune-space-data-key",
        ),
        pytest.param(["tune", "tune.trials=0"], ["tune.trials", "greater than or equal to 1"], id="tune-trials-0"),
        pytest.param(["tune", "tune.metric=auc"], ["tune.metric: Input should be 'val_mse'"], id="tune-metric"),
    ],
)
def test_mistakes_are_refused_while_parsing(home, no_ray, args, fragments):
    broken = home / "broken.yaml"
    broken.write_text(BROKEN_YAML)
    result = invoke(*(a.format(broken=broken) for a in args))
    assert_clean_error(result, "error: ", *fragments)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["score", "--model", "m", "--input", "i", "--output", "o", "--mode", "foo"], "'foo' is not one of"),
        (["train", "--resume", "maybe"], "'maybe' is not one of 'auto', 'never', 'require'"),
        (["models", "list", "--bogus"], "No such option: --bogus (see: aepipe models list --help)"),
        (["nosuch"], "No such command 'nosuch'"),
    ],
)
def test_usage_errors_are_one_error_line_from_the_installed_command(args, expected):
    """What a user's shell runs (the ``aepipe`` entry point, not the test runner's wrapper): one line, exit 2."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_config_show_prints_the_resolved_config(home):
    """``aepipe config show``: the file under the overrides with every default filled in, as YAML or JSON."""
    import json

    import yaml

    shown = invoke("config", "show", "--config", "jobs/configs/mnist_dense.yaml", "train.epochs=3")
    assert shown.exit_code == 0, shown.output
    resolved = yaml.safe_load(shown.stdout)
    assert resolved["train"]["epochs"] == 3 and resolved["model"]["name"] == "dense"
    assert resolved["home"] == str(home) and "score" in resolved and "batch_size" in resolved["score"]
    as_json = invoke("config", "show", "--config", "jobs/configs/mnist_dense.yaml", "train.epochs=3", "--json")
    assert as_json.exit_code == 0 and json.loads(as_json.stdout) == resolved


@pytest.mark.parametrize(
    "args, message",
    [
        (["train.epochz=2"], "train.epochz: no such config key"),
        (["model.name=transformer"], "unknown model 'transformer'"),
        (["--config", "missing.yaml"], "error: config file missing.yaml does not exist"),
    ],
)
def test_config_show_errors(home, args, message):
    assert_clean_error(invoke("config", "show", *args), message)
