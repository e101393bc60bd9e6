"""Job configs: YAML + overrides, clear errors, every shipped YAML builds."""

import pytest

from aecore import UnknownModelError, build_model
from pipelines.config import ConfigError, apply_overrides, load_config
from tests.support import REPO

CONFIGS = sorted((REPO / "jobs" / "configs").glob("*.yaml"))


def test_overrides_parse_yaml_values():
    raw = apply_overrides({}, ["train.epochs=3", "model.hidden=[64, 32]", "data.label_column=null"])
    assert raw == {"train": {"epochs": 3}, "model": {"hidden": [64, 32]}, "data": {"label_column": None}}


def test_defaults_then_file_then_overrides(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("name: a\ntrain:\n  epochs: 4\n")
    job = load_config(cfg, ["train.epochs=2"], home=str(tmp_path))
    assert (job.name, job.train.epochs, job.home) == ("a", 2, str(tmp_path))
    assert job.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epochz=3", "train.epochz: no such config key"),
        ("model.hiddenx=3", "hiddenx"),
        ("train.epochs=0", "train.epochs"),
        ("nonsense", "key=value"),
    ],
)
def test_bad_keys_get_clear_errors(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        load_config(None, [override])


def test_unknown_model_lists_known_names():
    with pytest.raises(UnknownModelError, match=r"unknown model 'nope'; known models: .*dense"):
        load_config(None, ["model.name=nope"])


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_parses_and_builds(path):
    job = load_config(path)
    model = build_model(job.model)
    assert sum(p.numel() for p in model.parameters()) > 0
    assert tuple(model.config.input_shape) == tuple(job.model["input_shape"])


def test_typed_values_win_over_file_and_overrides(tmp_path):
    cfg = tmp_path / "job.yaml"
    cfg.write_text("score:\n  batch_size: 64\n  concurrency: 3\n")
    job = load_config(cfg, ["score.batch_size=128", "score.ks_min=0.2"], values={"score.batch_size": 256})
    assert (job.score.batch_size, job.score.concurrency, job.score.ks_min) == (256, 3, 0.2)


def test_overrides_can_be_limited_to_sections():
    assert load_config(None, ["score.psi_limit=0.5"], sections=("score",)).score.psi_limit == 0.5
    with pytest.raises(ConfigError, match=r"override 'train\.epochs=3': only score\.\* keys can be set here"):
        load_config(None, ["train.epochs=3"], sections=("score",))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("name: x\ntrain:\n  epochs: [1\n", "(line 3, key train.epochs): while parsing a flow sequence"),
        ("train:\n  epochs: 3: 4\n", "(line 2, key train.epochs): mapping values are not allowed here"),
        ('score:\n  psi_limit: "abc\n', "(line 2, key score.psi_limit): while scanning a quoted scalar"),
        ("data:\n\tpath: x\n", "(line 2, key data.path)"),
        ("model:\n  hidden: [64, 32]\n  latent_dim: {a\nscore: {}\n", "(line 3, key model.latent_dim)"),
    ],
)
def test_malformed_yaml_file_names_line_and_key(tmp_path, text, fragment):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not valid YAML ") and fragment in message, message
    assert "\n" not in message


def test_malformed_override_value_names_the_key():
    with pytest.raises(
        ConfigError, match=r"override 'model\.hidden=\[64': the value of model\.hidden is not valid YAML"
    ):
        load_config(None, ["model.hidden=[64"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("score.drift_bins=7", "score.drift_bins: .*must divide 100"),
        ("score.drift_bins=20", None),
        ("data.val_fraction=0", "data.val_fraction: Input should be greater than 0"),
        ("data.val_fraction=0.05", None),
    ],
)
def test_settings_that_used_to_fail_late_are_refused_while_parsing(override, message):
    if message is None:
        load_config(None, [override])
    else:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [override])
