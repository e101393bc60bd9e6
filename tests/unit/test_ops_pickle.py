"""Models are never unpickled: a booby-trapped pickle where a model's weights belong is refused, unrun."""

from __future__ import annotations

import os
import pickle
import shlex
from pathlib import Path

import pytest
import torch

from aecore import build_model, load_model
from pipelines.bundle import MODEL_DIR, ModelBundle, Normalizer, bundle_files


class _Trap:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


@pytest.fixture()
def trapped_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A real saved bundle whose ``model/model.safetensors`` was swapped for the trap; returns (bundle, marker)."""
    marker = tmp_path / "PWNED"
    model = build_model({"name": "dense", "input_shape": [8], "hidden": [4], "latent_dim": 2})
    bundle = ModelBundle(model, Normalizer("none"), {"threshold": 1.0}, {}).save(tmp_path / "bundle")
    weights = bundle / MODEL_DIR / "model.safetensors"
    weights.write_bytes(pickle.dumps(_Trap(marker)))
    return bundle, marker


def test_the_trap_is_live(trapped_bundle):
    """Control: unpickling the file really runs the payload, so the refusals below mean something."""
    bundle, marker = trapped_bundle
    pickle.loads((bundle / MODEL_DIR / "model.safetensors").read_bytes())
    assert marker.exists()


def test_load_model_refuses_a_pickle(trapped_bundle):
    bundle, marker = trapped_bundle
    with pytest.raises(ValueError, match=r"model\.safetensors: not a valid safetensors weights file"):
        load_model(bundle / MODEL_DIR)
    assert not marker.exists()


def test_scoring_bundle_load_refuses_a_pickle(trapped_bundle):
    """The path every Scorer actor and the MLflow pyfunc take: ModelBundle.load."""
    bundle, marker = trapped_bundle
    with pytest.raises(ValueError, match=str(bundle / MODEL_DIR / "model.safetensors")):
        ModelBundle.load(bundle)
    assert not marker.exists()


def test_bundle_shipped_as_files_loads_the_same_and_refuses_the_trap(trapped_bundle, tmp_path):
    """What scoring actors receive through Ray's object store: the bundle's files, loaded by the same path."""
    bundle, marker = trapped_bundle
    model = build_model({"name": "dense", "input_shape": [8], "hidden": [4], "latent_dim": 2, "seed": 3})
    good = ModelBundle(model, Normalizer("minmax", 0.0, 2.0), {"threshold": 0.5}, {}).save(tmp_path / "good")
    x = torch.rand(5, 8).numpy()
    shipped, saved = ModelBundle.from_files(bundle_files(good)).infer(x), ModelBundle.load(good).infer(x)
    assert all((shipped[k] == saved[k]).all() for k in ("score", "is_anomaly", "embedding"))
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        ModelBundle.from_files(bundle_files(bundle))
    assert not marker.exists()
    for name in ("../escape.json", "/tmp/escape.json", "model/../../escape.json"):
        with pytest.raises(ValueError, match="points outside the bundle"):
            ModelBundle.from_files({**bundle_files(good), name: b"{}"})


def test_resuming_from_a_checkpoint_refuses_a_pickled_training_state(tmp_path):
    """The one ``torch.load`` in aepipe, a checkpoint's ``train_state.pt``: a trapped state file is refused,
    unrun, and a genuine one (tensors, RNG states, counters) restores."""
    from pipelines.train import checkpoint as ckpt

    model = build_model({"name": "dense", "input_shape": [8], "hidden": [4], "latent_dim": 2, "seed": 1})
    good, bad, marker = tmp_path / "good", tmp_path / "bad", tmp_path / "PWNED"
    state = {"epoch": 3, "rng": ckpt.rng_state(), "opt": {"step": torch.tensor(7.0)}}
    for directory in (good, bad):
        ckpt.save(directory, ModelBundle(model, Normalizer("none"), {"threshold": 1.0}, {}), state)
    (bad / ckpt.STATE_FILE).write_bytes(pickle.dumps(_Trap(marker)))
    other = build_model({"name": "dense", "input_shape": [8], "hidden": [4], "latent_dim": 2, "seed": 2})
    with pytest.raises(pickle.UnpicklingError):
        ckpt.restore(bad, other)
    assert not marker.exists()
    restored = ckpt.restore(good, other)
    assert restored["epoch"] == 3 and torch.equal(restored["opt"]["step"], torch.tensor(7.0))
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters(), strict=True))
