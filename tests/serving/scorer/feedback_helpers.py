"""Helpers of the feedback tests: a real scorer (no MLflow, no inference server) over a local
store holding scored windows, served over real HTTP, and what it stored."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import polars as pl
from pydantic import SecretStr

from contracts.serving import XGBOOST_MODEL
from contracts.store import ObjectStore
from serving.scorer.app import create_app
from serving.scorer.prediction_log import FEEDBACK_PREFIX, write_predictions
from serving.scorer.scorer import Scorer
from tests.serving.scorer_helpers import offline_scorer, sample, scrape, serve_in_thread

FLAGGED = "i-0a1b2c3d"  # scored anomalous (probability 0.97) in every window written here
NORMAL = "i-other"  # scored normal (0.02)


def write_scored_window(store: ObjectStore, start: datetime) -> None:
    """The predictions of one window: ``FLAGGED`` flagged, ``NORMAL`` not."""
    predictions = pl.DataFrame(
        {
            "instance_id": [FLAGGED, NORMAL],
            "timestamp": [start, start],
            "window_start": [start, start],
            "model": [XGBOOST_MODEL] * 2,
            "model_version": [1, 1],
            "probability": [0.97, 0.02],
            "result": [1, 0],
            "latency_seconds": [0.002, 0.002],
            "error": [None, None],
        },
        schema_overrides={"error": pl.String},
    )
    write_predictions(store, start, predictions)


def feedback_files(store: ObjectStore) -> list[str]:
    """Every feedback file the scorer wrote."""
    return store.list_keys(f"{FEEDBACK_PREFIX}/", ".parquet")


def scorer_with_key(store: ObjectStore, api_key: str | None) -> Scorer:
    """The real scorer over ``store`` (see ``offline_scorer``) requiring ``api_key``."""
    scorer = offline_scorer(store, ["cpu"])
    key = SecretStr(api_key) if api_key is not None else None
    scorer.settings = scorer.settings.model_copy(update={"api_key": key})
    return scorer


@contextmanager
def serving(scorer: Scorer) -> Iterator[str]:
    """The scorer's app over real HTTP (no scoring loop); the scorer is closed after."""
    try:
        with serve_in_thread(create_app(scorer)) as url:
            yield url
    finally:
        scorer.close()


def metric(url: str, name: str, **labels: str) -> float | None:
    """One sample of the scorer's /metrics; None when it is not exported."""
    try:
        return sample(scrape(url), name, **labels)
    except KeyError:
        return None


def label(instance: str, start: datetime, value: int) -> dict[str, Any]:
    return {"instance_id": instance, "window_start": start.isoformat(), "label": value}
