"""MLflow pyfunc wrapper, logged as code (models-from-code), so loading never unpickles an object.

``mlflow.pyfunc.load_model("models:/NAME@ALIAS").predict(df)`` takes a DataFrame with an ``x`` column
(one array per row, the raw un-normalized sample) and returns ``score``, ``is_anomaly`` and ``embedding``.

Loading imports MLflow's client, pandas and :mod:`pipelines.bundle` (numpy, torch, ``aecore``) only: the model
ships those modules as its code paths, so it loads where aepipe is not installed, without Ray.
"""

from __future__ import annotations

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

from pipelines.bundle import ModelBundle, predict_frame


class AepipePyfunc(PythonModel):
    """Loads the bundle artifact once; ``predict`` scores and embeds rows."""

    def load_context(self, context) -> None:
        """Read the bundle (safetensors weights and JSON files) from the model's artifacts."""
        self.bundle = ModelBundle.load(context.artifacts["bundle"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Score and embed each row's ``x`` (see :func:`pipelines.bundle.predict_frame`)."""
        return predict_frame(self.bundle, model_input)


set_model(AepipePyfunc())
