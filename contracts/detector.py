"""Vigil's detector as fitted numbers: feature rows → model inputs → the score that is served.

Training fits a ``FittedDetector`` on the rows it may learn from and logs it with the models
(``contracts.serving.DETECTOR_ARTIFACT``); the scorer and ``vigil evaluate`` call the same
object, so a row gets the same inputs and the same score offline and online. Everything
fitted is an array in one ``.npz`` file: no pickled estimator.

1. **Robust z-scores** of every machine-state feature (calendar and log-count columns are not
   machine state): ``(x - median) / scale`` with ``scale = 1.4826 * MAD`` (the standard
   deviation where the MAD is 0, 1 where both are), clipped to ``±Z_CLIP``.
2. **Unsupervised columns**, all on the whole z-score vector (on SMD, ASD and NAB they beat the
   same detectors on the current metric values alone, on both halves of each dataset):
   ``detector_pca_error`` (squared reconstruction error by the principal components holding
   ``PCA_VARIANCE`` of the variance: the relation between features broke),
   ``detector_knn_distance`` (mean distance to the ``KNN_K`` nearest of at most
   ``KNN_REFERENCE_ROWS`` fitted rows: nothing like this row was seen) and
   ``detector_deviation_mean`` (mean |z|: a broad departure from the usual state).
3. **Model inputs**: the features followed by the unsupervised columns (what Triton serves).
4. **Unsupervised score** ``U``: the mean of each unsupervised column's empirical quantile
   among the fitted rows (one scale for detectors with different units; no label needed).
5. **Served score**: ``w * q(p) + (1 - w) * U`` where ``p`` is the model's probability, ``q``
   its empirical quantile among the fitted rows and ``w`` the model's weight, one of
   ``MODEL_WEIGHTS`` chosen by training (the best out-of-fold average precision on the human
   labels; ties go to the lowest weight), or 0 when no human found an anomaly. The model
   learns the anomalies the reviewers saw; ``U`` keeps anomaly kinds the review never
   showed ranked high (on SMD, ASD and NAB the half-and-half stack beat the model alone);
   where the labels teach everything (the simulated fleet) the model alone wins and is
   chosen. The score is a rank in [0, 1], not a
   probability; thresholds are chosen on it.
"""

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from contracts.attribution import Z_CLIP, robust_reference
from contracts.features import (
    ERROR_RATIO,
    LOG_COUNT_COLUMNS,
    SUM_WINDOW,
    SUMMED_LOG_COUNTS,
    TIME_FEATURES,
)

PCA_VARIANCE = 0.9
KNN_K = 5
KNN_REFERENCE_ROWS = 2000
MODEL_WEIGHTS = (0.5, 0.75, 1.0)
QUANTILE_POINTS = 1001  # of each empirical distribution kept (0.1 % resolution)
GRID_SPACING = 2e-6  # the least gap between two kept quantiles (see quantile_grid)
# Rows the robust scales and the PCA are fitted on, at most: both are stable well before.
FIT_SAMPLE_ROWS = 20_000

PCA_ERROR = "detector_pca_error"
KNN_DISTANCE = "detector_knn_distance"
DEVIATION_MEAN = "detector_deviation_mean"
UNSUPERVISED_COLUMNS = (PCA_ERROR, KNN_DISTANCE, DEVIATION_MEAN)

NOT_STATE = frozenset(
    (
        *TIME_FEATURES,
        *LOG_COUNT_COLUMNS,
        *(f"{column}_sum_{SUM_WINDOW}" for column in SUMMED_LOG_COUNTS),
        ERROR_RATIO,
    )
)
_CHUNK_ROWS = 4096


class DetectorError(ValueError):
    """Rows or a model the fitted detector does not know."""


@dataclass(frozen=True)
class FittedDetector:
    """The fitted numbers of the detector (see the module docstring)."""

    feature_names: list[str]
    metrics: list[str]  # the dataset's metrics, whose features these are
    state_columns: NDArray[np.int64]  # positions (in feature_names) of machine-state features
    median: NDArray[np.float64]  # per state column
    scale: NDArray[np.float64]  # per state column
    pca_mean: NDArray[np.float64]
    pca_components: NDArray[np.float64]  # components x state columns
    knn_reference: NDArray[np.float32]  # reference rows' z-scores
    unsupervised_quantiles: NDArray[np.float64]  # unsupervised column x QUANTILE_POINTS
    model_quantiles: dict[str, NDArray[np.float64]] = field(default_factory=dict)
    model_weights: dict[str, float] = field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        """The models' input columns, in order: the features, then the unsupervised ones."""
        return [*self.feature_names, *UNSUPERVISED_COLUMNS]

    def inputs(self, features: NDArray[Any]) -> NDArray[np.float32]:
        """Model inputs of feature rows (float32, columns ``input_names``).

        Raises:
            DetectorError: the rows do not have ``len(feature_names)`` columns.
        """
        matrix = np.asarray(features)
        if matrix.ndim != 2 or matrix.shape[1] != len(self.feature_names):
            raise DetectorError(
                f"expected rows of {len(self.feature_names)} features, got shape {matrix.shape}"
            )
        columns = unsupervised_columns(self, self.robust_z(matrix))
        # Written into one float32 matrix: no float64 copy of the rows to cast afterwards.
        width = len(self.feature_names)
        inputs = np.empty((len(matrix), width + columns.shape[1]), np.float32)
        inputs[:, :width] = matrix
        inputs[:, width:] = columns
        return inputs

    def robust_z(self, features: NDArray[Any]) -> NDArray[np.float32]:
        """Clipped robust z-scores of the state columns of feature rows."""
        state = np.asarray(features, dtype=np.float64)[:, self.state_columns]
        return np.clip((state - self.median) / self.scale, -Z_CLIP, Z_CLIP).astype(np.float32)

    def unsupervised_score(self, inputs: NDArray[Any]) -> NDArray[np.float64]:
        """``U`` of model-input rows: the mean quantile of their unsupervised columns."""
        columns = np.asarray(inputs, dtype=np.float64)[:, len(self.feature_names) :]
        quantiles = [
            quantile(self.unsupervised_quantiles[j], columns[:, j])
            for j in range(len(UNSUPERVISED_COLUMNS))
        ]
        return np.asarray(np.mean(quantiles, axis=0), dtype=np.float64)

    def score(
        self, model: str, probabilities: NDArray[Any], inputs: NDArray[Any]
    ) -> NDArray[np.float64]:
        """The served score of rows ``model`` answered with ``probabilities``.

        Raises:
            DetectorError: no probability distribution of ``model`` was fitted.
        """
        if model not in self.model_quantiles:
            raise DetectorError(
                f"no fitted scores of model {model!r}: {sorted(self.model_quantiles)}"
            )
        return stack(
            quantile(self.model_quantiles[model], np.asarray(probabilities, np.float64)),
            self.unsupervised_score(inputs),
            self.model_weights[model],
        )

    def with_model(self, model: str, grid: NDArray[Any], weight: float) -> "FittedDetector":
        """This detector knowing ``model``: the ``quantile_grid`` of its probabilities on the
        fitted rows and its weight in the served score."""
        return replace(
            self,
            model_quantiles={**self.model_quantiles, model: grid},
            model_weights={**self.model_weights, model: float(weight)},
        )

    def save(self, path: Path) -> None:
        """Write the detector to ``path`` (one ``.npz`` file)."""
        arrays: dict[str, NDArray[Any]] = {
            "state_columns": self.state_columns,
            "median": self.median,
            "scale": self.scale,
            "pca_mean": self.pca_mean,
            "pca_components": self.pca_components,
            "knn_reference": self.knn_reference,
            "unsupervised_quantiles": self.unsupervised_quantiles,
            **{f"model:{name}": grid for name, grid in self.model_quantiles.items()},
            **{f"weight:{name}": np.array(w) for name, w in self.model_weights.items()},
        }
        buffer = io.BytesIO()
        names = {"feature_names": self.feature_names, "metrics": self.metrics}
        np.savez_compressed(buffer, names=np.array(json.dumps(names)), **arrays)
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "FittedDetector":
        """Read a detector written by :meth:`save`.

        Raises:
            DetectorError: the file is not a saved detector.
        """
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {key: saved[key] for key in saved.files}
        except (OSError, ValueError) as error:
            raise DetectorError(f"{path} is not a saved detector: {error}") from error
        try:
            return cls(
                **json.loads(str(arrays.pop("names"))),
                state_columns=arrays.pop("state_columns"),
                median=arrays.pop("median"),
                scale=arrays.pop("scale"),
                pca_mean=arrays.pop("pca_mean"),
                pca_components=arrays.pop("pca_components"),
                knn_reference=arrays.pop("knn_reference"),
                unsupervised_quantiles=arrays.pop("unsupervised_quantiles"),
                model_quantiles={
                    key.removeprefix("model:"): grid
                    for key, grid in arrays.items()
                    if key.startswith("model:")
                },
                model_weights={
                    key.removeprefix("weight:"): float(value)
                    for key, value in arrays.items()
                    if key.startswith("weight:")
                },
            )
        except KeyError as error:
            raise DetectorError(f"{path} lacks {error}") from error


def fit_detector(
    features: NDArray[Any],
    feature_names: Sequence[str],
    metrics: Sequence[str],
    fit_rows: NDArray[Any],
    seed: int = 0,
) -> FittedDetector:
    """Fit the robust scales, the PCA, the kNN reference and the quantiles on ``fit_rows``.

    Args:
        features: every feature row (float32), columns ``feature_names``.
        feature_names: the contract's columns.
        metrics: the dataset's metrics (``feature_names`` are theirs).
        fit_rows: positions of the rows training may see (never test rows).
        seed: seed of the row samples.

    Raises:
        ValueError: no fit rows, or no machine-state feature.
    """
    if len(fit_rows) == 0:
        raise ValueError("fitting the detector needs at least one row")
    state = np.array([j for j, n in enumerate(feature_names) if n not in NOT_STATE], np.int64)
    if len(state) == 0:
        raise ValueError("the features hold no machine-state column")
    rng = np.random.default_rng(seed)
    rows = np.asarray(fit_rows)
    sample = rows if len(rows) <= FIT_SAMPLE_ROWS else rng.choice(rows, FIT_SAMPLE_ROWS, False)
    reference = np.asarray(features[np.sort(sample)][:, state], dtype=np.float64)
    median, scale = robust_reference(reference)
    empty = np.zeros((0, 0))
    partial = FittedDetector(
        list(feature_names),
        list(metrics),
        state,
        median,
        scale,
        empty,
        empty,
        np.zeros((0, 0), np.float32),
        empty,
    )
    z_sample = partial.robust_z(features[np.sort(sample)])
    pca_mean, components = _principal_components(z_sample.astype(np.float64), PCA_VARIANCE)
    neighbours = rng.choice(rows, min(KNN_REFERENCE_ROWS, len(rows)), replace=False)
    partial = replace(
        partial,
        pca_mean=pca_mean,
        pca_components=components,
        knn_reference=partial.robust_z(features[np.sort(neighbours)]),
    )
    fitted_columns = unsupervised_columns(partial, partial.robust_z(features[rows]))
    grids = np.stack([quantile_grid(fitted_columns[:, j]) for j in range(fitted_columns.shape[1])])
    return replace(partial, unsupervised_quantiles=grids)


def unsupervised_columns(detector: FittedDetector, z: NDArray[np.float32]) -> NDArray[np.float64]:
    """The unsupervised columns of rows given their z-scores (rows x ``UNSUPERVISED_COLUMNS``)."""
    centred = z.astype(np.float64) - detector.pca_mean
    rebuilt = centred @ detector.pca_components.T @ detector.pca_components
    pca_error = ((centred - rebuilt) ** 2).sum(axis=1)
    return np.column_stack(
        [pca_error, _knn_distance(z, detector.knn_reference), np.abs(z).mean(axis=1)]
    )


def stack(
    learnt: NDArray[np.float64], unsupervised: NDArray[np.float64], weight: float
) -> NDArray[np.float64]:
    """The served score from the model's quantile and the unsupervised score (where the
    model has no score, NaN, the unsupervised score alone)."""
    stacked = weight * learnt + (1 - weight) * unsupervised
    return np.asarray(np.where(np.isnan(learnt), unsupervised, stacked), dtype=np.float64)


def quantile_grid(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """``QUANTILE_POINTS`` evenly spaced quantiles of ``values`` (at float32 precision, as
    servers answer): their distribution, kept.

    Consecutive points are at least ``GRID_SPACING`` apart: where many rows share one value (a
    model's saturated probability) the distribution is spread over a sliver above it, so the
    quantile never jumps and a value that differs in its last bits (Triton's FP32 answer,
    CatBoost's ONNX twin: up to 7.4e-8) moves the score by at most ~4e-5.
    """
    values32 = np.asarray(values, dtype=np.float32).astype(np.float64)
    grid = np.quantile(values32, np.linspace(0.0, 1.0, QUANTILE_POINTS))
    spread = grid - GRID_SPACING * np.arange(QUANTILE_POINTS)
    return np.asarray(np.maximum.accumulate(spread) + GRID_SPACING * np.arange(QUANTILE_POINTS))


def quantile(grid: NDArray[np.float64], values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Each value's empirical quantile (0..1) in the distribution ``grid`` keeps (NaN stays NaN),
    interpolated between grid points: continuous in the value. Values are taken at float32
    precision, what every server returns."""
    values32 = np.asarray(values, dtype=np.float32).astype(np.float64)
    shares = np.interp(values32, grid, np.linspace(0.0, 1.0, len(grid)))
    return np.asarray(np.where(np.isnan(values32), np.nan, shares), dtype=np.float64)


def _knn_distance(z: NDArray[np.float32], reference: NDArray[np.float32]) -> NDArray[np.float64]:
    """Mean Euclidean distance of each row to its ``KNN_K`` nearest reference rows."""
    if len(reference) == 0:
        return np.zeros(len(z))
    k = min(KNN_K, len(reference))
    norms = (reference.astype(np.float64) ** 2).sum(axis=1)
    distances = np.empty(len(z))
    for start in range(0, len(z), _CHUNK_ROWS):
        block = z[start : start + _CHUNK_ROWS].astype(np.float64)
        squared = (
            (block**2).sum(axis=1)[:, None]
            + norms[None, :]
            - 2 * block @ reference.T.astype(np.float64)
        )
        nearest = np.partition(np.maximum(squared, 0.0), k - 1, axis=1)[:, :k]
        distances[start : start + len(block)] = np.sqrt(nearest).mean(axis=1)
    return distances


def _principal_components(
    values: NDArray[np.float64], variance: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The mean and the fewest components explaining ``variance`` of the variance."""
    mean = values.mean(axis=0)
    if values.shape[1] < 2:
        return mean, np.zeros((0, values.shape[1]))
    _, singular, vt = np.linalg.svd(values - mean, full_matrices=False)
    explained = singular**2
    if explained.sum() <= 0:
        return mean, np.zeros((0, values.shape[1]))
    keep = int(np.searchsorted(np.cumsum(explained) / explained.sum(), variance) + 1)
    return mean, vt[: min(keep, len(vt))]
