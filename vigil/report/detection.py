"""Detection against ground truth from the prediction log: per arm, and per instance in time.

A *window* is one instance's rows of one scoring window (one arm answered it): it is truly
anomalous when it overlaps one of the instance's incidents (``vigil.demo.replay.window_truth``,
the rule the demo's feedback uses), flagged when any row reached the arm's threshold, and its
score for the curves is the highest probability among its rows. Windows whose request failed
have no score and are left out.
"""

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import NDArray
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from contracts.serving import CHALLENGER, CHAMPION
from contracts.store import ObjectStore
from vigil.demo.replay import window_truth
from vigil.report.model import ArmDetection, InstanceTimeline
from vigil.report.svg import Span

ARM_COLORS = {CHAMPION: "#1f77b4", CHALLENGER: "#ff7f0e"}
OTHER_ARM_COLOR = "#2ca02c"
CURVE_POINTS = 200  # enough for a smooth curve; the full curve can hold a point per window


def scored_windows(
    store: ObjectStore, predictions: pl.DataFrame, window: timedelta
) -> pl.DataFrame:
    """instance_id, window_start, model, flagged, anomalous, score: one row per scored window."""
    if predictions.height == 0:
        return pl.DataFrame(
            schema={
                "instance_id": pl.String,
                "window_start": pl.Datetime("ms", "UTC"),
                "model": pl.String,
                "flagged": pl.Boolean,
                "anomalous": pl.Boolean,
                "score": pl.Float64,
            }
        )
    scores = predictions.group_by("instance_id", "window_start").agg(
        pl.col("probability").max().alias("score")
    )
    return (
        window_truth(store, predictions, window)
        .join(scores, on=["instance_id", "window_start"])
        .filter(pl.col("score").is_not_null())
        .sort("instance_id", "window_start")
    )


def arm_detection(windows: pl.DataFrame, arms: dict[str, str]) -> list[ArmDetection]:
    """Each arm (alias -> model) that scored at least one window."""
    detections = []
    for alias, model in arms.items():
        mine = windows.filter(pl.col("model") == model)
        if mine.height == 0:
            continue
        truth = mine["anomalous"].to_numpy().astype(np.int8)
        flagged = mine["flagged"].to_numpy()
        scores = mine["score"].to_numpy()
        both_classes = 0 < int(truth.sum()) < len(truth)
        detections.append(
            ArmDetection(
                alias=alias,
                model=model,
                color=ARM_COLORS.get(alias, OTHER_ARM_COLOR),
                windows=mine.height,
                anomalous=int(truth.sum()),
                true_positives=int(np.sum(flagged & (truth == 1))),
                false_positives=int(np.sum(flagged & (truth == 0))),
                true_negatives=int(np.sum(~flagged & (truth == 0))),
                false_negatives=int(np.sum(~flagged & (truth == 1))),
                roc=_roc(truth, scores) if both_classes else [],
                pr=_pr(truth, scores) if both_classes else [],
                roc_auc=float(roc_auc_score(truth, scores)) if both_classes else None,
                pr_auc=float(average_precision_score(truth, scores)) if both_classes else None,
            )
        )
    return detections


def _roc(truth: NDArray[Any], scores: NDArray[Any]) -> list[tuple[float, float]]:
    fpr, tpr, _ = roc_curve(truth, scores)
    return _thin(list(zip(fpr.tolist(), tpr.tolist(), strict=True)))


def _pr(truth: NDArray[Any], scores: NDArray[Any]) -> list[tuple[float, float]]:
    precision, recall, _ = precision_recall_curve(truth, scores)
    return _thin(list(zip(recall.tolist(), precision.tolist(), strict=True)))


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most CURVE_POINTS points, always keeping both ends."""
    if len(points) <= CURVE_POINTS:
        return points
    keep = np.unique(np.linspace(0, len(points) - 1, CURVE_POINTS).round().astype(int))
    return [points[i] for i in keep]


def instance_timelines(
    windows: pl.DataFrame,
    incidents: pl.DataFrame,
    explained: dict[str, list[datetime]],
    start: datetime,
    end: datetime,
    window: timedelta,
    count: int,
) -> list[InstanceTimeline]:
    """The ``count`` instances with the most true incidents in ``[start, end)``."""
    in_range = incidents.filter((pl.col("start") < end) & (pl.col("end") >= start))
    ranked = (
        in_range.group_by("instance_id")
        .len()
        .sort(["len", "instance_id"], descending=[True, False])
        .head(count)["instance_id"]
        .to_list()
    )
    timelines = []
    for instance in ranked:
        mine = windows.filter(pl.col("instance_id") == instance)
        true_spans = [
            Span(row["start"], row["end"] + timedelta(minutes=1))  # the end minute is included
            for row in in_range.filter(pl.col("instance_id") == instance)
            .sort("start")
            .iter_rows(named=True)
        ]
        flagged = mine.filter(pl.col("flagged"))["window_start"].to_list()
        timelines.append(
            InstanceTimeline(
                instance_id=instance,
                model=mine["model"][0] if mine.height else None,
                true_spans=true_spans,
                detected_spans=_runs(flagged, window),
                explained_at=explained.get(instance, []),
            )
        )
    return timelines


def _runs(starts: list[datetime], window: timedelta) -> list[Span]:
    """Consecutive flagged windows merged into one span each."""
    spans: list[Span] = []
    for begin in sorted(starts):
        if spans and spans[-1].end == begin:
            spans[-1] = Span(spans[-1].start, begin + window)
        else:
            spans.append(Span(begin, begin + window))
    return spans
