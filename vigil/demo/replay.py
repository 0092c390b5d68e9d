"""The demo's replay: the scorer scores a past day, then ground truth comes back as feedback.

The range is the last day of the store's feature rows (``replay_range``), whatever filled the
store (the fleet simulator or a dataset importer). The scorer service replays it at startup
(``VIGIL_SCORER_REPLAY_*``); this module waits for it through the scorer's own metric, then
sends one ``POST /feedback`` per scored (instance, window) with the ground truth the store
holds (1 when the window overlaps one of the instance's incidents), and measures window-level
detection against the same truth.
"""

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import polars as pl
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from contracts.dataset import read_dataset_info
from contracts.features import INSTANCE_ID, TIMESTAMP
from contracts.layout import FEATURES_PREFIX, INCIDENTS_PATH
from contracts.store import ObjectStore
from serving.scorer.loop import window_start_of
from serving.scorer.prediction_log import read_predictions

REPLAY_SPAN = timedelta(days=1)
# Reviewers label recent alerts, not a whole day of a large fleet: the most recent windows up
# to 3,600 labels (6 hours of the demo's 50-instance fleet; the whole day of a few machines),
# more than the scorer's accuracy window (1,000 per model) and the A/B test need.
FEEDBACK_LABELS = 3600


@dataclass(frozen=True)
class ReplayOutcome:
    """Window-level detection quality against the simulator's incidents."""

    windows: int
    true_anomalous: int
    flagged: int
    true_positives: int
    feedback_sent: int
    feedback_span: timedelta  # the most recent part of the range the labels were sent for
    by_model: dict[str, int]

    @property
    def precision(self) -> float:
        return self.true_positives / self.flagged if self.flagged else 0.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.true_anomalous if self.true_anomalous else 0.0


def replay_range(
    store: ObjectStore, window: timedelta, span: timedelta = REPLAY_SPAN
) -> tuple[datetime, datetime]:
    """The last ``span`` of the store's feature rows, on the scorer's window boundaries.

    The range ends where the latest feature row ends (its timestamp plus one sampling step),
    floored to a window boundary so that the last replayed window is complete, and starts
    ``span`` earlier, or at the first whole window of data when the store holds less.

    Raises:
        ValueError: the store holds no feature rows, or less than one window of them.
    """
    keys = store.list_keys(FEATURES_PREFIX, "features.parquet")
    stamps = pl.concat(
        [pl.DataFrame(store.read_table(key, columns=[TIMESTAMP])) for key in keys]
        or [pl.DataFrame(schema={TIMESTAMP: pl.Datetime("ms", "UTC")})]
    )[TIMESTAMP]
    if stamps.is_empty():
        raise ValueError(f"no feature rows under {store.uri}/{FEATURES_PREFIX}: nothing to replay")
    step = timedelta(seconds=read_dataset_info(store).step_seconds)
    first, last = stamps.min(), stamps.max()
    assert isinstance(first, datetime)
    assert isinstance(last, datetime)
    end = window_start_of(last + step, window)
    first_window = window_start_of(first, window)
    start = max(end - span, first_window if first_window == first else first_window + window)
    if start >= end:
        raise ValueError(
            f"the feature rows span {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}: less "
            f"than one whole {window} window to replay"
        )
    return start, end


def feedback_span(instances: int, window: timedelta, span: timedelta) -> timedelta:
    """The most recent part of a ``span`` whose windows of ``instances`` instances hold at most
    ``FEEDBACK_LABELS`` labels (at least one window, at most the whole span)."""
    windows = max(1, FEEDBACK_LABELS // max(instances, 1))
    return min(span, windows * window)


def _scorer_samples(scorer_url: str) -> list[Sample]:
    text = httpx.get(f"{scorer_url}/metrics", timeout=10).text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def wait_for_replay(scorer_url: str, end: datetime, timeout: float = 900) -> None:
    """Block until the scorer's latest scored window reaches ``end``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        last = [
            s
            for s in _scorer_samples(scorer_url)
            if s.name == "scorer_last_window_end_timestamp_seconds"
        ]
        if last and last[0].value >= end.timestamp():
            return
        time.sleep(1)
    raise TimeoutError(f"the scorer had not replayed up to {end.isoformat()} in {timeout:.0f} s")


@dataclass(frozen=True)
class ExplanationProgress:
    """The scorer's explanation requests so far: answered, failed, dropped, still queued."""

    sent: int
    failed: int
    dropped: int
    queued: int


def explanation_progress(scorer_url: str) -> ExplanationProgress:
    """Read the explanation counters and queue depth from the scorer's ``/metrics``."""
    samples = {}
    for sample in _scorer_samples(scorer_url):
        if sample.name == "explanation_requests_total":
            samples[sample.labels["outcome"]] = int(sample.value)
        elif sample.name == "explanation_queue_depth":
            samples["queued"] = int(sample.value)
    return ExplanationProgress(
        sent=samples.get("sent", 0),
        failed=samples.get("failed", 0),
        dropped=samples.get("dropped", 0),
        queued=samples.get("queued", 0),
    )


def wait_for_explanations(scorer_url: str, wanted: int, timeout: float) -> ExplanationProgress:
    """Give the explainer up to ``timeout`` seconds to answer ``wanted`` requests in all (or
    to empty its queue): the demo's local LLM answers one every few seconds, so the replay
    ends with most confident anomalies still queued."""
    deadline = time.monotonic() + timeout
    progress = explanation_progress(scorer_url)
    while progress.sent < wanted and progress.queued and time.monotonic() < deadline:
        time.sleep(1)
        progress = explanation_progress(scorer_url)
    return progress


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
    span: timedelta | None = None,
) -> ReplayOutcome:
    """POST the true label of every window scored in the last ``span`` (default: as many
    recent windows as ``FEEDBACK_LABELS`` allows, see ``feedback_span``); return the
    detection quality of the whole range."""
    truth = window_truth(store, read_predictions(store, start, end), window)
    if span is None:
        span = feedback_span(truth[INSTANCE_ID].n_unique(), window, end - start)
    recent = truth.filter(pl.col("window_start") >= end - span)
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
        feedback_span=span,
        by_model=dict(truth.group_by("model").len().iter_rows()),
    )
