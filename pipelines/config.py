"""Typed job configuration: pydantic models loaded from YAML with ``key=value`` overrides.

Nothing here reads the environment or touches disk at import time; ``jobs/`` fills in defaults that come
from the environment (``AEPIPE_HOME``, ``MLFLOW_TRACKING_URI``, ``RAY_ADDRESS``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipelines.config_base import ConfigError, ResumePolicy


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class DataConfig(_Section):
    """Where the corpus is and how it becomes model inputs."""

    source: Literal["parquet", "images", "timeseries"] = "parquet"
    """Kind of corpus: parquet (Parquet shards, one sample per row), images (a folder of PNG/JPEG files) or
    timeseries (Parquet rows of series id, timestamp and values, cut into sliding windows)."""

    path: str = "data/mnist"
    """Corpus location: a directory, a local path relative to AEPIPE_HOME, or a file:// / s3:// / gs:// URI."""

    id_column: str | None = "id"
    """parquet: column holding each row's unique id; null together with derive_ids=true for "FILE:ROW" ids."""

    derive_ids: bool = False
    """parquet: derive ids from the file (relative to path) and row number, e.g. "part-00001.parquet:123"."""

    vector_column: str = "x"
    """parquet: column holding a fixed-length list of numbers per row (used unless feature_columns is set)."""

    feature_columns: list[str] | None = None
    """parquet: numeric columns that together form the sample vector (tabular layout), in this order."""

    label_column: str | None = "label"
    """Optional label column (for series: per row, a window's label is its maximum); ignored when absent."""

    image_size: tuple[int, int] = (28, 28)
    """images: every image is resized to (height, width)."""

    color_mode: Literal["grayscale", "rgb"] = "grayscale"
    """images: grayscale gives samples (1, H, W), rgb gives (3, H, W); pixel values stay in 0..255."""

    label_from_folder: bool = True
    """images: an image's label is the name of its parent folder (none for files directly under path)."""

    series_column: str = "series_id"
    """timeseries: column naming the series a row belongs to (a series may span several files)."""

    timestamp_column: str = "timestamp"
    """timeseries: column ordering rows within a series (timestamp, date or number)."""

    value_columns: list[str] = Field(default_factory=lambda: ["value"], min_length=1)
    """timeseries: numeric columns that are a window's features F."""

    window: int = Field(default=32, ge=1)
    """timeseries: window length T; a sample has shape (T, F)."""

    stride: int = Field(default=16, ge=1)
    """timeseries: steps between the starts of consecutive windows of a series."""

    on_bad_records: Literal["fail", "skip"] = "fail"
    """fail: the first bad file or row stops the job with an error naming it; skip: bad files and rows are
    left out and each is written, with its reason, to a quarantine Parquet under STORAGE_PATH/quarantine/JOB
    (training) or the partition's _quarantine/ (scoring)."""

    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    """Fraction of ids (by a stable hash of the id) held out for validation: above 0 (the validation split sets
    the anomaly threshold and the drift baseline) and below 1."""

    normalize: Literal["none", "minmax", "standard"] = "minmax"
    """Normalization fitted once on the training split and applied identically at scoring."""

    normalize_scope: Literal["global", "feature", "channel"] = "global"
    """One statistic for all values (global), one per position of a sample (feature), or one per channel
    (channel: C of an image (C, H, W), F of a window (T, F), each feature of a vector)."""

    latent_variance: float | None = Field(default=None, gt=0.0, lt=1.0)
    """Size the code from the data: set model.latent_dim to the fewest principal components that hold this share
    of the normalized training split's variance (e.g. 0.9, as PCA keeping 90%), measured before training (one more
    pass over the training split; a sample of at most 4096 values); null = model.latent_dim as written."""

    cache: Literal["auto", "memory", "stream"] = "auto"
    """Training input per epoch. memory: the normalized train and validation splits are computed once into
    Ray's object store, each worker streams its shard from there in the first epoch and keeps it in its own
    memory for the later ones; stream: every epoch re-reads and re-normalizes the files (for corpora larger
    than the object store); auto: memory when the splits take at most ``cache_max_fraction`` of the cluster's
    object store, else stream."""

    cache_max_fraction: float = Field(default=0.5, gt=0.0, le=1.0)
    """With cache=auto: the largest share of the cluster's object store the cached splits may take."""

    @model_validator(mode="after")
    def _ids_are_defined(self) -> DataConfig:
        if self.source == "parquet" and self.id_column is None and not self.derive_ids:
            raise ValueError("id_column is null: set data.derive_ids=true to derive ids from file and row")
        return self


class FaultInjection(_Section):
    """Kill one worker process once (a marker file under the run's storage makes it one-shot)."""

    epoch: int = Field(ge=1)
    """Epoch in which the worker dies."""

    rank: int = Field(default=0, ge=0)
    """World rank of the worker that dies."""

    after_batches: int = Field(default=0, ge=0)
    """Training batches the worker finishes in that epoch before it dies."""


class TrainConfig(_Section):
    """How the distributed training runs."""

    epochs: int = Field(default=5, ge=1)
    """Number of passes over the training split."""

    batch_size: int = Field(default=128, ge=1)
    """Per-worker batch size."""

    lr: float = Field(default=1e-3, gt=0)
    """Learning rate of every optimizer."""

    num_workers: int = Field(default=2, ge=1)
    """Ray Train workers (DDP ranks)."""

    cpus_per_worker: float = Field(default=0.5, gt=0)
    """Logical CPUs each worker reserves. Below 1 on small machines so Ray Data can still schedule reads."""

    threads_per_worker: int | None = Field(default=None, ge=1)
    """Torch intra-op threads in each worker; null = ``cpus_per_worker`` rounded (at least 1). On a small
    machine one worker with all its cores' threads can beat several single-thread DDP workers."""

    principal_start: bool = True
    """A family that can (``linear``) starts at the training split's principal subspace: PCA's reconstruction from
    the first step, whatever the epochs (one more pass over the training split, samples of at most 4096 values);
    false = random initial weights like every other family."""

    shuffle: bool = True
    """Reshuffle the training rows every epoch, seeded by (seed, rank, epoch): a fresh permutation of the rows
    each worker keeps (data.cache memory) or a local shuffle buffer over the stream (data.cache stream)."""

    shuffle_buffer: int = Field(default=4096, ge=1)
    """Rows in the local shuffle buffer of a streamed epoch (only data.cache=stream and the first epoch)."""

    use_gpu: bool | None = None
    """One GPU per worker; null = use GPUs when the cluster has them."""

    keep_freed_memory: bool = True
    """Start the training workers with glibc's malloc told to keep the memory a step frees (``GLIBC_TUNABLES``:
    blocks up to 32 MB come from the heap, which is never trimmed) so that the next step reuses it instead of
    page-faulting fresh pages in; a worker's resident memory then stays at its peak. Off = the cluster's malloc
    settings (e.g. when the image preloads jemalloc or tcmalloc). No effect outside glibc."""

    ddp_bucket_cap_mb: float | None = Field(default=None, gt=0)
    """DDP gradient bucket size (MB). Smaller buckets start the all-reduce while backward still runs; null =
    1 MB on CPU (gloo: overlapping the exchange with backward is what makes it cheap), PyTorch's 25 MB on GPU."""

    seed: int = 0
    """Seed of the initial weights (identical on every rank) and, plus the rank, of each rank's data order and
    its dropout, corruption, masking and sampling noise (python, numpy and torch RNGs)."""

    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Training arithmetic: fp32, bf16 autocast (GPU or CPU), or fp16 autocast with loss scaling (GPU only)."""

    grad_clip: float | None = Field(default=None, gt=0)
    """Clip each optimizer's gradient norm to this value; null = no clipping."""

    lr_schedule: Literal["constant", "cosine", "step", "plateau"] = "constant"
    """Per-epoch learning-rate schedule after warm-up: constant, cosine decay to lr x lr_min_factor,
    step (x lr_gamma every lr_step_epochs) or plateau (x lr_gamma after lr_plateau_patience epochs
    without validation improvement)."""

    warmup_epochs: int = Field(default=0, ge=0)
    """Epochs of linear learning-rate warm-up (epoch e of W runs at lr x e / W)."""

    lr_min_factor: float = Field(default=0.0, ge=0.0, le=1.0)
    """cosine: the last epoch's learning rate as a fraction of lr."""

    lr_step_epochs: int = Field(default=10, ge=1)
    """step: epochs between learning-rate decays."""

    lr_gamma: float = Field(default=0.5, gt=0.0, le=1.0)
    """step / plateau: factor applied at each decay."""

    lr_plateau_patience: int = Field(default=2, ge=0)
    """plateau: epochs without improvement of val_loss (by early_stopping_min_delta) before a decay."""

    early_stopping_patience: int | None = Field(default=None, ge=1)
    """Stop after this many epochs without val_loss improving by more than early_stopping_min_delta;
    null = train every epoch. Every rank sees the same all-reduced val_loss, so all stop together."""

    early_stopping_min_delta: float = Field(default=0.0, ge=0.0)
    """Smallest decrease of val_loss that counts as an improvement."""

    checkpoint_every: int | None = Field(default=None, ge=1)
    """Write a checkpoint every this many epochs (epoch % N == 0); null = only by ``checkpoint_every_s``. An epoch
    is checkpointed when any rule holds: this one, ``checkpoint_every_s``, the last epoch, an early stop. An epoch
    that sets a new best val_loss between checkpoints is kept in memory (weights and state) and written just before
    the next checkpoint, so the best epoch is always among the kept checkpoints (what gets registered); a failure
    resumes from the latest written checkpoint and re-runs the epochs after it. 1 = every epoch."""

    checkpoint_every_s: float | None = Field(default=60.0, gt=0)
    """Also checkpoint the first epoch ending at least this many seconds (rank 0's clock) after the previous
    checkpoint (or the start of training): epochs longer than this are all checkpointed, short ones cost a
    checkpoint a minute at most. null = only by ``checkpoint_every``, the last epoch and an early stop."""

    metrics_flush_s: float = Field(default=10.0, ge=0)
    """Rank 0 buffers each epoch's metrics and sends them to MLflow in one batch at every checkpoint and when this
    many seconds passed since the last send (0 = every epoch). An epoch's metrics are logged once, also when a
    restart re-runs it."""

    keep_checkpoints: int = Field(default=2, ge=1)
    """Checkpoints kept per run: the best by val_loss, and always the latest (the resume point)."""

    max_failures: int = Field(default=1, ge=-1)
    """Worker-group restarts from the latest checkpoint before the job fails; -1 = unlimited."""

    threshold_quantile: float = Field(default=0.99, gt=0.0, lt=1.0)
    """Anomaly threshold = this quantile of validation scores (mean + threshold_k_std x std is stored too)."""

    threshold_k_std: float = Field(default=2.0, gt=0.0)
    """k of the alternative mean + k x std threshold stored with the calibration."""

    plot_rows: int = Field(default=512, ge=16)
    """About this many validation rows, sampled uniformly over the split, are drawn in the end-of-run plots."""

    fault_injection: FaultInjection | None = None
    """Testing only: SIGKILL one worker once, mid-epoch, to exercise failure recovery."""

    resume: ResumePolicy = ResumePolicy.auto
    """auto: continue the job's unfinished run (killed driver, failed workers) from its latest checkpoint only when
    its config and corpus fingerprints equal this job's, else start a new run and say why; never: always start a
    new run; require: continue a matching unfinished run or stop with an error."""


class TrackingConfig(_Section):
    """MLflow tracking and registry."""

    tracking_uri: str | None = None
    """MLflow tracking URI; null = SQLite database under AEPIPE_HOME."""

    registry_uri: str | None = None
    """MLflow registry URI; null = same as tracking_uri."""

    experiment: str = "aepipe"
    """MLflow experiment name."""

    registered_model: str = "aepipe-model"
    """Registered model name that each successful run adds a version to."""

    auto_promote: bool = False
    """Move the champion alias to a new version when it passes the gate. The first version of a model
    always becomes champion."""

    promote_margin: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Gate: on the new run's held-out validation rows, the new version's reconstruction MSE in the raw feature
    space must be <= the champion's on the same rows x (1 - margin). Without auto_promote only the challenger
    alias moves and promotion is explicit (``aepipe models promote``)."""

    gate_rows: int = Field(default=10_000, ge=1)
    """Gate: at most this many of the new run's validation rows are scored by both models."""


class ScoreConfig(_Section):
    """How the corpus is scored and when its score distribution counts as drifted."""

    batch_size: int = Field(default=1024, ge=1)
    """Rows per forward pass inside a scorer actor."""

    concurrency: int = Field(default=1, ge=1)
    """Scorer actors in the pool (each loads the model once)."""

    num_cpus: float = Field(default=1.0, gt=0)
    """CPUs each scorer actor reserves."""

    num_gpus: float | None = Field(default=None, ge=0)
    """GPUs each scorer actor reserves; null = 1 when the cluster has a GPU, else 0."""

    shards_per_pass: int = Field(default=64, ge=1)
    """Input shards streamed through one actor pool before the pool is rebuilt. Each shard is committed
    (file + marker) as soon as its last row is written, so a killed job loses at most the shards in flight."""

    images_per_shard: int = Field(default=1000, ge=1)
    """An image folder is scored in shards of at most this many files of one folder; each shard is committed on
    its own, and a killed run resumes from the shards it finished."""

    on_bad_records: Literal["fail", "skip"] | None = None
    """fail: a bad file or row (or an id repeated across shards) stops scoring with an error naming it, before
    anything is published; skip: each bad file or row goes to _quarantine/ of the partition with its reason
    and input row count, the rest is scored; null: the value the model was trained with (data.on_bad_records)."""

    experiment: str = "aepipe-scoring"
    """MLflow experiment of scoring runs."""

    psi_limit: float = Field(default=0.2, gt=0)
    """Drift alarm when the population stability index of scores vs the validation baseline exceeds this
    (0.1 = small, 0.25 = large shift by the usual rule of thumb)."""

    ks_alpha: float = Field(default=1e-3, gt=0, lt=1)
    """Drift alarm when the Kolmogorov-Smirnov p-value of scores vs the baseline is below this (and the KS
    statistic is above ks_min)."""

    ks_min: float = Field(default=0.1, ge=0, lt=1)
    """Smallest KS statistic (largest gap between the two score CDFs) that can raise the alarm: with thousands
    of rows a p-value alone flags shifts too small to matter."""

    drift_bins: int = Field(default=10, ge=2, le=100)
    """Equal-mass baseline bins for the PSI (must divide 100)."""

    gallery_size: int = Field(default=16, ge=0, le=64)
    """Highest-scored rows the scoring run draws next to their reconstructions (plots/top_anomalies.png); 0: no
    gallery."""

    @field_validator("drift_bins")
    @classmethod
    def _bins_divide_100(cls, value: int) -> int:
        if 100 % value:
            raise ValueError(
                f"must divide 100 (the baseline holds percentiles): 2, 4, 5, 10, 20, 25 or 50, not {value}"
            )
        return value


class TuneMetric(StrEnum):
    """What ``aepipe tune`` selects trials by (see pipelines/tune/objective.py)."""

    val_mse = "val_mse"
    """Mean squared reconstruction error on the validation rows, in the normalized space every trial shares (lower
    is better); comparable across families, unlike each family's own val_loss."""
    val_auroc = "val_auroc"
    """AUROC of the anomaly score on the labelled validation rows (higher is better); needs a label column."""
    val_ap = "val_ap"
    """Average precision of the anomaly score on the labelled validation rows (higher is better)."""

    @property
    def mode(self) -> Literal["min", "max"]:
        return "min" if self is TuneMetric.val_mse else "max"


class TuneConfig(_Section):
    """``aepipe tune``: a search over model families and their settings (Ray Tune, ASHA early stopping)."""

    trials: int = Field(default=12, ge=1)
    """Trials to run (each a training run of its own, a nested MLflow run under the search's run)."""

    time_budget_s: float | None = Field(default=None, gt=0)
    """Stop starting and running trials after this many seconds of search; null = no time limit."""

    metric: TuneMetric = TuneMetric.val_mse
    """val_mse: validation reconstruction MSE (the default, any corpus); val_auroc or val_ap: of the anomaly score
    on the labelled validation rows (needs data.label_column with two values, see tune.anomaly_labels)."""

    anomaly_labels: list[Any] | None = None
    """Label values that mark an anomalous row (e.g. [1] or ["anomaly"]); null = with exactly two label values,
    true/1/anomaly/outlier..., else the rarer one. Labelled AUROC and AP are logged for every trial when known."""

    space: list[dict[str, Any]] | None = None
    """The search space: a list of branches (e.g. one per family), each a mapping of dotted ``model.*`` /
    ``train.*`` keys to a value (fixed), a list (one of its items), or {uniform|loguniform: [lo, hi]} /
    {randint: [lo, hi]} (inclusive); a trial picks a branch, then a value per key. null = the default space of
    the data kind (vectors, images or windows; see pipelines/tune/space.py)."""

    grace_epochs: int | None = Field(default=None, ge=1)
    """ASHA: every trial runs at least this many epochs before it may be stopped for doing worse than the others
    (at most train.epochs epochs each); null = a quarter of train.epochs, at least 2 (a labelled objective of the
    first epochs says little)."""

    cpus_per_trial: float = Field(default=1.0, gt=0)
    """CPUs each trial reserves; it trains in its own process with that many torch threads (at least 1)."""

    max_concurrent: int | None = Field(default=None, ge=1)
    """Trials running at once; null = as many as the cluster's CPUs allow at cpus_per_trial."""

    seed: int = 0
    """Seeds the sampling of the search space (each trial trains with train.seed)."""


class JobConfig(_Section):
    """A whole training job: data, model, trainer, tracking and scoring settings."""

    name: str = "mnist-dense"
    """Job name: the MLflow run name, and the job whose unfinished runs train.resume may continue."""

    home: str = ".aepipe"
    """Local state directory (AEPIPE_HOME): SQLite MLflow store, artifacts, data, checkpoints, outputs."""

    storage_path: str | None = None
    """Where checkpoints go (local path or s3:// / gs:// URI); null = HOME/checkpoints."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: dict[str, Any] = Field(default_factory=lambda: {"name": "dense"})
    """Model family settings; ``name`` picks the family (``aepipe zoo`` lists them)."""

    train: TrainConfig = Field(default_factory=TrainConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)

    @field_validator("model")
    @classmethod
    def _model_config_is_valid(cls, value: dict[str, Any]) -> dict[str, Any]:
        from aecore import model_class  # torch: only when a config is validated, never for ``aepipe --help``

        family = model_class(value.get("name", "dense"))
        return family.config_cls.model_validate(value).model_dump(mode="json")

    @model_validator(mode="after")
    def _loss_suits_normalization(self) -> JobConfig:
        if self.model.get("reconstruction") == "bce" and self.data.normalize == "standard":
            raise ValueError(
                "model.reconstruction=bce needs inputs in [0, 1], but data.normalize=standard centres them on 0 "
                "with unit variance; use data.normalize=minmax (or none for inputs already in [0, 1]) or "
                "model.reconstruction=mse"
            )
        return self

    # -- derived locations ----------------------------------------------------------------------
    def resolve(self, path: str) -> str:
        """A path relative to ``home`` unless it is absolute or a URI."""
        if "://" in path or Path(path).is_absolute():
            return path
        return str(Path(self.home).resolve() / path)

    @property
    def data_path(self) -> str:
        return self.resolve(self.data.path)

    @property
    def checkpoint_path(self) -> str:
        return self.storage_path or self.resolve("checkpoints")

    @property
    def tracking_uri(self) -> str:
        return self.tracking.tracking_uri or f"sqlite:///{Path(self.home).resolve() / 'mlflow.db'}"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line saying what is wrong with a YAML text (PyYAML's own message spans several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        return ", ".join(part for part in (exc.context, exc.problem) if part) or "malformed"
    return " ".join(str(exc).split())


def _key_at(lines: list[str], row: int) -> str | None:
    """The dotted key of block-style YAML whose entry holds line ``row`` (0-based), found from the indentation
    of that line and the lines above it; None when no key is found."""
    parts: list[str] = []
    indent: int | None = None
    for text in reversed(lines[: row + 1]):
        match = re.match(r"(\s*)(?:- )?([^\s#:'\"][^:#]*?|'[^']*'|\"[^\"]*\")\s*:(?:\s|$)", text)
        if match is None:
            continue
        level = len(match.group(1))
        if indent is None or level < indent:
            parts.append(match.group(2).strip("'\""))
            indent = level
            if level == 0:
                break
    return ".".join(reversed(parts)) or None


def _yaml_file_error(path: Path, text: str, exc: yaml.YAMLError) -> ConfigError:
    """A ConfigError naming the file, the line and (when it can be told) the key of a YAML syntax error."""
    mark = None
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.context_mark or exc.problem_mark  # where the broken value starts, else where parsing failed
    if mark is None:
        return ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}")
    key = _key_at(text.splitlines(), mark.line)
    where = f"line {mark.line + 1}" + (f", key {key}" if key else "")
    return ConfigError(f"{path}: not valid YAML ({where}): {_yaml_problem(exc)}")


def _parse_value(item: str, key: str, text: str) -> Any:
    if text == "":
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: the value of {key} is not valid YAML: {_yaml_problem(exc)}") from None


def set_key(raw: dict[str, Any], key: str, value: Any, origin: str | None = None) -> None:
    """Set the dotted ``key`` (``a.b.c``) of a nested dict to ``value``, in place, adding sections on the way;
    ``origin`` (default ``key``) names it in the error when a part of the key is not a section."""
    node = raw
    *parents, leaf = key.split(".")
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {origin or key!r}: {part!r} is not a section")
        node = child
    node[leaf] = value


def apply_overrides(
    raw: dict[str, Any], overrides: list[str], *, sections: Collection[str] | None = None
) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a nested dict, in place.

    Raises:
        ConfigError: an override is not ``key=value``, crosses a value that is not a section, or (when
            ``sections`` is given) sets a key outside those top-level sections.
    """
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key=value (e.g. train.epochs=3)")
        if sections is not None and key.split(".")[0] not in sections:
            allowed = ", ".join(f"{section}.*" for section in sections)
            raise ConfigError(f"override {item!r}: only {allowed} keys can be set here")
        set_key(raw, key, _parse_value(item, key, value), item)
    return raw


def _explain(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if not err["loc"] and err["type"] == "value_error":  # a check across sections names its keys itself
            lines.append(str(err["ctx"]["error"]))
        elif err["type"] == "extra_forbidden":
            lines.append(f"{where}: no such config key")
        else:
            lines.append(f"{where}: {err['msg']}")
    return "; ".join(lines)


def build_config(raw: dict[str, Any], source: str = "config") -> JobConfig:
    """Validate a raw dict into a :class:`JobConfig`, turning pydantic errors into one clear message."""
    try:
        return JobConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_explain(exc)}") from None


def load_config(
    path: str | Path | None,
    overrides: list[str] | None = None,
    *,
    values: Mapping[str, Any] | None = None,
    sections: Collection[str] | None = None,
    **defaults: Any,
) -> JobConfig:
    """Load a YAML job config (or defaults when ``path`` is None); each layer below wins over the one before.

    Args:
        path: the YAML job config; None = every default.
        overrides: ``key=value`` strings (values parsed as YAML), e.g. ``train.epochs=3``.
        values: dotted keys set to already-typed values after the overrides (e.g. a command's explicit flags).
        sections: the top-level sections the overrides may set; None = any.
        defaults: top-level keys filled in when the file lacks them (None values are skipped).

    Raises:
        ConfigError: a missing file, a file or an override value that is not valid YAML (named by line and key), a
            malformed override, or a key or value the config refuses (named).
    """
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a YAML text file (not UTF-8)") from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise _yaml_file_error(p, text, exc) from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of config sections")
        raw = loaded
    for key, value in defaults.items():
        if value is not None:
            raw.setdefault(key, value)
    apply_overrides(raw, overrides or [], sections=sections)
    for key, value in (values or {}).items():
        set_key(raw, key, value)
    return build_config(raw, str(path or "config"))
