"""The Explanation API: what the scorer sends to ``POST /explain`` and gets back
(docs/architecture.md, APIs)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contracts.api_types import IsoDateTime

ANALYSIS_TYPES = ("general", "database", "memory", "network", "security", "performance", "critical")
AnalysisType = Literal[
    "general", "database", "memory", "network", "security", "performance", "critical"
]

MAX_LOG_LINES = 200
# ``POST /explain`` answers within this many seconds: past it the LLM is given up and the
# runbook answer is returned, degraded. Callers wait somewhat longer than this.
ANSWER_DEADLINE_SECONDS = 45.0
MAX_LOG_LINE_CHARS = 2_000
MAX_FEATURES = 50
MAX_LOG_EVIDENCE = 20
MAX_EVIDENCE_EXAMPLES = 5
# What made a log template evidence, in the order a template flagged twice is named by.
LOG_EVIDENCE_KINDS = ("novel", "spike", "error_burst")
LogEvidenceKind = Literal["novel", "spike", "error_burst"]


class FeatureContribution(BaseModel):
    """One of the features that pushed the anomaly score up, with its value and usual level.

    Numbers are strict: a JSON ``true`` or ``"0.5"`` is refused, as the schema says, not coerced.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="Feature column name.")
    value: float = Field(
        strict=True, allow_inf_nan=False, description="The feature's value in the window."
    )
    baseline: float | None = Field(
        default=None,
        strict=True,
        allow_inf_nan=False,
        description="The instance's usual value, if known.",
    )
    contribution: float | None = Field(
        default=None,
        strict=True,
        allow_inf_nan=False,
        description="Its share of the score (e.g. SHAP).",
    )


class LogEvidence(BaseModel):
    """A log template that stood out in the anomaly's window, with example lines.

    ``novel``: not seen on the instance before the window (in the history the sender read);
    ``spike``: far more frequent than its own history; ``error_burst``: one of the error
    templates of a burst of errors (``telemetry.logs.anomalies``).
    """

    model_config = ConfigDict(extra="forbid")

    template: str = Field(
        min_length=1,
        max_length=MAX_LOG_LINE_CHARS,
        description="The template: the line with its variables masked (<*>, <NUM>, <IP>...).",
    )
    template_id: int = Field(
        strict=True, ge=0, description="The template's id in the sender's template miner."
    )
    kind: LogEvidenceKind
    level: str | None = Field(
        default=None, max_length=16, description="Its records' level; None when they name none."
    )
    count: int = Field(strict=True, ge=1, description="Its records in the window.")
    baseline: float = Field(
        strict=True,
        ge=0.0,
        allow_inf_nan=False,
        description="Its usual count in a window as long, from the history before it.",
    )
    examples: list[str] = Field(
        default_factory=list,
        max_length=MAX_EVIDENCE_EXAMPLES,
        description=f"Example lines of the window (each at most {MAX_LOG_LINE_CHARS} chars).",
    )

    @model_validator(mode="after")
    def _check(self) -> "LogEvidence":
        if any(len(line) > MAX_LOG_LINE_CHARS for line in self.examples):
            raise ValueError(f"an example exceeds {MAX_LOG_LINE_CHARS} characters")
        return self


class ExplainRequest(BaseModel):
    """An anomaly the scorer is confident about."""

    model_config = ConfigDict(extra="forbid")

    instance_id: str = Field(min_length=1, max_length=128)
    service: str | None = Field(
        default=None,
        max_length=64,
        description="The instance's source or service (ec2, rds, lambda, alb, app); preferred "
        "in retrieval.",
    )
    window_start: IsoDateTime
    window_end: IsoDateTime
    score: float = Field(
        strict=True, ge=0.0, le=1.0, description="Anomaly probability from the model."
    )
    model: str = Field(min_length=1, max_length=128, description="Model that scored it.")
    top_features: list[FeatureContribution] = Field(default_factory=list, max_length=MAX_FEATURES)
    log_lines: list[str] = Field(
        default_factory=list,
        max_length=MAX_LOG_LINES,
        description=f"Recent log lines of the instance (each at most {MAX_LOG_LINE_CHARS} chars).",
    )
    log_evidence: list[LogEvidence] = Field(
        default_factory=list,
        max_length=MAX_LOG_EVIDENCE,
        description="The window's novel and spiking log templates, most telling first.",
    )

    @model_validator(mode="after")
    def _check(self) -> "ExplainRequest":
        if self.window_end < self.window_start:
            raise ValueError("window_end is before window_start")
        too_long = [i for i, line in enumerate(self.log_lines) if len(line) > MAX_LOG_LINE_CHARS]
        if too_long:
            raise ValueError(f"log_lines {too_long[:5]} exceed {MAX_LOG_LINE_CHARS} characters")
        return self


class ContextItem(BaseModel):
    """A retrieved log line, past incident or runbook section, with its similarity score."""

    kind: Literal["log", "incident", "runbook"]
    text: str
    score: float
    document: str = Field(description="Runbook file, or the raw-store key the log came from.")
    section: str | None = None
    instance_id: str | None = None
    service: str | None = None
    timestamp: datetime | None = None
    incident_type: str | None = None


class ExplainResponse(BaseModel):
    """A grounded explanation; ``degraded`` says a fallback was used and ``degraded_reason`` why."""

    root_cause: str
    impact: str
    actions: list[str]
    prevention: list[str]
    analysis_type: AnalysisType
    context: list[ContextItem]
    degraded: bool
    degraded_reason: str | None = None
