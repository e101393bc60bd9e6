"""Scoring a large folder of tiny images in shards: planning, throughput, driver memory and the nightly no-op.

The folder holds ``images`` 8x8 grayscale PNGs (100,000 in the full suite, 2,000 with ``quick``) in
sub-folders of 1,000 (``batch-0000/img-00000000.png`` ...), scored by a freshly initialised dense model into
shards of ``score.images_per_shard`` files.

- ``planning_s``: listing the folder and cutting it into shards (:func:`pipelines.score.plan.make_plan`), vs
  the bare listing (``pyarrow.fs`` ``get_file_info``) it starts from.
- ``rows_per_s``: images per second of the whole ``run_scoring`` call (plan, validate, decode, score, write,
  commit), vs decoding and scoring the same files in this process, one file after another, with as many
  torch threads as the actor pool has actors (over a sample of the folder).
- ``steady_rows_per_s``: the same after each pass's first scored batch (actor start-up and first reads left out).
- ``driver_peak_mb``: peak resident memory of the driver above its level before the call, at the full folder vs
  a tenth of it (one folder at least); flat means no image, no per-image row and no per-file object passes
  through or stays on the driver (the manifest names each shard's input index instead of listing its files:
  ``manifest_mb``).
- ``noop_s``: an incremental re-run over the published folder (plan every folder against the input indexes of
  the published shards of that folder, find nothing new), vs the full run's planning.

Measured (2026-12-01, 2 cores shared with other jobs, rates noisy), 100,000 images in 100 shards: driver peak
21 MB vs 19 MB at 10,000 images (1.1x; it was 118 vs 23, 5.1x, with the file lists held as Python objects: the
listing, each shard's files and inputs, an 8.2 MB manifest listing every file, and 782 read tasks of 128 images
whose id blocks the duplicate-id check buffered on the driver); planning 1.3 s (was 1.9); 1,556 rows/s end to
end (was 486), 7,207 steady (was 1,200) vs 5,213 in-process (the folder is still decoded twice: the validation
pass, then scoring); the nightly no-op 1.4 s (was 3.8) with a 0.1 MB manifest (was 8.2 MB).
"""

from __future__ import annotations

import io
import pathlib
import shutil
import sys
import time

import numpy as np
import pyarrow.fs as pafs
import torch

from bench.common import ray_workspace
from bench.memory import PeakMemory
from bench.score_throughput import register

BENCH = "score_images"
SIZE, PER_FOLDER = 8, 1000
DATA = {"source": "images", "image_size": [SIZE, SIZE], "color_mode": "grayscale"}
MODEL = {"name": "dense", "input_shape": [1, SIZE, SIZE], "hidden": [32], "latent_dim": 8}


def write_folder(out: pathlib.Path, images: int, variants: int = 256) -> pathlib.Path:
    """``images`` real PNGs in folders of :data:`PER_FOLDER`; ``variants`` distinct noise images are encoded once
    and their bytes written again under every name (decoding cost is the same, writing is fast)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    encoded = []
    for _ in range(variants):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)).save(buf, format="PNG")
        encoded.append(buf.getvalue())
    for i in range(images):
        folder = out / f"batch-{i // PER_FOLDER:04d}"
        if i % PER_FOLDER == 0:
            folder.mkdir(parents=True)
        (folder / f"img-{i:08d}.png").write_bytes(encoded[i % variants])
    return out


def _score(uri: str, inp: pathlib.Path, out: pathlib.Path, concurrency: int, incremental: bool = False):
    from pipelines.config import ScoreConfig
    from pipelines.score.driver import ScoreRequest, run_scoring

    req = ScoreRequest(
        model_uri="models:/bench-score/1",
        input_path=str(inp),
        output_path=str(out),
        tracking_uri=uri,
        incremental=incremental,
        settings=ScoreConfig(concurrency=concurrency, num_cpus=0.5, num_gpus=0, psi_limit=100.0),
    )
    t = time.perf_counter()
    with PeakMemory(interval=0.01, workers=False) as mem:
        result = run_scoring(req, log=lambda _: None)
    return result, time.perf_counter() - t, mem.driver_peak_mib


def _planning(inp: pathlib.Path) -> tuple[float, float, int]:
    """Seconds to plan the folder's shards, seconds of the bare recursive listing, and the shard count."""
    from pipelines.config import DataConfig, ScoreConfig
    from pipelines.score.plan import make_plan

    t = time.perf_counter()
    pafs.LocalFileSystem().get_file_info(pafs.FileSelector(str(inp), recursive=True))
    listing = time.perf_counter() - t
    t = time.perf_counter()
    shards, _ = make_plan(
        str(inp),
        DataConfig(**DATA),
        images_per_shard=ScoreConfig().images_per_shard,
        incremental=False,
        output_path=str(inp.parent / "no-output"),
        partition=str(inp.parent / "no-output"),
        identity={"model_name": "bench-score", "model_version": "1", "mode": "both"},
    )
    return time.perf_counter() - t, listing, len(shards)


def _in_process(bundle, inp: pathlib.Path, threads: int, sample: int) -> float:
    """Images per second of decoding ``sample`` files of the folder and scoring them batch by batch here."""
    from pipelines.config import DataConfig
    from pipelines.data.images import decode

    cfg = DataConfig(**DATA)
    files = sorted(inp.rglob("*.png"))[:sample]
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t = time.perf_counter()
        for i in range(0, len(files), 1024):
            bundle.infer(np.stack([decode(str(f), cfg) for f in files[i : i + 1024]]))
        return len(files) / (time.perf_counter() - t)
    finally:
        torch.set_num_threads(old)


def run(quick: bool = False, out_dir: pathlib.Path | None = None, images: int | None = None) -> list[dict]:
    """Measure and return bench rows (see the module docstring); ``images`` overrides the folder's size."""
    import ray

    images = images or (2_000 if quick else 100_000)
    with ray_workspace("aepipe-bench-images-") as root:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        folder = write_folder(root / "in", images)
        uri, bundle = register(root, MODEL, DATA, np.zeros((16, 1, SIZE, SIZE), np.float32))
        tenth, folders = root / "in-tenth", sorted(folder.iterdir())
        tenth.mkdir()
        for sub in folders[: max(1, len(folders) // 10)]:
            shutil.copytree(sub, tenth / sub.name)
        small = sum(1 for _ in tenth.rglob("*.png"))
        plan_s, listing_s, shards = _planning(folder)
        _score(uri, tenth, root / "out-warm-up", cpus)  # first-call costs (imports, caches) stay out of the tenth
        _, _, mem_small = _score(uri, tenth, root / "out-tenth", cpus)
        result, seconds, mem_full = _score(uri, folder, root / "out", cpus)
        noop, noop_s, _ = _score(uri, folder, root / "out", cpus, incremental=True)
        assert result.rows == images and noop.noop
        manifest_mb = (root / "out" / "_SUCCESS").stat().st_size / 2**20
        ref = _in_process(bundle, folder, cpus, sample=min(images, 5_000))
        rate = images / seconds
        what = f"{images} 8x8 PNGs in {shards} shards, {cpus} actors x 0.5 CPU"
        return [
            {
                "bench": BENCH,
                "metric": "planning_s",
                "value": plan_s,
                "reference": listing_s,
                "ratio": plan_s / max(listing_s, 1e-9),
                "note": f"list and cut {images} images into {shards} shards vs the bare recursive listing",
            },
            {
                "bench": BENCH,
                "metric": "rows_per_s",
                "value": rate,
                "reference": ref,
                "ratio": rate / ref,
                "note": f"whole run_scoring call, {what}, vs decode + bundle.infer in-process with {cpus} threads",
            },
            {
                "bench": BENCH,
                "metric": "steady_rows_per_s",
                "value": result.steady_rows_per_s,
                "reference": ref,
                "ratio": result.steady_rows_per_s / ref,
                "note": f"run_scoring after each pass's first scored batch, {what}, vs the same reference",
            },
            {
                "bench": BENCH,
                "metric": "driver_peak_mb",
                "value": mem_full,
                "reference": mem_small,
                "ratio": mem_full / max(mem_small, 1e-9),
                "note": f"driver peak RSS above baseline, {images} images vs {small} (a tenth, one folder at least)",
            },
            {
                "bench": BENCH,
                "metric": "noop_s",
                "value": noop_s,
                "reference": plan_s,
                "ratio": noop_s / max(plan_s, 1e-9),
                "note": f"incremental re-run finding nothing new (manifest {manifest_mb:.1f} MB) vs the planning",
            },
        ]


if __name__ == "__main__":
    sizes = [int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--images=")]
    for row in run(quick="--quick" in sys.argv[1:], images=sizes[0] if sizes else None):
        print(row)
