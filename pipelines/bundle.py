"""A model bundle: everything scoring needs, in one directory of plain files (no pickles).

Layout::

    model/config.json, model/model.safetensors   the aecore model
    normalizer.json                              statistics fitted on the training split
    calibration.json                             anomaly threshold and the validation score baseline
    data.json                                    how the corpus was read (source kind, columns)

This module is shipped inside every registered pyfunc (MLflow ``code_paths``, see
:data:`pipelines.tracking.mlflow_client.PYFUNC_CODE_PATHS`): it imports numpy, pandas, torch and ``aecore`` only,
never Ray, MLflow or another ``pipelines`` module, so the model loads where aepipe is not installed.

torch and ``aecore`` are imported where a model is built, saved or run, not with the module: the data path
(:mod:`pipelines.data`, which every Ray Data task, split coordinator and the Ray Train controller import to run or
unpickle its functions) needs :class:`Normalizer` alone, and importing torch costs each of those processes about
1.5 s of CPU.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch

    from aecore import Autoencoder

MODEL_DIR, NORMALIZER_FILE, CALIBRATION_FILE, DATA_FILE = "model", "normalizer.json", "calibration.json", "data.json"


@dataclass
class Normalizer:
    """``x -> (x - shift) / scale`` with statistics of shape [] (global) or ``input_shape`` (per feature, or
    per channel with each channel's value repeated). Fitted by :mod:`pipelines.data.normalize`."""

    kind: str = "none"
    shift: list = None  # type: ignore[assignment]
    scale: list = None  # type: ignore[assignment]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalize a batch ``[B, *input_shape]`` (float32 out)."""
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "none":
            return x
        return (x - np.asarray(self.shift, np.float32)) / np.asarray(self.scale, np.float32)

    def invert_flat(self, x: np.ndarray) -> np.ndarray:
        """Undo :meth:`apply` on flat rows ``[B, D]`` (D = the number of values per sample, float32 out)."""
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "none":
            return x
        shift, scale = (np.asarray(v, np.float32).reshape(-1) for v in (self.shift, self.scale))
        return x * scale + shift

    def save(self, path: str | Path) -> None:
        """Write the statistics as JSON."""
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> Normalizer:
        """Read statistics written by :meth:`save`."""
        return cls(**json.loads(Path(path).read_text()))


def calibrate(val_scores: np.ndarray, quantile: float = 0.99, k_std: float = 2.0) -> dict[str, Any]:
    """Threshold and baseline from validation scores ``[N]``.

    ``threshold`` is the ``quantile`` of validation scores; ``threshold_mean_std`` is mean + k * std (the
    rule in the source documents). ``baseline_quantiles`` (101 points) is the reference for drift checks.
    """
    s = np.asarray(val_scores, dtype=np.float64)
    if s.size == 0:
        raise ValueError("cannot calibrate a threshold on an empty validation split")
    return {
        "threshold": float(np.quantile(s, quantile)),
        "threshold_quantile": quantile,
        "threshold_mean_std": float(s.mean() + k_std * s.std()),
        "k_std": k_std,
        "val_count": int(s.size),
        "val_mean": float(s.mean()),
        "val_std": float(s.std()),
        "baseline_quantiles": np.quantile(s, np.linspace(0, 1, 101)).tolist(),
    }


def bundle_files(directory: str | Path) -> dict[str, bytes]:
    """Every file of a bundle directory as ``{relative path: bytes}`` (safetensors and JSON, a few MB)."""
    root = Path(directory)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def accepts_shape(sample_shape: tuple[int, ...], input_shape: tuple[int, ...]) -> bool:
    """Whether samples of ``sample_shape`` fit a model of ``input_shape``: the same shape, or flat with as many
    values (784 -> (1, 28, 28)). Training and scoring both ask this, so whatever trains also scores."""
    expected = tuple(input_shape)
    return tuple(sample_shape) in (expected, (int(np.prod(expected)),))


@dataclass
class ModelBundle:
    """A trained model with its normalizer and calibration; ``infer`` maps raw inputs to scores."""

    model: Autoencoder
    normalizer: Normalizer
    calibration: dict[str, Any] = field(default_factory=dict)
    data_config: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.model.config.input_shape)

    @property
    def threshold(self) -> float:
        return float(self.calibration.get("threshold", float("inf")))

    def save(self, directory: str | Path) -> Path:
        from aecore import save_model

        out = Path(directory)
        save_model(self.model, out / MODEL_DIR)
        self.normalizer.save(out / NORMALIZER_FILE)
        (out / CALIBRATION_FILE).write_text(json.dumps(self.calibration, indent=2))
        (out / DATA_FILE).write_text(json.dumps(self.data_config, indent=2))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> ModelBundle:
        from aecore import load_model

        src = Path(directory)
        return cls(
            load_model(src / MODEL_DIR),
            Normalizer.load(src / NORMALIZER_FILE),
            _read_json(src / CALIBRATION_FILE),
            _read_json(src / DATA_FILE),
        )

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> ModelBundle:
        """Load a bundle from :func:`bundle_files` output (e.g. shipped to actors through Ray's object store);
        the same checked loading path as :meth:`load`."""
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp).resolve()
            for name, data in files.items():
                target = (root / name).resolve()  # "../x" and absolute names resolve outside root
                if root not in target.parents:
                    raise ValueError(f"bundle file name {name!r} points outside the bundle")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            return cls.load(tmp)

    def check_shape(self, sample_shape: tuple[int, ...], where: str) -> None:
        """Raise a clear error when the data's samples are not ones the model takes (see :func:`accepts_shape`)."""
        if not accepts_shape(sample_shape, self.input_shape):
            raise ValueError(
                f"{where}: samples have shape {tuple(sample_shape)} but the model expects {self.input_shape}"
                f" (or flat vectors of {int(np.prod(self.input_shape))} values)"
            )

    def normalize(self, x_raw: np.ndarray) -> np.ndarray:
        """Raw ``[B, ...]`` with ``prod(input_shape)`` values per row -> normalized ``[B, *input_shape]`` float32."""
        x = np.asarray(x_raw, dtype=np.float32)
        stats_shape = np.shape(self.normalizer.shift) if self.normalizer.kind != "none" else ()
        if stats_shape:  # per-feature statistics keep the shape the data was read with
            x = x.reshape(len(x), *stats_shape)
        return self.normalizer.apply(x).reshape(len(x), *self.input_shape)

    def infer(self, x_raw: np.ndarray, device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
        """Raw inputs ``[B, *input_shape]`` (or flat ``[B, prod(input_shape)]``) -> ``score`` [B],
        ``is_anomaly`` [B], ``embedding`` [B, k]."""
        import torch

        with torch.no_grad():
            x = torch.from_numpy(self.normalize(x_raw)).to(device)
            scores = self.model.score(x).float().cpu().numpy()
            embedding = self.model.embed(x).float().cpu().numpy()
        return {"score": scores, "is_anomaly": scores > self.threshold, "embedding": embedding}


def raw_reconstruction_error(bundle: ModelBundle, x_raw: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Per-row mean squared error ``[B]`` between raw rows ``x_raw`` ``[B, ...]`` and the bundle's reconstruction
    of them mapped back to the raw space (its own normalizer inverted), averaged over the row's values.

    Unlike :meth:`ModelBundle.infer`'s ``score`` (each family's own error, in its own normalized space), this
    figure means the same for every family and normalizer, so two models can be compared on the same rows.
    """
    import torch

    raw = np.asarray(x_raw, dtype=np.float32).reshape(len(x_raw), -1)
    model = bundle.model.eval()
    errors = []
    for start in range(0, len(raw), batch_size):
        chunk = raw[start : start + batch_size]
        with torch.no_grad():
            recon = model(torch.from_numpy(bundle.normalize(chunk))).float().cpu().numpy().reshape(len(chunk), -1)
        errors.append(np.square(bundle.normalizer.invert_flat(recon) - chunk).mean(axis=1))
    return np.concatenate(errors) if errors else np.zeros(0, np.float32)


def predict_frame(bundle: ModelBundle, df: pd.DataFrame) -> pd.DataFrame:
    """Score a DataFrame whose ``x`` column holds one raw sample per row (the pyfunc contract)."""
    if "x" not in df.columns:
        raise ValueError(f"input needs an 'x' column with one sample per row; got columns {list(df.columns)}")
    x = np.stack([np.asarray(v, dtype=np.float32) for v in df["x"]]).reshape(len(df), *bundle.input_shape)
    out = bundle.infer(x)
    return pd.DataFrame(
        {
            "score": out["score"].astype(np.float64),
            "is_anomaly": out["is_anomaly"],
            "embedding": list(out["embedding"].astype(np.float64)),
        }
    )
