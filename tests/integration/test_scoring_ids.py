"""Derived ids (``data.id_column: null``, ``derive_ids: true``) name files relative to the corpus root, in
training and in scoring alike: date partitions that each hold a ``part-00000.parquet`` keep distinct ids."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.config import load_config
from pipelines.data import load_dataset
from pipelines.score.driver import ScoreRequest, run_scoring
from pipelines.train.driver import run_training

PARTITIONS = ("dt=2024-06-01", "dt=2024-06-02")
ROWS = 30


def _partitioned_corpus(root) -> None:
    rng = np.random.default_rng(0)
    for dt in PARTITIONS:
        (root / dt).mkdir(parents=True)
        x = rng.random((ROWS, 6), dtype=np.float32)
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), 6)
        pq.write_table(pa.table({"x": vectors}), root / dt / "part-00000.parquet")


def test_scoring_derives_the_ids_training_derives(ray_local, home, tmp_path):
    root = tmp_path / "corpus"
    _partitioned_corpus(root)
    job = load_config(
        None,
        [
            f"home={home}",
            "name=derived-ids",
            f"data.path={root}",
            "data.id_column=null",
            "data.derive_ids=true",
            "model.input_shape=[6]",
            "model.hidden=[4]",
            "model.latent_dim=2",
            "train.epochs=1",
            "train.num_workers=1",
            "train.batch_size=16",
            "train.plot_rows=16",
            "tracking.registered_model=derived-ids",
        ],
        home=str(home),
    )
    result = run_training(job, log=lambda _m: None)
    trained_ids = {r["id"] for r in load_dataset(job.data, job.data_path).dataset.select_columns(["id"]).take_all()}
    assert trained_ids == {f"{dt}/part-00000.parquet:{i}" for dt in PARTITIONS for i in range(ROWS)}

    out = tmp_path / "scored"
    req = ScoreRequest(
        model_uri=f"models:/derived-ids/{result.model_version}",
        input_path=str(root),
        output_path=str(out),
        tracking_uri=job.tracking_uri,
    )
    run_scoring(req, log=lambda _m: None)
    scored_ids = [i for p in sorted(out.rglob("*.parquet")) for i in pq.read_table(p).column("id").to_pylist()]
    assert len(scored_ids) == len(set(scored_ids)) == 2 * ROWS
    assert set(scored_ids) == trained_ids
