"""aecore: autoencoder families behind one interface (pure PyTorch)."""

from aecore.base import Autoencoder, UpdatePhase
from aecore.config import ModelConfig
from aecore.phases import Objective, PhaseObjective, Step, make_optimizers, plain_step, run_update_phases
from aecore.registry import UnknownModelError, describe_models, known_models, model_class, register
from aecore.serialization import build_model, load_model, save_model

__all__ = [
    "Autoencoder",
    "ModelConfig",
    "Objective",
    "PhaseObjective",
    "Step",
    "UnknownModelError",
    "UpdatePhase",
    "build_model",
    "describe_models",
    "known_models",
    "load_model",
    "make_optimizers",
    "model_class",
    "plain_step",
    "register",
    "run_update_phases",
    "save_model",
]
