"""Ground-truth feedback: the request body, and the verdicts that ``model_accuracy`` counts.

A label is given for one instance and one scored window (the window's start). The model's
verdict on that window is "anomalous" when any of the instance's rows in it was flagged
(probability at or above the model's threshold), and the label is compared with it.
"""

from collections import deque
from datetime import datetime

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, JsonValue

from contracts.api_types import IsoDateTime

# Shown in the OpenAPI schema (fuzzers start from it too).
FEEDBACK_EXAMPLE: dict[str, JsonValue] = {
    "instance_id": "i-0a1b2c3d",
    "window_start": "2024-01-01T20:00:00Z",
    "label": 1,
}


class FeedbackCreate(BaseModel):
    """A ground-truth label for one instance in one scored window."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [FEEDBACK_EXAMPLE]})

    instance_id: str = Field(min_length=1, max_length=128)
    window_start: IsoDateTime = Field(description="Start of the scored window.")
    # strict: a JSON true or "1" is refused, as the schema says, not read as 1.
    label: int = Field(
        strict=True, ge=0, le=1, description="1: the window was anomalous; 0: it was normal."
    )


class FeedbackPublic(BaseModel):
    """What the scorer made of the label."""

    instance_id: str
    window_start: datetime
    label: int
    model: str
    predicted: int
    correct: bool


def window_verdict(predictions: pl.DataFrame, instance_id: str) -> tuple[str, int] | None:
    """(model, 0/1) of an instance's scored rows in one window; None when it has none."""
    rows = predictions.filter(
        (pl.col("instance_id") == instance_id) & pl.col("result").is_not_null()
    )
    if rows.is_empty():
        return None
    return str(rows["model"][0]), int(rows["result"].max())  # type: ignore[arg-type]


class AccuracyTracker:
    """Per model, the share of the latest ``window`` labels its verdicts agreed with."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._outcomes: dict[str, deque[bool]] = {}

    def add(self, model: str, correct: bool) -> float:
        """Record one outcome; returns the model's accuracy now."""
        outcomes = self._outcomes.setdefault(model, deque(maxlen=self.window))
        outcomes.append(correct)
        return sum(outcomes) / len(outcomes)
