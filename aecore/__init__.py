"""aecore: autoencoder families behind one interface (pure PyTorch)."""

from aecore.base import Autoencoder, UpdatePhase
from aecore.config import ModelConfig
from aecore.registry import UnknownModelError, describe_models, known_models, model_class, register
from aecore.serialization import build_model, load_model, save_model

__all__ = [
    "Autoencoder",
    "ModelConfig",
    "UnknownModelError",
    "UpdatePhase",
    "build_model",
    "describe_models",
    "known_models",
    "load_model",
    "model_class",
    "register",
    "save_model",
]
