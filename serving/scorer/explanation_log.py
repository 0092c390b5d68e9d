"""The explanations the scorer received, kept in the object store for reports and audits.

``scorer/explanations/YYYY-MM-DD/HHMMSS_<instance>.json``: one file per answered
``POST /explain`` (an instance is explained at most once per window, so a replay of the same
range overwrites rather than duplicates), holding the request the scorer sent and the
service's answer as it came. ``<instance>`` is the instance id through
``contracts.store.encode_key_segment``: the id comes from outside (a CloudWatch log-stream
name), so ``../../models/champion`` becomes one harmless segment instead of a path. The
answer is kept unvalidated: a reader checks it against
``contracts.explanation.ExplainResponse`` and decides what to do with one that fails.
"""

import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel

from contracts.explanation import ExplainRequest
from contracts.store import ObjectStore, encode_key_segment

EXPLANATIONS_PREFIX = "scorer/explanations"


class LoggedExplanation(BaseModel):
    """One explanation: what was asked and what came back."""

    request: ExplainRequest
    response: dict[str, Any]


def write_explanation(store: ObjectStore, request: ExplainRequest, response: dict[str, Any]) -> str:
    """Keep one answered request; returns the key written."""
    start = request.window_start
    instance = encode_key_segment(request.instance_id)
    key = f"{EXPLANATIONS_PREFIX}/{start:%Y-%m-%d}/{start:%H%M%S}_{instance}.json"
    record = LoggedExplanation(request=request, response=response)
    store.write_bytes(key, record.model_dump_json().encode())
    return key


def read_explanations(
    store: ObjectStore, start: datetime, end: datetime
) -> list[LoggedExplanation]:
    """The explanations of the windows starting in ``[start, end)``, oldest window first."""
    keys = []
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    while day < end:
        keys += store.list_keys(f"{EXPLANATIONS_PREFIX}/{day:%Y-%m-%d}/", ".json")
        day += timedelta(days=1)
    records = [LoggedExplanation.model_validate(json.loads(store.read_bytes(k))) for k in keys]
    kept = [r for r in records if start <= r.request.window_start < end]
    return sorted(kept, key=lambda r: (r.request.window_start, r.request.instance_id))
