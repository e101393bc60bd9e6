"""Training checkpoints: a model bundle plus ``train_state.pt`` (optimizers, schedule, scaler, counters, RNGs).

The state file holds only tensors and plain Python values, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch
from safetensors.torch import load_model as load_weights
from torch import nn

from pipelines import storage
from pipelines.bundle import MODEL_DIR, ModelBundle

STATE_FILE = "train_state.pt"


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's (CPU and CUDA) global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """This process's python / numpy / torch (and CUDA) generator states as plain values and tensors."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, np.asarray(keys).tolist(), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(directory: str | Path, bundle: ModelBundle, state: dict[str, Any]) -> None:
    """Write the bundle (what scoring needs) and the resumable training state into ``directory``."""
    bundle.save(directory)
    torch.save(state, Path(directory) / STATE_FILE)


def restore(directory: str | Path, model: nn.Module) -> dict[str, Any]:
    """Load a checkpoint's weights into ``model`` (in place); returns the training state dict."""
    d = Path(directory)
    device = next(model.parameters()).device
    load_weights(model, str(d / MODEL_DIR / "model.safetensors"), device=str(device))
    return torch.load(d / STATE_FILE, weights_only=True, map_location="cpu")


def prune_unregistered(run_dir: str, kept: list[str]) -> list[str]:
    """Delete ``checkpoint_*`` directories under ``run_dir`` (local path or URI) that are not in ``kept``
    (filesystem paths): a worker that died after persisting a checkpoint but before the controller
    registered it leaves one behind. Returns the deleted paths."""
    keep = {k.rstrip("/") for k in kept}
    orphans = [
        storage.uri_of(run_dir, f)
        for f in storage.list_dir(run_dir)
        if f.type == pafs.FileType.Directory
        and f.base_name.startswith("checkpoint_")
        and f.path.rstrip("/") not in keep
    ]
    for path in orphans:
        storage.delete_dir(path)
    return orphans
