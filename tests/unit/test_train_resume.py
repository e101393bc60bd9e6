"""Which unfinished run a training job continues: the config and corpus fingerprints, the decision per
``train.resume``, the driver ids that keep a live job's run from a second driver, and the code's commit."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines import tracking
from pipelines.config import ConfigError, JobConfig, load_config
from pipelines.data.files import corpus_fingerprint
from pipelines.provenance import CODE_ROOT, driver_alive, driver_id, git_commit
from pipelines.train import resume


def _job(tmp_path: Path, *overrides: str) -> JobConfig:
    return load_config(
        "jobs/configs/mnist_dense.yaml", [f"data.path={tmp_path / 'corpus'}", *overrides], home=str(tmp_path)
    )


@pytest.fixture()
def corpus(tmp_path: Path) -> Path:
    """Two shards in a date folder and a marker file."""
    root = tmp_path / "corpus"
    (root / "dt=1").mkdir(parents=True)
    (root / "dt=1" / "a.parquet").write_bytes(b"a" * 10)
    (root / "dt=1" / "b.parquet").write_bytes(b"b" * 20)
    (root / "_SUCCESS").write_text("")
    return root


def test_config_fingerprint_follows_what_is_trained(tmp_path):
    base = resume.config_fingerprint(_job(tmp_path))
    assert resume.config_fingerprint(_job(tmp_path)) == base
    for trained in (
        "model.hidden=[16]",
        "train.seed=1",
        "train.lr=0.01",
        "data.normalize=standard",
        "data.val_fraction=0.3",
    ):
        assert resume.config_fingerprint(_job(tmp_path, trained)) != base, trained
    for kept in (
        "train.resume=never",
        "train.max_failures=5",
        "train.keep_checkpoints=3",
        "train.cpus_per_worker=1",
        "train.fault_injection={epoch: 2}",
        "data.path=/elsewhere",
        "data.cache=stream",
        "tracking.tracking_uri=http://mlflow:5000",
        "tracking.registered_model=other",
        "storage_path=s3://bucket/checkpoints",
        "score.batch_size=7",
        "name=renamed",
    ):
        assert resume.config_fingerprint(_job(tmp_path, kept)) == base, kept


def test_changed_settings_are_named_against_the_run_params(tmp_path):
    old = _job(tmp_path)
    params = tracking.flatten(old.model_dump(mode="json"))  # what start_run logs
    new = _job(tmp_path, "model.hidden=[16]", "train.max_failures=3", "train.seed=2")
    assert resume.changed_settings(params, resume.fingerprint_settings(new)) == ["model.hidden", "train.seed"]
    assert resume.changed_settings(params, resume.fingerprint_settings(old)) == []


def test_corpus_fingerprint_changes_with_any_file(corpus, tmp_path):
    base = corpus_fingerprint(str(corpus))
    assert corpus_fingerprint(str(corpus)) == base
    assert corpus_fingerprint(corpus.as_uri()) == base  # file:// lists the same files

    moved = tmp_path / "moved"
    shutil.copytree(corpus, moved)  # copy2: sizes and modification times kept
    assert corpus_fingerprint(str(moved)) == base

    (corpus / "_tmp_attempt").write_text("ignored, like every reader ignores it")
    assert corpus_fingerprint(str(corpus)) == base

    shard = corpus / "dt=1" / "a.parquet"
    stat = shard.stat()
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touched
    touched = corpus_fingerprint(str(corpus))
    assert touched != base

    (corpus / "dt=2").mkdir()
    (corpus / "dt=2" / "c.parquet").write_bytes(b"c")  # added
    assert corpus_fingerprint(str(corpus)) not in (base, touched)


def test_corpus_fingerprint_of_a_single_file(corpus):
    shard = str(corpus / "dt=1" / "b.parquet")
    assert corpus_fingerprint(shard) == corpus_fingerprint(shard)
    assert corpus_fingerprint(shard) != corpus_fingerprint(str(corpus / "dt=1" / "a.parquet"))


def _run(run_id: str, job: JobConfig, current: resume.Fingerprints, status: str = "FAILED", **tags: str):
    base = {resume.CONFIG_TAG: current.config, resume.CORPUS_TAG: current.corpus, resume.DRIVER_TAG: "h/1/1"}
    return tracking.RunRecord(run_id, status, {**base, **tags}, tracking.flatten(job.model_dump(mode="json")))


def _never_running(_driver: str) -> bool:
    return False


def test_auto_continues_the_newest_matching_run(corpus, tmp_path):
    job = _job(tmp_path)
    current = resume.fingerprints(job)
    old = _job(tmp_path, "model.latent_dim=3")
    runs = [_run("new", old, resume.fingerprints(old)), _run("older", job, current)]
    assert resume.decide(job, runs, current, _never_running) == resume.Decision("older")
    assert resume.decide(job, [], current, _never_running) == resume.Decision(None)


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ("config", "the config changed (model.latent_dim)"),
        ("corpus", "the corpus changed"),
        ("untagged", "it records no fingerprints"),
        ("alive", f"its driver (pid 1 on {socket.gethostname()}) is still running"),
    ],
)
def test_auto_starts_a_new_run_and_says_why(corpus, tmp_path, change, why):
    job = _job(tmp_path)
    current = resume.fingerprints(job)
    if change == "config":
        old = _job(tmp_path, "model.latent_dim=3")
        run = _run("abc123", old, resume.fingerprints(old))
    elif change == "corpus":
        run = _run("abc123", job, current, **{resume.CORPUS_TAG: "0" * 64})
    elif change == "untagged":
        run = tracking.RunRecord("abc123", "RUNNING", {}, {})
    else:
        run = _run("abc123", job, current, "RUNNING", **{resume.DRIVER_TAG: f"{socket.gethostname()}/1/5"})
    decision = resume.decide(job, [run], current, running=lambda driver: driver.endswith("/1/5"))
    assert decision.run_id is None and decision.reason is not None
    assert decision.reason.startswith(f"not resuming run abc123: {why}"), decision.reason
    with pytest.raises(ConfigError, match=re.escape(f"train.resume=require: cannot continue run abc123: {why}")):
        resume.decide(_job(tmp_path, "train.resume=require"), [run], current, running=lambda d: d.endswith("/1/5"))


def test_never_and_require(corpus, tmp_path):
    job = _job(tmp_path)
    current = resume.fingerprints(job)
    matching = [_run("abc123", job, current)]
    assert resume.decide(_job(tmp_path, "train.resume=never"), matching, current, _never_running).run_id is None
    require = _job(tmp_path, "train.resume=require")
    assert resume.decide(require, matching, current, _never_running).run_id == "abc123"
    with pytest.raises(
        ConfigError, match=r"train\.resume=require: job mnist-dense has no unfinished run in experiment"
    ):
        resume.decide(require, [], current, _never_running)


def test_driver_ids_tell_live_from_gone_drivers():
    me = driver_id()
    assert driver_alive(me) and not resume.other_driver_running(me)  # this process may continue its own run
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        host = socket.gethostname()
        start = (
            (Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
            if Path("/proc").is_dir()
            else ""
        )
        other = f"{host}/{child.pid}/{start}"
        assert driver_alive(other) and resume.other_driver_running(other)
        assert not driver_alive(f"{host}/{child.pid}/{start}9")  # the pid reused by a later process
    finally:
        child.kill()
        child.wait()
    assert not driver_alive(other)  # gone
    assert not driver_alive(f"other-host.invalid/{os.getpid()}/{me.rsplit('/', 1)[1]}")  # cannot be checked
    assert not driver_alive("") and not driver_alive("garbage")


def test_git_commit_of_the_code_root(tmp_path):
    head = subprocess.run(["git", "-C", str(CODE_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert git_commit(CODE_ROOT) == head.stdout.strip() and len(head.stdout.strip()) == 40
    assert git_commit(tmp_path) is None  # not a repository
    assert git_commit(CODE_ROOT / "pipelines") is None  # inside one, but not its top level
