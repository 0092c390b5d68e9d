"""Phase 3: the labels the supervised models learn from, and where each one came from.

Precedence: an original label from the store, then a reviewer's label, then the pseudo-label
the unsupervised detectors give a row (``training.labelling``: "normal" for rows they all find
ordinary; "anomaly" only when no human found any anomaly). Positives come from humans: the
seed's Isolation Forest "high-confidence anomalies" are mostly normal rows on real data (SMD).
Rows with none of these stay unlabelled and are left out of supervised training.
Pseudo-labels are training targets only: evaluation is against true labels (see
training.evaluation).
"""

from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

ORIGINAL = "original"
REVIEW = "review"
UNSUPERVISED = "unsupervised"
SOURCES = (ORIGINAL, REVIEW, UNSUPERVISED)


class LabelMix(BaseModel):
    """How many training labels came from each source, split by class."""

    model_config = ConfigDict(extra="forbid")

    anomalies: dict[str, int]
    normals: dict[str, int]
    unlabelled: int

    @property
    def labelled(self) -> int:
        return sum(self.anomalies.values()) + sum(self.normals.values())


def reveal_known_labels(
    true_labels: pl.Series, eligible: NDArray[Any], fraction: float, seed: int
) -> pl.Series:
    """The labels a run starts from: a random ``fraction`` of the eligible labelled rows.

    Args:
        true_labels: the store's labels (Int8, null where unknown), one per row.
        eligible: boolean mask of rows whose label training may see (never test rows).
        fraction: share of eligible labelled rows to reveal; 1.0 reveals them all.
        seed: random seed.

    Returns:
        Int8 series, null except for the revealed rows.
    """
    labelled = np.flatnonzero(eligible & true_labels.is_not_null().to_numpy())
    count = round(fraction * len(labelled))
    revealed = np.random.default_rng(seed).choice(labelled, size=count, replace=False)
    mask = np.zeros(len(true_labels), dtype=bool)
    mask[revealed] = True
    return (
        pl.select(pl.when(pl.Series(mask)).then(true_labels).otherwise(None))
        .to_series()
        .cast(pl.Int8)
        .alias("known_label")
    )


def assign_pseudo_labels(
    known_labels: pl.Series, review_labels: pl.Series, pseudo_labels: pl.Series
) -> pl.DataFrame:
    """Combine the three label sources, row by row.

    Args:
        known_labels: original labels (Int8, null where unknown).
        review_labels: reviewers' labels (Int8, null where not reviewed).
        pseudo_labels: the unsupervised detectors' labels (Int8, null where none).

    Returns:
        Columns ``train_label`` (Int8, null = unlabelled) and ``label_source``.
    """
    frame = pl.DataFrame({"known": known_labels, "review": review_labels, "pseudo": pseudo_labels})
    return frame.select(
        train_label=pl.coalesce("known", "review", "pseudo").cast(pl.Int8),
        label_source=pl.when(pl.col("known").is_not_null())
        .then(pl.lit(ORIGINAL))
        .when(pl.col("review").is_not_null())
        .then(pl.lit(REVIEW))
        .when(pl.col("pseudo").is_not_null())
        .then(pl.lit(UNSUPERVISED)),
    )


def label_mix(pseudo_labels: pl.DataFrame) -> LabelMix:
    """Count ``assign_pseudo_labels``'s output by source and class."""
    counts = {
        (source, label): count
        for source, label, count in pseudo_labels.group_by("label_source", "train_label")
        .len()
        .iter_rows()
    }
    return LabelMix(
        anomalies={source: counts.get((source, 1), 0) for source in SOURCES},
        normals={source: counts.get((source, 0), 0) for source in SOURCES},
        unlabelled=counts.get((None, None), 0),
    )
