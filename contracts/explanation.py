"""The Explanation API (DESIGN.md): what the scorer sends to ``POST /explain`` and gets back."""

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
