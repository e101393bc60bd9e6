"""``aepipe tune``'s search space: parsed, checked, sampled and turned into trial configs; labelled objectives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.config import ConfigError, TuneMetric, load_config
from pipelines.tune import objective
from pipelines.tune.space import assignment, data_kind, param_space, parse_space, trial_job, trial_points

CONFIGS = sorted(Path("jobs/configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_has_a_default_space_whose_every_choice_builds(path):
    job = load_config(path, ["tune.trials=20"])
    assert job.tune.trials == 20
    branches = parse_space(job, str(path))
    families = {b["model.name"].values[0] for b in branches}
    assert "linear" in families, "PCA's subspace is in every default space"
    assert len(branches) >= 2 and data_kind(job) in ("vectors", "images", "windows")
    # every family is compared at the job's code size (val_mse would always pick the largest code)
    for branch in branches:
        trial = trial_job(job, {key: domain.values[0] for key, domain in branch.items()})
        assert trial.model["latent_dim"] == job.model["latent_dim"], branch


def test_a_sampled_trial_sets_its_branch_values_and_nothing_of_the_others():
    job = load_config(
        "jobs/configs/digits_dense.yaml",
        ["tune.space=[{model.hidden: [[16]], train.lr: {loguniform: [0.001, 0.01]}}, {model.name: linear}]"],
    )
    space = param_space(parse_space(job))
    for _ in range(20):
        sampled = {k: v.sample() if hasattr(v, "sample") else v for k, v in space.items()}
        values = assignment(sampled)
        trial = trial_job(job, values)
        if sampled["branch"] == 0:
            assert trial.model["name"] == "dense" and trial.model["hidden"] == [16]
            assert 0.001 <= trial.train.lr <= 0.01 and trial.model["output_activation"] == "sigmoid"
        else:
            assert values == {"model.name": "linear"} and trial.train.lr == job.train.lr
            # another family starts from its own defaults, keeping the job's input shape and code size
            assert trial.model["name"] == "linear" and trial.model["output_activation"] == "identity"
            assert trial.model["input_shape"] == [64] and trial.model["latent_dim"] == job.model["latent_dim"]


def test_the_trials_take_the_branches_in_turn_and_a_listed_setting_once():
    space = (
        "[{model.hidden: [[16], [32]], train.lr: {loguniform: [0.001, 0.01]}},"  # a range: drawn, any number of trials
        " {model.name: linear},"  # one setting: one trial
        " {model.hidden: [[8], [16], [24]], model.dropout: [0.0, 0.1]}]"  # six settings
    )
    job = load_config("jobs/configs/digits_dense.yaml", [f"tune.space={space}"])
    branches = parse_space(job)
    points = trial_points(branches, 15, seed=0)
    assert [p["branch"] for p in points] == [0, 1, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 0, 0]  # then branch 0 alone
    listed = [assignment(p) for p in points if p["branch"] == 2]
    assert sorted((v["model.hidden"][0], v["model.dropout"]) for v in listed) == [
        (8, 0.0), (8, 0.1), (16, 0.0), (16, 0.1), (24, 0.0), (24, 0.1)
    ]  # fmt: skip
    assert points == trial_points(branches, 15, seed=0) and points != trial_points(branches, 15, seed=1)
    assert [p["branch"] for p in trial_points(branches, 4, seed=0)] == [0, 1, 2, 0]
    finite = parse_space(load_config("jobs/configs/digits_dense.yaml", ["tune.space=[{model.hidden: [[8], [16]]}]"]))
    assert len(trial_points(finite, 20, seed=0)) == 2  # the space holds two settings: two trials, not twenty


def test_parquet_vectors_read_as_images_get_the_images_space_and_its_conv_trials_build():
    flat = load_config("jobs/configs/mnist_dense.yaml", [])
    assert data_kind(flat) == "vectors"
    shaped = load_config("jobs/configs/mnist_dense.yaml", ["model.input_shape=[1, 28, 28]"])
    assert data_kind(shaped) == "images"
    branches = parse_space(shaped, "mnist_dense.yaml")  # every choice of every branch builds at (1, 28, 28)
    conv = next(b for b in branches if b["model.name"].values[0] == "conv")
    trial = trial_job(shaped, {key: domain.values[0] for key, domain in conv.items()})
    assert trial.model["name"] == "conv" and trial.model["input_shape"] == [1, 28, 28]


@pytest.mark.parametrize(
    "space, message",
    [
        ("[{data.normalize: [none, minmax]}]", "tune.space[0]: data.normalize: only model.* and train.* keys"),
        ("[{model.hidden: [[16]]}, {model.hiddn: [8]}]", "tune.space[1].model.hiddn=8: model.hiddn: no such config"),
        ("[{train.lr: {loguniform: [0, 0.1]}}]", "tune.space[0].train.lr: loguniform needs lo > 0"),
        ("[{train.epochs: {randint: [3, 1]}}]", "tune.space[0].train.epochs: randint needs [lo, hi] with lo <= hi"),
        ("[{train.lr: {normal: [0, 1]}}]", "a range is one of {uniform|loguniform|randint: [lo, hi]}"),
        ("[{model.name: [dense, transformer]}]", "tune.space[0].model.name='transformer': unknown model"),
        ("[{model.latent_dim: []}]", "tune.space[0].model.latent_dim: an empty list of choices"),
        ("[]", "tune.space: no branches"),
        ("[lr]", "digits_dense.yaml: tune.space.0: Input should be a valid dictionary"),
    ],
)
def test_a_bad_space_is_named_by_file_branch_and_key(space, message):
    with pytest.raises(ConfigError) as caught:
        parse_space(load_config("jobs/configs/digits_dense.yaml", [f"tune.space={space}"]), "digits.yaml")
    assert message in str(caught.value) and "yaml: " in str(caught.value), caught.value


def test_anomalous_rows_from_labels():
    assert objective.anomalous(np.array([False, True, False]), None).tolist() == [False, True, False]
    assert objective.anomalous(np.array(["normal", "anomaly", "normal"]), None).tolist() == [False, True, False]
    assert objective.anomalous(np.array(["a", "b", "b"]), None).tolist() == [True, False, False]  # the rarer
    assert objective.anomalous(np.array([3, 5, 7]), None) is None  # not two values and none declared
    assert objective.anomalous(np.array([3, 5, 7]), [5, 7]).tolist() == [False, True, True]
    assert objective.anomalous(np.array([3, 5]), [9]) is None
    assert objective.labelled_rows(np.array([1.0, np.nan, None], dtype=object)).tolist() == [True, False, False]


def test_ranking_metrics_of_a_perfect_and_a_reversed_score():
    positive = np.array([False, False, True, True])
    assert objective.ranking_metrics(np.array([0.1, 0.2, 0.8, 0.9]), positive) == {"val_auroc": 1.0, "val_ap": 1.0}
    assert objective.ranking_metrics(np.array([0.9, 0.8, 0.2, 0.1]), positive)["val_auroc"] == 0.0


def test_a_labelled_objective_without_two_kinds_of_labels_is_refused():
    objective.check_objective(TuneMetric.val_mse, None, "digits.yaml")  # reconstruction needs no labels
    with pytest.raises(ConfigError, match=r"digits.yaml: tune.metric=val_auroc needs labelled validation rows"):
        objective.check_objective(TuneMetric.val_auroc, None, "digits.yaml")
