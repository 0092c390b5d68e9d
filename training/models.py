"""Phases 4 and 5: split the rows, fit the XGBoost champion and CatBoost challenger candidates.

Both models are binary classifiers over the float32 model inputs (``contracts.detector``:
the features plus the unsupervised columns), trained on the same rows with the same weights
and the same class balance; their output is the anomaly probability.
"""

import time
from dataclasses import dataclass
from typing import Any, TypeAlias

import dask.array as da
import numpy as np
import xgboost as xgb
import xgboost.dask as dxgb
from catboost import CatBoostClassifier, Pool
from distributed import Client
from numpy.typing import NDArray
from sklearn.metrics import log_loss

from training.config import CatBoostConfig, SplitConfig, TrainingConfig, XGBoostConfig

XGBOOST = "xgboost"
CATBOOST = "catboost"

Model: TypeAlias = xgb.Booster | CatBoostClassifier


class SingleClassError(ValueError):
    """Training rows (or validation rows) whose labels are all one class."""


@dataclass(frozen=True)
class Split:
    """Row indices of the three parts; the test part is never seen by training."""

    train: NDArray[Any]
    validation: NDArray[Any]
    test: NDArray[Any]


@dataclass(frozen=True)
class FittedModel:
    """A trained candidate and what was measured while fitting it."""

    kind: str
    model: Model
    iterations: int
    train_loss: float
    validation_loss: float
    importance: dict[str, float]
    fit_seconds: float
    trained_rows: int

    @property
    def loss_gap(self) -> float:
        """Validation minus training log loss: large means overfitting."""
        return self.validation_loss - self.train_loss


def split_rows(timestamps: NDArray[Any], strata: NDArray[Any], config: SplitConfig) -> Split:
    """Split rows into train / validation / test.

    ``time`` puts the latest rows in test and the ones before them in validation, cutting at
    timestamps so that one minute never straddles two parts. ``stratified`` keeps each
    stratum's share in every part.

    Args:
        timestamps: one datetime64 per row.
        strata: one class per row (e.g. the true label, -1 where unknown).
        config: fractions, method, seed.

    Returns:
        Sorted row indices of each part.

    Raises:
        ValueError: a part would be empty (too few rows or distinct timestamps).
    """
    if config.method == "time":
        split = _split_in_time(timestamps, config)
    else:
        split = _split_stratified(strata, config)
    empty = [name for name in ("train", "validation", "test") if not len(getattr(split, name))]
    if empty:
        raise ValueError(
            f"cannot split {len(timestamps)} rows ({config.method}): {', '.join(empty)} "
            "part(s) would be empty; more rows or distinct timestamps are needed"
        )
    return split


def _split_in_time(timestamps: NDArray[Any], config: SplitConfig) -> Split:
    ordered = np.sort(timestamps)
    count = len(ordered)
    if count == 0:
        empty = np.empty(0, dtype=np.int64)
        return Split(empty, empty, empty)
    test_start = ordered[min(int(count * (1 - config.test_fraction)), count - 1)]
    validation_start = ordered[
        min(int(count * (1 - config.test_fraction - config.validation_fraction)), count - 1)
    ]
    test = timestamps >= test_start
    validation = (timestamps >= validation_start) & ~test
    return Split(
        np.flatnonzero(~test & ~validation), np.flatnonzero(validation), np.flatnonzero(test)
    )


def _split_stratified(strata: NDArray[Any], config: SplitConfig) -> Split:
    rng = np.random.default_rng(config.random_state)
    parts: dict[str, list[NDArray[Any]]] = {"train": [], "validation": [], "test": []}
    for stratum in np.unique(strata):
        members = rng.permutation(np.flatnonzero(strata == stratum))
        n_test = round(len(members) * config.test_fraction)
        n_validation = round(len(members) * config.validation_fraction)
        parts["test"].append(members[:n_test])
        parts["validation"].append(members[n_test : n_test + n_validation])
        parts["train"].append(members[n_test + n_validation :])
    joined = {
        name: np.sort(np.concatenate(chunks)) if chunks else np.empty(0, dtype=np.int64)
        for name, chunks in parts.items()
    }
    return Split(joined["train"], joined["validation"], joined["test"])


def scatter_rows(client: Client, array: NDArray[Any], chunk_rows: int) -> da.Array:
    """``array`` as a Dask array whose row blocks already sit on the workers.

    Blocks are at most ``chunk_rows`` rows and at least one per worker, so every worker holds
    part of the data (``da.from_array`` would instead pack the whole array into the graph).
    """
    workers = max(1, len(client.scheduler_info()["workers"]))
    block = max(1, min(chunk_rows, -(-len(array) // workers)))
    parts = [array[start : start + block] for start in range(0, len(array), block)]
    futures = client.scatter(parts)
    blocks: da.Array = da.concatenate(
        [
            da.from_delayed(future, shape=part.shape, dtype=array.dtype)
            for future, part in zip(futures, parts, strict=True)
        ]
    )
    return blocks


def require_both_classes(labels: NDArray[Any], part: str) -> None:
    """Raise SingleClassError unless ``labels`` hold both 0 and 1."""
    anomalies = int(labels.sum())
    if anomalies == 0 or anomalies == len(labels):
        kind = "normal" if anomalies == 0 else "anomalous"
        raise SingleClassError(
            f"the {part} labels are all {kind} ({len(labels)} rows); a classifier needs both "
            "classes: add labelled incidents, review more rows, or check the contamination"
        )


@dataclass(frozen=True)
class TrainingSet:
    """The rows a model learns from: inputs, 0/1 targets and one weight per row."""

    inputs: NDArray[Any]
    labels: NDArray[Any]
    weights: NDArray[Any]

    def subset(self, rows: NDArray[Any]) -> "TrainingSet":
        return TrainingSet(self.inputs[rows], self.labels[rows], self.weights[rows])

    def balance(self) -> float:
        """Weighted normals per weighted anomaly: the positive-class weight that balances them."""
        positives = float((self.weights * self.labels).sum())
        negatives = float((self.weights * (1 - self.labels)).sum())
        return negatives / max(positives, 1e-9)


def xgboost_params(config: XGBoostConfig) -> dict[str, object]:
    """The XGBoost parameters in native form (also used by the benchmark)."""
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "max_depth": config.max_depth,
        "learning_rate": config.learning_rate,
        "subsample": config.subsample,
        "colsample_bytree": config.colsample_bytree,
        "min_child_weight": config.min_child_weight,
        "gamma": config.gamma,
        "reg_alpha": config.reg_alpha,
        "reg_lambda": config.reg_lambda,
        "max_bin": config.max_bin,
        "nthread": config.threads,  # 0: every core
        "seed": config.random_state,
    }


def fit_xgboost(
    train: TrainingSet,
    feature_names: list[str],
    config: XGBoostConfig,
    client: Client | None = None,
    chunk_rows: int = 100_000,
) -> FittedModel:
    """Train the XGBoost candidate for ``n_estimators`` rounds, classes balanced by weight.

    Args:
        train: the labelled rows (human labels and weighted pseudo-normals).
        feature_names: input column names; they become the booster's feature names.
        config: model parameters.
        client: train with ``xgboost.dask`` on this Dask cluster; None trains in-process.
        chunk_rows: rows per Dask block.

    Returns:
        The booster with its training loss and gain importance (``validation_loss`` is NaN
        until the pipeline measures it out of fold).
    """
    require_both_classes(train.labels, "training")
    started = time.perf_counter()
    params = {**xgboost_params(config), "scale_pos_weight": train.balance()}
    if client is None:
        matrix = xgb.DMatrix(
            train.inputs, train.labels, weight=train.weights, feature_names=feature_names
        )
        booster = xgb.train(params, matrix, num_boost_round=config.n_estimators)
    else:
        dask_matrix = dxgb.DaskDMatrix(
            client,
            scatter_rows(client, train.inputs, chunk_rows),
            scatter_rows(client, train.labels, chunk_rows),
            weight=scatter_rows(client, train.weights, chunk_rows),
            feature_names=feature_names,
        )
        booster = dxgb.train(client, params, dask_matrix, num_boost_round=config.n_estimators)[
            "booster"
        ]
    fit_seconds = time.perf_counter() - started
    gains = booster.get_score(importance_type="gain")
    return FittedModel(
        kind=XGBOOST,
        model=booster,
        iterations=booster.num_boosted_rounds(),
        train_loss=_log_loss(train.labels, predict_proba(booster, train.inputs)),
        validation_loss=float("nan"),
        importance=_normalised({name: _gain(gains.get(name, 0.0)) for name in feature_names}),
        fit_seconds=fit_seconds,
        trained_rows=len(train.labels),
    )


def fit_catboost(
    train: TrainingSet, feature_names: list[str], config: CatBoostConfig
) -> FittedModel:
    """Train the CatBoost candidate on the same rows, weights and class balance as XGBoost.

    Args:
        train: the labelled rows.
        feature_names: input column names.
        config: model parameters.

    Returns:
        The classifier with its training loss and importance.
    """
    require_both_classes(train.labels, "training")
    started = time.perf_counter()
    model = CatBoostClassifier(
        iterations=config.iterations,
        depth=config.depth,
        learning_rate=config.learning_rate,
        loss_function="Logloss",
        class_weights=[1.0, train.balance()],
        random_seed=config.random_seed,
        thread_count=config.threads or -1,
        verbose=False,
        allow_writing_files=False,
    )
    model.fit(Pool(train.inputs, train.labels, weight=train.weights, feature_names=feature_names))
    fit_seconds = time.perf_counter() - started
    importance = model.get_feature_importance()
    return FittedModel(
        kind=CATBOOST,
        model=model,
        iterations=int(model.tree_count_),
        train_loss=_log_loss(train.labels, predict_proba(model, train.inputs)),
        validation_loss=float("nan"),
        importance=_normalised(dict(zip(feature_names, map(float, importance), strict=True))),
        fit_seconds=fit_seconds,
        trained_rows=len(train.labels),
    )


def fit_model(
    kind: str,
    training_set: TrainingSet,
    names: list[str],
    config: TrainingConfig,
    client: Client | None,
    notes: list[str],
) -> FittedModel:
    """Fit the model of ``kind`` on the training set; with a Dask client, CatBoost fits a
    stratified sample of at most ``dask.catboost_sample_rows`` rows (said in ``notes``)."""
    if kind == XGBOOST:
        return fit_xgboost(training_set, names, config.xgboost, client, config.dask.chunk_rows)
    if client is not None and len(training_set.labels) > config.dask.catboost_sample_rows:
        sample = stratified_sample(
            training_set.labels, config.dask.catboost_sample_rows, config.split.random_state
        )
        notes.append(
            f"CatBoost trained on a stratified sample of {len(sample):,} of "
            f"{len(training_set.labels):,} labelled training rows (dask engine); XGBoost used "
            "them all"
        )
        training_set = training_set.subset(sample)
    return fit_catboost(training_set, names, config.catboost)


def stratified_sample(labels: NDArray[Any], max_rows: int, seed: int) -> NDArray[Any]:
    """Sorted indices of at most ``max_rows`` rows keeping each class's share."""
    if len(labels) <= max_rows:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(
            members, size=max(1, round(max_rows * len(members) / len(labels))), replace=False
        )
        for value in np.unique(labels)
        if len(members := np.flatnonzero(labels == value))
    ]
    return np.sort(np.concatenate(picked))


def predict_proba(model: Model, features: NDArray[Any]) -> NDArray[Any]:
    """Anomaly probability of each row (float64), whichever kind of model."""
    if isinstance(model, xgb.Booster):
        return np.asarray(model.inplace_predict(features), dtype=np.float64)
    return np.asarray(model.predict_proba(features)[:, 1], dtype=np.float64)


def _log_loss(labels: NDArray[Any], probabilities: NDArray[Any]) -> float:
    return float(log_loss(labels, probabilities, labels=[0, 1]))


def _normalised(importance: dict[str, float]) -> dict[str, float]:
    total = sum(importance.values())
    return {name: value / total if total else 0.0 for name, value in importance.items()}


def _gain(value: float | list[float]) -> float:
    # get_score returns a list per feature only for vector-leaf models, which we never train.
    return float(value) if isinstance(value, float | int) else float(sum(value))
