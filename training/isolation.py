"""Phase 1: Isolation Forest scores and its confidence buckets.

The forest's raw score is normalised to [-1, 1] with 0 at the contamination quantile (the
seed's "anomaly scores (-1 to 1)"). Each side is mapped through the empirical distribution of
the fitted rows on that side: -1 is the most anomalous fitted row, -0.6 has 40 % of the
predicted anomalies below it, 1 is the most normal row. The bucket edges (-0.6, -0.3, 0, 0.3)
therefore mean the same share of rows on every dataset, whatever the spread of its raw scores.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import dask.array as da
import numpy as np
from distributed import Client
from numpy.typing import NDArray
from sklearn.ensemble import IsolationForest

from training.config import ConfidenceConfig, IsolationForestConfig
from training.models import scatter_rows


class Bucket(StrEnum):
    """Confidence buckets over the normalised score."""

    HIGH_ANOMALY = "high_confidence_anomaly"
    MEDIUM_ANOMALY = "medium_confidence_anomaly"
    LOW_ANOMALY = "low_confidence_anomaly"
    MEDIUM_NORMAL = "medium_confidence_normal"
    HIGH_NORMAL = "high_confidence_normal"


ANOMALY_BUCKETS = (Bucket.HIGH_ANOMALY, Bucket.MEDIUM_ANOMALY, Bucket.LOW_ANOMALY)


QUANTILE_LEVELS = np.linspace(0.0, 1.0, 1001)


@dataclass(frozen=True)
class ScoreScale:
    """Maps raw ``score_samples`` values onto [-1, 1] (negative = anomaly)."""

    offset: float
    anomaly_quantiles: NDArray[np.float64]
    normal_quantiles: NDArray[np.float64]

    def normalise(self, raw: NDArray[Any]) -> NDArray[np.float64]:
        anomalous = -1.0 + np.interp(raw, self.anomaly_quantiles, QUANTILE_LEVELS)
        normal = np.interp(raw, self.normal_quantiles, QUANTILE_LEVELS)
        return np.where(raw < self.offset, anomalous, normal)


def fit_isolation_forest(features: NDArray[Any], config: IsolationForestConfig) -> IsolationForest:
    """Fit the forest on the rows training may see (labelled and unlabelled).

    The forest is fitted with ``contamination="auto"`` so that sklearn does not score every
    row a second time to place its offset; :func:`calibrate_scores` places it from the scores
    the pipeline computes anyway, with sklearn's own definition (the contamination percentile).

    Args:
        features: float matrix, one row per instance-minute.
        config: forest size, subsample size, seed.

    Returns:
        The fitted forest.
    """
    forest = IsolationForest(
        n_estimators=config.n_estimators,
        max_samples=min(config.max_samples, len(features)),
        contamination="auto",
        random_state=config.random_state,
        n_jobs=-1,
    )
    return forest.fit(features)


def raw_scores(
    forest: IsolationForest,
    features: NDArray[Any],
    client: Client | None = None,
    chunk_rows: int = 100_000,
) -> NDArray[Any]:
    """sklearn's ``score_samples`` (lower = more anomalous), locally or on a Dask cluster.

    Rows are scored in blocks of at most ``chunk_rows``, in threads here or as Dask tasks on
    a cluster; each row's score depends only on that row, so every way gives the same scores.
    """
    if client is None:
        # Row blocks in threads: each row still sums its trees in the same order, so the scores
        # equal sklearn's sequential ones (its own tree-parallel mode does not: the sums race).
        workers = os.cpu_count() or 1
        block = max(1, min(chunk_rows, -(-len(features) // workers)))
        starts = range(0, len(features), block)
        with ThreadPoolExecutor(workers) as pool:
            parts = pool.map(forest.score_samples, (features[i : i + block] for i in starts))
            return np.concatenate([np.asarray(p, dtype=np.float64) for p in parts])
    blocks = scatter_rows(client, features, chunk_rows)
    scored = da.map_blocks(forest.score_samples, blocks, drop_axis=1, dtype=np.float64)
    return np.asarray(client.compute(scored).result(), dtype=np.float64)


def calibrate_scores(fit_raw_scores: NDArray[Any], contamination: float) -> ScoreScale:
    """The scale that puts the contamination quantile of the fitted rows at 0."""
    offset = float(np.percentile(fit_raw_scores, 100.0 * contamination))
    anomalous = fit_raw_scores[fit_raw_scores < offset]
    normal = fit_raw_scores[fit_raw_scores >= offset]
    return ScoreScale(
        offset=offset,
        anomaly_quantiles=np.quantile(anomalous if len(anomalous) else [offset], QUANTILE_LEVELS),
        normal_quantiles=np.quantile(normal, QUANTILE_LEVELS),
    )


def confidence_buckets(scores: NDArray[Any], config: ConfidenceConfig) -> NDArray[Any]:
    """The :class:`Bucket` value of each normalised score, as a string array."""
    return np.select(
        [
            scores < config.high_anomaly_below,
            scores < config.medium_anomaly_below,
            scores < 0.0,
            scores <= config.high_normal_above,
        ],
        [
            Bucket.HIGH_ANOMALY.value,
            Bucket.MEDIUM_ANOMALY.value,
            Bucket.LOW_ANOMALY.value,
            Bucket.MEDIUM_NORMAL.value,
        ],
        default=Bucket.HIGH_NORMAL.value,
    )


@dataclass(frozen=True)
class IsolationResult:
    """Phase 1's output for every row: normalised score and confidence bucket."""

    forest: IsolationForest
    scale: ScoreScale
    scores: NDArray[Any]
    buckets: NDArray[Any]


def run_isolation_forest(
    features: NDArray[Any],
    fit_rows: NDArray[Any],
    forest_config: IsolationForestConfig,
    confidence_config: ConfidenceConfig,
    client: Client | None = None,
    chunk_rows: int = 100_000,
) -> IsolationResult:
    """Fit on ``fit_rows``, score every row once, calibrate on the fitted rows, bucket.

    Args:
        features: all rows, float matrix.
        fit_rows: indices of the rows the forest may learn from (never the test rows).
        forest_config: phase 1 parameters.
        confidence_config: bucket edges.
        client: a Dask client to score on; None scores in this process.
        chunk_rows: rows per Dask block.

    Returns:
        Scores and buckets for every row of ``features``.
    """
    forest = fit_isolation_forest(features[fit_rows], forest_config)
    raw = raw_scores(forest, features, client, chunk_rows)
    scale = calibrate_scores(raw[fit_rows], forest_config.contamination)
    scores = scale.normalise(raw)
    return IsolationResult(forest, scale, scores, confidence_buckets(scores, confidence_config))
