"""Save and load models as ``config.json`` + ``model.safetensors``; loading never unpickles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model as _load_weights
from safetensors.torch import save_model as _save_weights

from aecore.base import Autoencoder
from aecore.config import ModelConfig
from aecore.registry import model_class

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1


def build_model(config: ModelConfig | dict[str, Any], *, seed: int | None = None) -> Autoencoder:
    """Build a fresh model from a config (or a plain dict with a ``name`` key).

    The initial weights are a function of ``seed`` (default: the config's ``seed``) alone: they are drawn from
    the CPU generator inside :func:`torch.random.fork_rng`, so the process-wide generator is left as it was
    (a trainer's per-rank seeding keeps its streams, and building or loading a model never resets them).
    """
    raw = config.model_dump() if isinstance(config, ModelConfig) else dict(config)
    cls = model_class(raw.get("name", "dense"))
    validated = cls.config_cls.model_validate(raw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(validated.seed if seed is None else seed)
        return cls(validated)


def save_model(model: Autoencoder, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``directory``; returns it."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"format_version": FORMAT_VERSION, "config": model.config.model_dump(mode="json")}
    (out / CONFIG_FILE).write_text(json.dumps(payload, indent=2))
    _save_weights(model, str(out / WEIGHTS_FILE))
    return out


def load_model(directory: str | Path) -> Autoencoder:
    """Rebuild a model saved by :func:`save_model` (in eval mode, on CPU)."""
    src = Path(directory)
    cfg_path, weights = src / CONFIG_FILE, src / WEIGHTS_FILE
    if not cfg_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{src} is not a saved aepipe model: needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    payload = json.loads(cfg_path.read_text())
    model = build_model(payload["config"])
    try:
        _load_weights(model, str(weights), strict=True, device="cpu")
    except Exception as exc:  # safetensors raises its own header errors for non-safetensors files
        raise ValueError(f"{weights}: not a valid safetensors weights file ({exc})") from exc
    return model.eval()
