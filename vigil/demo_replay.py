"""The demo's replay: the scorer scores a past day, then ground truth comes back as feedback.

The scorer service replays the range at startup (``VIGIL_SCORER_REPLAY_*``); this module waits
for it through the scorer's own metric, then sends one ``POST /feedback`` per scored
(instance, window) with the label the simulator wrote (1 when the window overlaps one of the
instance's incidents), and measures window-level detection against the same truth.
"""

import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import polars as pl

from contracts.layout import INCIDENTS_PATH
from contracts.store import ObjectStore
from serving.prediction_log import read_predictions

# Reviewers label recent alerts, not a whole day; 6 hours of a 50-instance fleet is 3,600
# labels, more than the scorer's accuracy window (1,000 per model) and the A/B test need.
FEEDBACK_SPAN = timedelta(hours=6)
_LAST_WINDOW = re.compile(r"^scorer_last_window_end_timestamp_seconds ([0-9.e+]+)$", re.M)


@dataclass(frozen=True)
class ReplayOutcome:
    """Window-level detection quality against the simulator's incidents."""

    windows: int
    true_anomalous: int
    flagged: int
    true_positives: int
    feedback_sent: int
    by_model: dict[str, int]

    @property
    def precision(self) -> float:
        return self.true_positives / self.flagged if self.flagged else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.true_anomalous if self.true_anomalous else 0.0


def wait_for_replay(scorer_url: str, end: datetime, timeout: float = 900) -> None:
    """Block until the scorer's latest scored window reaches ``end``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = httpx.get(f"{scorer_url}/metrics", timeout=10).text
        match = _LAST_WINDOW.search(text)
        if match and float(match.group(1)) >= end.timestamp():
            return
        time.sleep(1)
    raise TimeoutError(f"the scorer had not replayed up to {end.isoformat()} in {timeout:.0f} s")


def window_truth(store: ObjectStore, predictions: pl.DataFrame, window: timedelta) -> pl.DataFrame:
    """One row per scored (instance, window) with the answering model, the verdict and truth."""
    scored = predictions.group_by("instance_id", "window_start").agg(
        pl.col("model").first(), (pl.col("result").max() == 1).alias("flagged")
    )
    incidents = pl.DataFrame(store.read_table(INCIDENTS_PATH, ["instance_id", "start", "end"]))
    overlaps = (
        scored.join(incidents, on="instance_id", how="inner")
        .filter(
            (pl.col("start") < pl.col("window_start") + window)
            & (pl.col("end") >= pl.col("window_start"))
        )
        .select("instance_id", "window_start")
        .unique()
        .with_columns(pl.lit(True).alias("anomalous"))
    )
    return scored.join(overlaps, on=["instance_id", "window_start"], how="left").with_columns(
        pl.col("anomalous").fill_null(False)
    )


def send_feedback(
    store: ObjectStore,
    scorer_url: str,
    start: datetime,
    end: datetime,
    window: timedelta,
    feedback_span: timedelta = FEEDBACK_SPAN,
) -> ReplayOutcome:
    """POST the true label of every window scored in the last ``feedback_span``; return the
    detection quality of the whole range."""
    truth = window_truth(store, read_predictions(store, start, end), window)
    recent = truth.filter(pl.col("window_start") >= end - feedback_span)
    with httpx.Client(base_url=scorer_url, timeout=30) as client:
        for row in recent.iter_rows(named=True):
            response = client.post(
                "/feedback",
                json={
                    "instance_id": row["instance_id"],
                    "window_start": row["window_start"].isoformat(),
                    "label": int(row["anomalous"]),
                },
            )
            response.raise_for_status()
    flagged = truth.filter(pl.col("flagged"))
    return ReplayOutcome(
        windows=truth.height,
        true_anomalous=int(truth["anomalous"].sum()),
        flagged=flagged.height,
        true_positives=int(flagged["anomalous"].sum()),
        feedback_sent=recent.height,
        by_model=dict(truth.group_by("model").len().iter_rows()),
    )
