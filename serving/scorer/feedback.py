"""Ground-truth feedback: the request bodies, the verdicts that ``model_accuracy`` counts, and
the answers kept for idempotent retries.

A label is given for one instance and one scored window (the window's start). The model's
verdict on that window is "anomalous" when any of the instance's rows in it was flagged
(probability at or above the model's threshold), and the label is compared with it.

A request may carry an idempotency key (the ``Idempotency-Key`` header; a batch may name it
in its body instead). The answer to the first request with a key is kept in the object store
(``scorer/idempotency/<sha256 of the key>.json``, beside a fingerprint of the request), and a
retry with that key gets the same answer back with nothing stored or counted again; the same
key on a different request is a conflict (409). A single label's error answer (404, 422) is
not kept: nothing was stored, so the retry is a fresh attempt.
"""

import hashlib
import json
from collections import deque
from datetime import datetime
from typing import Annotated, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from contracts.api_types import IsoDateTime
from contracts.store import ObjectStore

IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
IDEMPOTENCY_PREFIX = "scorer/idempotency"
# Labels one batch may carry: one request stays small enough to validate, judge and write
# (one Parquet file per window day) in well under a second.
FEEDBACK_BATCH_MAX = 1000
# Visible ASCII, no spaces: what proxies pass through unchanged (a UUID fits).
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=255, pattern=r"^[!-~]+$")
]
FeedbackRoute = Literal["feedback", "feedback_batch"]

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


FEEDBACK_BATCH_EXAMPLE: dict[str, JsonValue] = {
    "labels": [FEEDBACK_EXAMPLE],
    "idempotency_key": "0d5c2a8e-5b7f-4c61-9d0e-3f1f6b2a9c11",
}


class FeedbackBatchCreate(BaseModel):
    """Ground-truth labels, each for one instance in one scored window, sent as one request."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [FEEDBACK_BATCH_EXAMPLE]}
    )

    labels: list[FeedbackCreate] = Field(min_length=1, max_length=FEEDBACK_BATCH_MAX)
    idempotency_key: IdempotencyKey | None = Field(
        default=None,
        description=f"Or the {IDEMPOTENCY_KEY_HEADER} header: one of them is required (equal "
        "when both are given). A retry with the same key gets the first answer back.",
    )


class FeedbackAccepted(FeedbackPublic):
    """A stored label of a batch: its position in ``labels`` and what the scorer made of it."""

    index: int


class FeedbackRejected(BaseModel):
    """A label of a batch that was not stored: its position, the status it would have had
    alone (404: not scored in that window; 422: not a window start, or a repeat of an
    earlier item) and why."""

    index: int
    status: int
    detail: str


class FeedbackBatchPublic(BaseModel):
    """What the scorer stored of a batch and why it refused the rest."""

    idempotency_key: str
    accepted: list[FeedbackAccepted]
    rejected: list[FeedbackRejected]


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


def request_fingerprint(route: FeedbackRoute, labels: list[FeedbackCreate]) -> str:
    """SHA-256 of a request's route and labels, in a canonical JSON form (UTC times, sorted
    keys): equal for a retry of the same request, whatever its JSON spelling."""
    body = [label.model_dump(mode="json") for label in labels]
    canonical = json.dumps([route, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotency_record_key(key: str) -> str:
    """Where the answer to the request with ``key`` is kept (hashed: any key is a safe name)."""
    return f"{IDEMPOTENCY_PREFIX}/{hashlib.sha256(key.encode()).hexdigest()}.json"


def read_idempotent_answer(store: ObjectStore, key: str) -> tuple[str, JsonValue] | None:
    """(request fingerprint, answer) kept for ``key``; None when no request used it yet."""
    record_key = idempotency_record_key(key)
    if not store.exists(record_key):
        return None
    record = json.loads(store.read_bytes(record_key))
    return str(record["fingerprint"]), record["answer"]


def write_idempotent_answer(
    store: ObjectStore, key: str, fingerprint: str, answer: BaseModel
) -> None:
    """Keep the answer to the request with ``key`` (atomically, as every store write)."""
    record = {"fingerprint": fingerprint, "answer": answer.model_dump(mode="json")}
    store.write_bytes(idempotency_record_key(key), json.dumps(record).encode())
