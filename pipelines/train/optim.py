"""Optimization controls of the train loop: mixed precision, per-epoch learning-rate schedule, early stopping.

Each has ``state_dict`` / ``load_state_dict`` so a resumed run continues exactly where its checkpoint left off.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import torch

from pipelines.config import TrainConfig

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class Precision:
    """Autocast context and gradient scaler for ``fp32`` | ``bf16`` | ``fp16`` (fp16 only on CUDA)."""

    def __init__(self, mode: str, device: torch.device):
        if mode == "fp16" and device.type != "cuda":
            raise ValueError(
                f"train.precision=fp16 needs a CUDA device (this worker runs on {device.type}); use bf16 or fp32"
            )
        self.mode, self.device_type, self.dtype = mode, device.type, _DTYPES[mode]
        self.scaler = torch.amp.GradScaler(device.type, enabled=mode == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, grad_clip: float | None) -> None:
        """Backward ``loss`` (scaled for fp16), optionally clip the optimizer's gradient norm, step, update."""
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if grad_clip is not None:
            self.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()


class Patience:
    """Counts epochs since val_loss last improved by more than ``min_delta``; early stopping uses it as is."""

    def __init__(self, patience: int | None, min_delta: float):
        self.patience, self.min_delta = patience, min_delta
        self.best, self.bad_epochs = math.inf, 0

    def update(self, val_loss: float) -> bool:
        """Record one epoch's validation loss; True once ``patience`` epochs passed without improvement."""
        if val_loss < self.best - self.min_delta:
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
        return self.patience is not None and self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.bad_epochs = state["best"], state["bad_epochs"]


class LRSchedule:
    """Learning rate of epoch ``e`` (1-based) = lr x warm-up(e) x shape(e) x plateau decays so far."""

    def __init__(self, cfg: TrainConfig, optimizers: dict[str, torch.optim.Optimizer]):
        self.cfg, self.optimizers = cfg, optimizers
        self.plateau_scale = 1.0
        self.plateau = Patience(cfg.lr_plateau_patience + 1, cfg.early_stopping_min_delta)

    def factor(self, epoch: int) -> float:
        cfg = self.cfg
        warm = min(1.0, epoch / cfg.warmup_epochs) if cfg.warmup_epochs else 1.0
        after = max(0, epoch - 1 - cfg.warmup_epochs)  # epochs since warm-up ended
        if cfg.lr_schedule == "cosine":
            span = max(1, cfg.epochs - cfg.warmup_epochs)  # the last epoch stays above lr x lr_min_factor
            shape = cfg.lr_min_factor + (1 - cfg.lr_min_factor) * 0.5 * (1 + math.cos(math.pi * min(after / span, 1.0)))
        elif cfg.lr_schedule == "step":
            shape = cfg.lr_gamma ** (after // cfg.lr_step_epochs)
        else:
            shape = 1.0
        return warm * shape * self.plateau_scale

    def start_epoch(self, epoch: int) -> float:
        """Set every optimizer's learning rate for ``epoch``; returns it."""
        lr = self.cfg.lr * self.factor(epoch)
        for optimizer in self.optimizers.values():
            for group in optimizer.param_groups:
                group["lr"] = lr
        return lr

    def end_epoch(self, val_loss: float) -> None:
        """plateau: decay after more than ``lr_plateau_patience`` epochs without improvement."""
        if self.cfg.lr_schedule == "plateau" and self.plateau.update(val_loss):
            self.plateau_scale *= self.cfg.lr_gamma
            self.plateau.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"plateau_scale": self.plateau_scale, "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.plateau_scale = state["plateau_scale"]
        self.plateau.load_state_dict(state["plateau"])
