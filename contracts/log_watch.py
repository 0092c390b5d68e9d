"""What ``vigil logs watch`` reports, and what it reads from Kinesis.

One ``LogWatchWindow`` per closed window (``--format jsonl`` prints one per line): counts per
template, the anomalies found, and, when the explainer was asked, its answer. Both the
watcher (``telemetry.logs.watch``) and its readers (the TUI, tests, whoever tails the JSON
lines) import these models, so a field has one name on both sides.

``SubscriptionEnvelope`` is the document CloudWatch Logs writes into each Kinesis record of a
subscription filter (gzipped JSON, as AWS delivers it): ``DATA_MESSAGE`` records carry log
events, ``CONTROL_MESSAGE`` records are CloudWatch's own health checks of the destination.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.log_analysis import Severity

SCHEMA_VERSION = 1
# Why a window is anomalous, in the order a template flagged twice is listed by.
WATCH_ANOMALY_KINDS = ("new_template", "spike", "error_burst")
WatchAnomalyKind = Literal["new_template", "spike", "error_burst"]
WatchSourceKind = Literal["file", "stdin", "kinesis"]
ExplanationStatus = Literal["explained", "degraded", "unavailable"]
# The model name a window's explanation request carries (``ExplainRequest.model``).
WATCH_MODEL_NAME = "vigil-logs-watch"
MESSAGE_TYPES = ("DATA_MESSAGE", "CONTROL_MESSAGE")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WatchExample(_Strict):
    """One line of the source, cited as an example of a template."""

    line: int = Field(ge=1, description="Line number in its file, or the event's ordinal.")
    origin: str = Field(description="The file, 'stdin', or logGroup/logStream of the event.")
    text: str = Field(description="The record's first line as written, cut to a few hundred chars.")


class WatchedTemplate(_Strict):
    """A template's records in the window."""

    template_id: int = Field(ge=1, description="Stable id in the template miner's state.")
    template: str = Field(description="Template text, ``<*>`` and ``<KIND>`` for values.")
    count: int = Field(ge=1, description="Its records in the window.")
    level: str | None = Field(description="The most severe level among them (None: no level).")
    new: bool = Field(description="First seen in this window.")


class WatchAnomaly(_Strict):
    """A template that made the window anomalous, and why."""

    kind: WatchAnomalyKind
    severity: Severity
    template_id: int = Field(ge=1)
    template: str
    level: str | None
    count: int = Field(ge=1, description="Its records in the window.")
    expected: float = Field(
        ge=0.0,
        description="Its usual count in a window (new_template: 0; error_burst: the stream's "
        "usual error records in a window).",
    )
    detail: str = Field(description="One sentence a person reads: what crossed which line.")
    examples: list[WatchExample] = Field(min_length=1)


class WatchExplanation(_Strict):
    """The explainer's answer for an anomalous window (``POST /explain``)."""

    status: ExplanationStatus = Field(
        description="explained; degraded (the explainer answered from a fallback); "
        "unavailable (it could not be reached or refused the request: see reason)."
    )
    root_cause: str | None = None
    impact: str | None = None
    actions: list[str] = Field(default_factory=list)
    reason: str | None = Field(default=None, description="Why degraded or unavailable.")


class LogWatchWindow(_Strict):
    """One closed window of a watched source."""

    schema_version: int = SCHEMA_VERSION
    source: str = Field(description="What is watched: a path, '-' or kinesis://STREAM.")
    source_kind: WatchSourceKind
    index: int = Field(ge=0, description="Windows closed before this one by this watcher.")
    start: datetime
    end: datetime
    lines: int = Field(ge=0, description="Lines (events for Kinesis) read in the window.")
    records: int = Field(ge=0, description="Records they made (stack traces joined).")
    skipped_lines: int = Field(ge=0, description="Too long or binary: counted, not parsed.")
    templates_known: int = Field(ge=0, description="Templates the miner knows after it.")
    learning: bool = Field(
        description="The watcher started without any template and is still learning the "
        "stream's usual templates: new templates are not reported as anomalies yet."
    )
    lag_seconds: float = Field(ge=0.0, description="How far behind its source the watcher is.")
    templates: list[WatchedTemplate] = Field(description="Most frequent first.")
    anomalies: list[WatchAnomaly] = Field(description="Most severe first.")
    explanation: WatchExplanation | None = Field(
        default=None, description="Set when an anomalous window was sent to the explainer."
    )


class CloudWatchLogEvent(BaseModel):
    """One log event of a subscription record. AWS writes the id as a string of digits; the
    emulator as a number, read as the same string."""

    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)

    id: str
    timestamp: int = Field(description="Milliseconds since the epoch (UTC).")
    message: str


class SubscriptionEnvelope(BaseModel):
    """A Kinesis record of a CloudWatch Logs subscription filter, decompressed."""

    model_config = ConfigDict(extra="ignore")

    messageType: Literal["DATA_MESSAGE", "CONTROL_MESSAGE"]  # noqa: N815 (AWS's field name)
    owner: str
    logGroup: str  # noqa: N815
    logStream: str  # noqa: N815
    subscriptionFilters: list[str]  # noqa: N815
    logEvents: list[CloudWatchLogEvent]  # noqa: N815
