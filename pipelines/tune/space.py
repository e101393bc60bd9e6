"""The search space of ``aepipe tune``: branches of dotted ``model.*`` / ``train.*`` keys, parsed and checked before
the search starts, handed to Ray Tune, and turned back into one trial's job config.

A branch maps each key to a value (fixed), a list (one of its items: a list-valued setting such as
``model.hidden`` is written as a list of lists) or ``{uniform|loguniform: [lo, hi]}`` / ``{randint: [lo, hi]}``
(inclusive). The trials take the branches in turn (:func:`trial_points`), then a value per key of that branch: a branch
of listed values only has its settings enumerated, so that no two trials train the same one. A branch naming another
family than the job's (``model.name``) starts from that family's defaults with the job's ``model.input_shape`` and
``model.latent_dim``; a branch of the job's family starts from the job's model settings.

``data.*`` is not searched: the corpus is validated, split, normalized and cached once for every trial.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import dataclass
from typing import Any

from pipelines.config import ConfigError, JobConfig, build_config

SEARCHED_SECTIONS = ("model", "train")
RANGES = ("uniform", "loguniform", "randint")
BRANCH_KEY = "branch"
#: A branch of listed values only is one key of Ray Tune's space: its setting, every key's value as a JSON object.
SETTING_KEY = "setting"
#: A branch of listed values with more settings than this is sampled like one with ranges.
MAX_ENUMERATED = 10_000

#: The default space per data kind: small enough for 20 trials, wide enough to hold what the baselines do well (PCA's
#: exact linear subspace, wide layers, dropout and batch norm). ``linear`` starts at PCA's subspace: one setting.
#: No branch searches ``model.latent_dim``: every trial keeps the job's code size. Selected by validation
#: reconstruction error (``val_mse``, the objective when there are no labels), a larger code always wins, and it
#: reconstructs the anomalies too (bench/tune_peers.py, windows: the search picked a 16-d linear code, AUROC 0.9955,
#: where the job's 4-d one scores 0.9987). So the search chooses the family, its widths, regularization and learning
#: rate at the code size the user set; a user who wants the code searched adds ``model.latent_dim`` to a branch.
DEFAULT_SPACES: dict[str, list[dict[str, Any]]] = {
    "vectors": [
        {
            "model.name": "dense",
            "model.hidden": [[64, 32], [256, 128], [512, 256, 128]],
            "model.dropout": [0.0, 0.1, 0.2],
            "model.norm": ["none", "batch"],
            "train.lr": {"loguniform": [3e-4, 1e-2]},
        },
        {"model.name": "linear"},  # PCA from its start (train.principal_start): one trial at the job's learning rate
    ],
    "images": [
        {  # batch norm always: without it a conv trial can collapse to a blank image (mnist_images_conv.yaml)
            "model.name": "conv",
            "model.channels": [[16, 32], [32, 64]],
            "model.norm": "batch",
            "model.activation": ["relu", "gelu"],
            "train.lr": {"loguniform": [3e-4, 1e-2]},
        },
        {
            "model.name": "dense",
            "model.hidden": [[256, 128], [512, 256]],
            "model.dropout": [0.0, 0.1],
            "train.lr": {"loguniform": [3e-4, 1e-2]},
        },
        {"model.name": "linear"},  # PCA from its start (train.principal_start): one trial at the job's learning rate
    ],
    # No recurrent branch by default: on a 20-trial budget its LSTM trials were the slowest per epoch and, at ASHA's
    # grace epochs, 40x worse in val_mse than linear or dense ones (bench/tune_peers.py), so each was a trial lost.
    # A window's flattened values suit linear and dense models (PCA on the windows is the peer to beat); add a
    # ``{model.name: recurrent, ...}`` branch to tune.space to search it.
    "windows": [
        {"model.name": "linear"},  # PCA from its start (train.principal_start): one trial at the job's learning rate
        {
            "model.name": "dense",
            "model.hidden": [[64], [128, 64]],
            "model.dropout": [0.0, 0.1],
            "train.lr": {"loguniform": [3e-4, 1e-2]},
        },
    ],
}

DATA_KINDS = {"parquet": "vectors", "images": "images", "timeseries": "windows"}


@dataclass(frozen=True)
class Domain:
    """Where one key's value comes from: ``fixed`` (one value), ``choice`` (one of ``values``) or a range
    (``uniform``, ``loguniform``, ``randint``: ``values`` = (lo, hi), inclusive)."""

    kind: str
    values: tuple[Any, ...]

    def candidates(self) -> list[Any]:
        """Values every one of which must make a valid config: each choice, a range's two ends."""
        return list(self.values)

    def to_ray(self) -> Any:
        """The Ray Tune search domain (a plain value when fixed)."""
        from ray import tune

        lo, hi = (*self.values, None)[:2]
        if self.kind == "fixed":
            return self.values[0]
        if self.kind == "choice":
            return tune.choice(list(self.values))
        if self.kind == "uniform":
            return tune.uniform(lo, hi)
        if self.kind == "loguniform":
            return tune.loguniform(lo, hi)
        return tune.randint(lo, hi + 1)


Branch = dict[str, Domain]


def data_kind(job: JobConfig) -> str:
    """``vectors``, ``images`` or ``windows``: which default space suits the job's corpus. Parquet vectors read as
    images (a ``(C, H, W)`` ``model.input_shape``, e.g. MNIST's 784 values as ``[1, 28, 28]``) get the images
    space, whose conv branch needs that shape."""
    if job.data.source == "parquet" and len(job.model["input_shape"]) == 3:
        return "images"
    return DATA_KINDS[job.data.source]


def raw_space(job: JobConfig) -> list[dict[str, Any]]:
    """The space as written: ``tune.space``, else the data kind's default."""
    return job.tune.space if job.tune.space is not None else DEFAULT_SPACES[data_kind(job)]


def _domain(where: str, value: Any) -> Domain:
    if isinstance(value, list):
        if not value:
            raise ConfigError(f"{where}: an empty list of choices")
        return Domain("choice", tuple(value))
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in RANGES:
            raise ConfigError(f"{where}: a range is one of {{uniform|loguniform|randint: [lo, hi]}}, not {value}")
        kind, bounds = next(iter(value.items()))
        numeric = isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int | float) for b in bounds)
        if not numeric or bounds[0] > bounds[1]:
            raise ConfigError(f"{where}: {kind} needs [lo, hi] with lo <= hi, not {bounds}")
        if kind == "loguniform" and bounds[0] <= 0:
            raise ConfigError(f"{where}: loguniform needs lo > 0, not {bounds[0]}")
        if kind == "randint" and not all(isinstance(b, int) for b in bounds):
            raise ConfigError(f"{where}: randint needs whole numbers, not {bounds}")
        return Domain(kind, tuple(bounds))
    return Domain("fixed", (value,))


def parse_space(job: JobConfig, source: str = "config") -> list[Branch]:
    """The job's search space, every branch checked: each key is a ``model.*`` or ``train.*`` setting and every
    choice (a range's ends) makes a valid job config with the branch's other keys at their first value.

    Raises:
        ConfigError: naming ``source``, the branch and the key.
    """
    raw = raw_space(job)
    if not raw:
        raise ConfigError(f"{source}: tune.space: no branches (leave it out for the default space)")
    branches: list[Branch] = []
    for index, entry in enumerate(raw):
        where = f"{source}: tune.space[{index}]"
        if not isinstance(entry, dict) or not entry:
            raise ConfigError(f"{where}: a branch is a mapping of model.* / train.* keys to values, not {entry!r}")
        branch: Branch = {}
        for key, value in entry.items():
            section = str(key).split(".")[0]
            if section not in SEARCHED_SECTIONS or "." not in str(key):
                hint = " (the corpus is prepared once for every trial)" if section == "data" else ""
                raise ConfigError(f"{where}: {key}: only model.* and train.* keys can be searched{hint}")
            branch[str(key)] = _domain(f"{where}.{key}", value)
        if "model.name" in branch and branch["model.name"].kind not in ("fixed", "choice"):
            raise ConfigError(f"{where}.model.name: a family name, or a list of them")
        branch.setdefault("model.name", Domain("fixed", (job.model["name"],)))  # every trial names its family
        _check_branch(job, branch, where)
        branches.append(branch)
    return branches


def families(branches: list[Branch]) -> list[str]:
    """Every family the branches train."""
    return sorted({name for branch in branches for name in branch["model.name"].values})


def _check_branch(job: JobConfig, branch: Branch, where: str) -> None:
    """Build the trial config of every candidate value of every key (the other keys at their first value)."""
    first = {key: domain.values[0] for key, domain in branch.items()}
    for key, domain in branch.items():
        for value in domain.candidates():
            try:
                trial_job(job, {**first, key: value}, "trial")
            except ConfigError as exc:
                raise ConfigError(f"{where}.{key}={value!r}: {str(exc).removeprefix('trial: ')}") from None


def trial_job(job: JobConfig, assignment: dict[str, Any], source: str = "trial") -> JobConfig:
    """The job with one trial's values (dotted keys) set.

    Raises:
        ConfigError: the values do not make a valid config (e.g. a setting the family does not have).
    """
    from aecore import UnknownModelError

    raw = job.model_dump(mode="json")
    family = assignment.get("model.name", job.model["name"])
    if family != job.model["name"]:  # another family: its defaults, with the job's input shape and code size
        raw["model"] = {"name": family, **{k: job.model[k] for k in ("input_shape", "latent_dim") if k in job.model}}
    for key, value in assignment.items():
        section, _, rest = key.partition(".")
        node = raw[section]
        *parents, leaf = rest.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    try:
        return build_config(raw, source)
    except UnknownModelError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def settings(branch: Branch) -> list[dict[str, Any]] | None:
    """Every distinct setting of a branch whose keys all take listed (or fixed) values, in a fixed order; None when a
    key takes a range or there are more than :data:`MAX_ENUMERATED`."""
    if any(domain.kind in RANGES for domain in branch.values()):
        return None
    if math.prod(len(domain.values) for domain in branch.values()) > MAX_ENUMERATED:
        return None
    keys = list(branch)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(branch[k].values for k in keys))]


def param_space(branches: list[Branch]) -> dict[str, Any]:
    """Ray Tune's ``param_space``: which branch, and each branch's keys as ``"INDEX:KEY"`` (a trial reads only its
    branch's), or its setting as ``"INDEX:setting"`` when it has listed values only (:func:`settings`)."""
    from ray import tune

    space: dict[str, Any] = {BRANCH_KEY: tune.choice(list(range(len(branches))))}
    for index, branch in enumerate(branches):
        listed = settings(branch)
        if listed is None:
            space.update({f"{index}:{key}": domain.to_ray() for key, domain in branch.items()})
        else:
            space[f"{index}:{SETTING_KEY}"] = tune.choice([json.dumps(setting) for setting in listed])
    return space


def trial_points(branches: list[Branch], trials: int, seed: int) -> list[dict[str, Any]]:
    """What each trial starts from (Ray Tune's ``points_to_evaluate``, one per trial): the branches in turn, each
    taking an equal share of ``trials`` but no more than its distinct settings, which it takes in a seeded order
    (never one twice); what a branch cannot take goes to the others. Fewer points than ``trials`` when the space holds
    fewer settings. A branch with ranges has its values drawn by Ray Tune."""
    rng = random.Random(seed)
    pools: list[list[str] | None] = []
    for branch in branches:
        listed = settings(branch)
        pools.append(None if listed is None else rng.sample([json.dumps(s) for s in listed], len(listed)))
    points: list[dict[str, Any]] = []
    for turn in itertools.count():
        open_pools = [i for i, pool in enumerate(pools) if pool is None or turn < len(pool)]
        if not open_pools or len(points) >= trials:
            break
        for index in open_pools[: trials - len(points)]:
            pool = pools[index]
            points.append({BRANCH_KEY: index} | ({} if pool is None else {f"{index}:{SETTING_KEY}": pool[turn]}))
    return points


def assignment(config: dict[str, Any]) -> dict[str, Any]:
    """A sampled ``config`` (see :func:`param_space`) as the dotted keys of its branch and their values."""
    prefix = f"{config[BRANCH_KEY]}:"
    values = {key[len(prefix) :]: value for key, value in config.items() if key.startswith(prefix)}
    encoded = values.pop(SETTING_KEY, None)
    values = json.loads(encoded) if encoded is not None else values
    return {key: _plain(value) for key, value in values.items()}


def _plain(value: Any) -> Any:
    """Numbers as Python numbers (Ray hands numpy scalars), floats rounded to 4 significant digits for reading."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return float(f"{value:.4g}")
    return value
