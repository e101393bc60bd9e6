"""The search's leaderboard: one row per trial at its best epoch, best first, written as CSV, JSON and a chart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipelines.tune.space import assignment

#: Figures of a trial's best epoch shown in the leaderboard (those a trial reported).
FIGURES = ("val_mse", "val_auroc", "val_ap", "val_loss", "train_loss")


def describe(config: dict[str, Any]) -> str:
    """A trial's values on one line: ``dense hidden=[64, 32] latent_dim=8 lr=0.001``."""
    values = assignment(config)
    family = values.pop("model.name", "")
    settings = " ".join(f"{key.split('.', 1)[1]}={value}" for key, value in values.items())
    return f"{family} {settings}".strip()


def _row(result: Any, metric: str, mode: str) -> dict[str, Any]:
    """One trial's row: its values and the figures of its best epoch by ``metric``."""
    history = result.metrics_dataframe
    row: dict[str, Any] = {
        "trial": (result.metrics or {}).get("trial_id") or Path(result.path).name,
        "run_id": (result.metrics or {}).get("run_id"),
        "family": assignment(result.config).get("model.name", ""),
        "values": describe(result.config),
        "status": "failed" if result.error is not None else "finished",
        "epochs": 0,
        "best_epoch": None,
    }
    if history is None or history.empty or metric not in history:
        return {**row, **dict.fromkeys(FIGURES)}
    scored = history.dropna(subset=[metric])
    best = scored.loc[scored[metric].idxmin() if mode == "min" else scored[metric].idxmax()]
    row.update(epochs=int(history["epoch"].max()), best_epoch=int(best["epoch"]))
    row.update({k: float(best[k]) if k in best and best[k] == best[k] else None for k in FIGURES})
    return row


def rows(results: Any, metric: str, mode: str) -> list[dict[str, Any]]:
    """The leaderboard of a Ray Tune ``ResultGrid``: best ``metric`` first, trials without it last."""
    table = [_row(result, metric, mode) for result in results]
    sign = 1.0 if mode == "min" else -1.0
    table.sort(key=lambda r: (r[metric] is None, sign * (r[metric] or 0.0)))
    for rank, row in enumerate(table, start=1):
        row["rank"] = rank
    return table


def write(folder: Path, table: list[dict[str, Any]], metric: str) -> None:
    """``leaderboard.csv``, ``leaderboard.json`` and ``leaderboard.png`` (the metric per trial) into ``folder``."""
    import pandas as pd

    frame = pd.DataFrame(table)
    frame.to_csv(folder / "leaderboard.csv", index=False)
    (folder / "leaderboard.json").write_text(json.dumps(table, indent=1))
    shown = [r for r in table if r[metric] is not None]
    if shown:
        figure = _chart([f"{r['rank']}. {r['values']}" for r in shown], [r[metric] for r in shown], metric)
        figure.savefig(folder / "leaderboard.png", dpi=100, bbox_inches="tight")


def _chart(names: list[str], values: list[float], metric: str) -> Any:
    """Horizontal bars: ``metric`` per trial, the best on top."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 0.6 + 0.3 * len(names)), dpi=90)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.barh(range(len(names)), values, color="tab:blue")
    ax.set_yticks(range(len(names)), [n if len(n) <= 60 else n[:57] + "..." for n in names], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title(f"aepipe tune: {metric} of each trial at its best epoch", fontsize=9)
    return figure
