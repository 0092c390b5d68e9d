"""The training pipeline's configuration: a YAML file read into pydantic models."""

from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DEFAULT_CONFIG_PATH = Path(__file__).parent / "configs" / "default.yaml"


class TrainingConfigError(ValueError):
    """A training config file that cannot be read or does not validate."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IsolationForestConfig(_Section):
    """Phase 1: the unsupervised detector run over every row the training may see."""

    n_estimators: int = Field(default=100, gt=0)
    contamination: float = Field(default=0.05, gt=0.0, le=0.5)
    max_samples: int = Field(default=256, gt=1)
    random_state: int = 42


class ConfidenceConfig(_Section):
    """Bucket edges on the normalised Isolation Forest score (-1 most anomalous, 1 most normal)."""

    high_anomaly_below: float = Field(default=-0.6, ge=-1.0)
    medium_anomaly_below: float = -0.3
    high_normal_above: float = Field(default=0.3, le=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if not self.high_anomaly_below < self.medium_anomaly_below < 0.0 < self.high_normal_above:
            raise ValueError(
                "edges must satisfy high_anomaly_below < medium_anomaly_below < 0 "
                "< high_normal_above"
            )
        return self


class LabelsConfig(_Section):
    """How many of the store's labels a run starts from."""

    known_fraction: float = Field(
        default=0.012,
        ge=0.0,
        le=1.0,
        description="share of labelled training rows used as original labels (seed: 1.2 %); "
        "the rest stay hidden, for evaluation and the simulated reviewer; 1.0 uses them all",
    )
    pseudo_normal_rows: int = Field(
        default=3000,
        ge=0,
        description="the most Isolation Forest high-confidence normals used as normal labels",
    )
    pseudo_normal_weight: float = Field(
        default=0.3, gt=0.0, le=1.0, description="their training weight (a human label is 1)"
    )
    random_state: int = 42


class ReviewConfig(_Section):
    """Phase 2: how many rows the review queue asks a human about, and which first."""

    label_fraction: float = Field(
        default=0.02,
        gt=0.0,
        le=1.0,
        description="the most labels the queue asks for, as a share of the trainable rows",
    )
    critical_instances: list[str] = Field(
        default_factory=list,
        description="glob patterns on instance_id naming critical services (e.g. 'db-*')",
    )
    simulate_reviewer: bool = Field(
        default=False,
        description="answer the queue from the store's hidden labels (demos only: a real fleet "
        "has none, and a run must not learn from labels nobody reviewed); "
        "reviews imported with `vigil review import` are used either way",
    )
    random_state: int = 42


class SplitConfig(_Section):
    """Phase 4: train / validation / test split and optional cross-validation."""

    method: Literal["time", "stratified"] = Field(
        default="time", description="time: the test rows are the latest, so nothing leaks"
    )
    validation_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    test_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    cv_folds: int = Field(
        default=4,
        ge=2,
        description="time blocks of the human-labelled rows: each block is scored by models "
        "fitted without it, and those out-of-fold scores choose the threshold",
    )
    random_state: int = 42


class XGBoostConfig(_Section):
    """The champion candidate: hist trees, classes balanced by weight, a fixed number of rounds."""

    max_depth: int = Field(default=4, gt=0)
    learning_rate: float = Field(default=0.05, gt=0.0)
    n_estimators: int = Field(default=100, gt=0)
    subsample: float = Field(default=0.8, gt=0.0, le=1.0)
    colsample_bytree: float = Field(default=0.5, gt=0.0, le=1.0)
    min_child_weight: float = Field(default=1.0, ge=0.0)
    gamma: float = Field(default=0.0, ge=0.0)
    reg_alpha: float = Field(default=0.0, ge=0.0)
    reg_lambda: float = Field(default=1.0, ge=0.0)
    max_bin: int = Field(default=64, ge=2)
    threads: int = Field(default=1, ge=0, description="0 = every core")
    random_state: int = 42


class CatBoostConfig(_Section):
    """The challenger candidate: the same rows, weights and class balance as the champion."""

    iterations: int = Field(default=100, gt=0)
    depth: int = Field(default=6, gt=0, le=16)
    learning_rate: float = Field(default=0.1, gt=0.0)
    threads: int = Field(default=1, ge=0, description="0 = every core")
    random_seed: int = 42


class GatesConfig(_Section):
    """Quality a model must exceed on the held-out test set to receive any alias."""

    min_f1: float = Field(default=0.85, ge=0.0, le=1.0)
    min_precision: float = Field(default=0.90, ge=0.0, le=1.0)


class RegistrationConfig(_Section):
    """Where runs are logged and how a new model is compared with the current champion."""

    experiment: str = Field(default="vigil-anomaly-training", min_length=1)
    compare_metric: Literal["f1", "pr_auc", "roc_auc"] = "f1"


class DaskConfig(_Section):
    """The `dask` engine: Isolation Forest scoring and XGBoost training on a Dask cluster.

    The scheduler is Dask's own setting (``DASK_SCHEDULER_ADDRESS``); without one a run starts
    a LocalCluster of ``local_workers``.
    """

    local_workers: int = Field(default=2, gt=0)
    chunk_rows: int = Field(default=100_000, gt=0)
    catboost_sample_rows: int = Field(
        default=200_000, gt=0, description="CatBoost trains on a stratified sample this large"
    )


class TrainingConfig(_Section):
    """Everything `vigil train` needs besides the data and the MLflow server."""

    engine: Literal["local", "dask"] = "local"
    threshold: Literal["reviewed"] | Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        default="reviewed",
        description="anomaly probability at which a row is flagged; 'reviewed' chooses it "
        "per model: the best F1 of the human labels (weighted back to the trainable rows) "
        "over out-of-fold scores; the chosen value travels with the registered model",
    )
    reference_bins: int = Field(
        default=10, ge=2, description="quantile bins per feature for the drift reference"
    )
    isolation_forest: IsolationForestConfig = Field(default_factory=IsolationForestConfig)
    confidence: ConfidenceConfig = Field(default_factory=ConfidenceConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    xgboost: XGBoostConfig = Field(default_factory=XGBoostConfig)
    catboost: CatBoostConfig = Field(default_factory=CatBoostConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    registration: RegistrationConfig = Field(default_factory=RegistrationConfig)
    dask: DaskConfig = Field(default_factory=DaskConfig)


def load_training_config(path: Path = DEFAULT_CONFIG_PATH) -> TrainingConfig:
    """Read a YAML training config; keys left out keep their defaults.

    Args:
        path: the YAML file (default: ``training/configs/default.yaml``).

    Returns:
        The validated config.

    Raises:
        TrainingConfigError: the file is missing, is not YAML, or a key is unknown or invalid;
            the message names the file and the dotted key.
    """
    try:
        document: Any = yaml.safe_load(path.read_text())
    except OSError as error:
        raise TrainingConfigError(f"{path}: cannot read training config: {error}") from error
    except yaml.YAMLError as error:
        raise TrainingConfigError(f"{path}: not valid YAML: {error}") from error
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise TrainingConfigError(f"{path}: expected a mapping at the top level")
    try:
        return TrainingConfig.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or '(top level)'}: {item['msg']}"
            for item in error.errors()
        )
        raise TrainingConfigError(f"{path}: {problems}") from error
