"""``aepipe train --resume auto|never|require`` on a real local Ray and SQLite MLflow: a failed run re-run with the
same config continues (same run id, from its checkpoint), a changed config starts a new run and says why,
``require`` without a matching run is one error line, and every run records the code's commit."""

from __future__ import annotations

import subprocess

from pipelines import tracking
from pipelines.provenance import CODE_ROOT
from pipelines.train import resume
from pipelines.train.driver import GIT_TAG, JOB_TAG
from tests.support.cli import assert_clean_error, train

NAME = "resumable"


def _base(data) -> list[str]:
    return [
        f"name={NAME}",
        f"data.path={data}",
        f"tracking.registered_model={NAME}",
        "train.epochs=2",
        "train.checkpoint_every=1",
        "train.num_workers=1",
        "train.batch_size=64",
        "train.plot_rows=16",
        "model.hidden=[16]",
        "model.latent_dim=4",
    ]


def _run_id(output: str) -> str:
    return next(line.split()[1] for line in output.splitlines() if line.startswith("run: "))


def test_resume_follows_the_fingerprints(ray_local, home, mnist_small):
    uri = f"sqlite:///{home.resolve() / 'mlflow.db'}"
    base = _base(mnist_small)
    # a run whose only worker dies in epoch 2, with no restart left: FAILED, its epoch-1 checkpoint kept
    failed = train(*base, "train.max_failures=0", "train.fault_injection={epoch: 2, rank: 0, after_batches: 1}")
    assert failed.exit_code != 0, failed.output
    [first] = tracking.unfinished_runs(uri, "aepipe", JOB_TAG, NAME)
    assert first.status == "FAILED"
    head = subprocess.run(["git", "-C", str(CODE_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert first.tags[GIT_TAG] == head.stdout.strip() and len(first.tags[GIT_TAG]) == 40
    assert len(first.tags[resume.CONFIG_TAG]) == 64 and len(first.tags[resume.CORPUS_TAG]) == 64

    # require: a changed config matches no unfinished run; another job name has none at all
    refused = train(*base, "train.epochs=1", "--resume", "require")
    assert_clean_error(
        refused, f"error: train.resume=require: cannot continue run {first.run_id}: the config changed (train.epochs)"
    )
    assert refused.output.count("error:") == 1 and len(refused.output.strip().splitlines()) == 1
    none = train(*base, "name=other", "--resume", "require")
    assert_clean_error(none, "train.resume=require: job other has no unfinished run in experiment aepipe")

    # auto with a changed config: a new run, and one line saying why the failed one is left alone
    changed = train(*base, "train.epochs=1")
    assert changed.exit_code == 0, changed.output
    assert f"not resuming run {first.run_id}: the config changed (train.epochs)\n" in changed.output
    second = _run_id(changed.output)
    assert second != first.run_id and tracking.run_status(uri, first.run_id) == "FAILED"

    # auto with the first config: the failed run continues from its epoch-1 checkpoint
    again = train(*base)
    assert again.exit_code == 0, again.output
    assert "not resuming" not in again.output and _run_id(again.output) == first.run_id
    assert tracking.run_status(uri, first.run_id) == "FINISHED"
    assert tracking.metric_history(uri, first.run_id, "resumed_from_epoch") == [(1, 1.0)]
    assert [s for s, _ in tracking.metric_history(uri, first.run_id, "val_loss")] == [0, 1, 2]
    assert tracking.client(uri).get_run(second).data.tags[GIT_TAG] == first.tags[GIT_TAG]
