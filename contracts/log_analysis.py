"""What ``vigil logs analyze`` reports: the JSON document, and the names both its writers
(the analysis, the CSV and HTML renderers) and its readers agree on.

One ``LogAnalysisReport`` per run: one ``FileAnalysis`` per input that could be read, and one
``SkippedInput`` per input that could not (missing, empty, binary). Line numbers are 1-based
lines of the input; a multi-line record is cited by its first line.
"""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.explanation import ANALYSIS_TYPES, AnalysisType

SCHEMA_VERSION = 1
# Most severe first: the order findings are ranked in.
SEVERITIES = ("critical", "high", "medium", "low", "info")
Severity = Literal["critical", "high", "medium", "low", "info"]
AnalysisTypeChoice = Literal[
    "auto", "general", "database", "memory", "network", "security", "performance", "critical"
]
ANALYSIS_TYPE_CHOICES = ("auto", *ANALYSIS_TYPES)
LLMProviderName = Literal["openai_compatible", "openai", "anthropic"]
# Where a finding comes from: the template and anomaly analysis, the LLM, or both (an LLM
# finding whose evidence is a deterministic finding's template confirms it).
FindingOrigin = Literal["deterministic", "llm", "deterministic+llm"]
FindingKind = Literal["error_template", "burst", "spike", "rare_template", "llm"]
FINDING_CSV_FIELDS = (
    "source",
    "rank",
    "id",
    "severity",
    "title",
    "kind",
    "origin",
    "confidence",
    "template_id",
    "template",
    "count",
    "first_line",
    "last_line",
    "first_seen",
    "last_seen",
    "example_lines",
    "likely_cause",
    "actions",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EvidenceLine(_Strict):
    """One line of the log, cited as evidence."""

    line: int = Field(ge=1, description="1-based line number (a record's first line).")
    text: str = Field(description="The record's first line, cut to a few hundred characters.")


class Evidence(_Strict):
    """A template's share of a finding: its occurrences, where and when they were."""

    template_id: int | None = Field(description="Template id (None: lines without one).")
    template: str | None = Field(description="Template text, ``<*>`` and ``<KIND>`` for values.")
    examples: list[EvidenceLine] = Field(min_length=1)
    count: int = Field(ge=1, description="Records of the template the finding covers.")
    first_line: int = Field(ge=1)
    last_line: int = Field(ge=1)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    windows: list[int] = Field(default_factory=list, description="Indices of the windows.")


class Finding(_Strict):
    """One problem the log shows, merged across windows."""

    id: str = Field(description="Stable within the report: D<n> deterministic, L<n> from the LLM.")
    title: str = Field(min_length=1)
    severity: Severity
    kind: FindingKind
    origin: FindingOrigin
    evidence: list[Evidence] = Field(min_length=1)
    likely_cause: str
    actions: list[str]
    confidence: float = Field(ge=0.0, le=1.0)
    llm_rank: int | None = Field(
        default=None, description="The LLM's rank of the finding (1 = most important)."
    )


class WindowStats(_Strict):
    """One sliding window: the records it covers and what it cost in tokens."""

    index: int = Field(ge=0)
    first_line: int = Field(ge=1)
    last_line: int = Field(ge=1)
    records: int = Field(ge=1, description="Records covered (repeats included).")
    lines: int = Field(ge=1, description="Input lines covered, continuation lines included.")
    entries: int = Field(ge=1, description="Collapsed entries: one per template in the window.")
    tokens: int = Field(ge=0, description="Tokens of the window's text, as the LLM sees it.")
    overlap_records: int = Field(ge=0, description="Records shared with the window before.")
    overlap_tokens: int = Field(ge=0, description="Tokens of those records' entries.")
    sent_to_llm: bool = False


class WindowSettings(_Strict):
    """How the windows were cut."""

    max_tokens: int
    overlap: float
    max_records: int
    tokenizer: str = Field(description="``server <url>`` or ``approximate``.")
    tokenizer_note: str | None = None


class AnalysisTypeResult(_Strict):
    """The analysis type: asked for, detected from the content, and the one used."""

    requested: AnalysisTypeChoice
    detected: AnalysisType
    used: AnalysisType
    confidence: float = Field(ge=0.0, le=1.0)
    scores: dict[str, float] = Field(description="Evidence per type (weighted matches).")


class InputStats(_Strict):
    """What reading and parsing made of the input."""

    format: str
    lines: int
    records: int
    continuation_lines: int
    skipped_too_long: int
    skipped_binary: int
    replaced_invalid_utf8: int
    templates: int
    levels: dict[str, int] = Field(description="Records per level (``none`` without one).")


class TimelineRow(_Strict):
    """A template's record count in every window (the HTML report's timeline)."""

    template_id: int
    template: str
    severity: Severity | None
    counts: list[int]


class LLMStatus(_Strict):
    """Whether the LLM took part, and if not why; the deterministic findings stand either way."""

    used: bool = Field(description="At least one window's answer passed the checks.")
    provider: LLMProviderName | None = None
    model: str | None = None
    base_url: str | None = None
    windows_sent: int = 0
    windows_answered: int = 0
    findings_added: int = 0
    findings_confirmed: int = 0
    findings_rejected: int = 0
    error: str | None = Field(
        default=None, description="Why the LLM gave nothing (unreachable, invalid answer, off)."
    )
    rejections: list[str] = Field(default_factory=list, description="Why answers were refused.")


class FileAnalysis(_Strict):
    """The analysis of one input."""

    source: str
    input: InputStats
    analysis_type: AnalysisTypeResult
    window_settings: WindowSettings
    windows: list[WindowStats]
    timeline: list[TimelineRow]
    findings: list[Finding]
    findings_omitted: int = Field(
        default=0, description="Deterministic findings past the configured maximum."
    )
    llm: LLMStatus
    seconds: float


class SkippedInput(_Strict):
    """An input that was not analysed, and why."""

    source: str
    reason: str


class LogAnalysisReport(_Strict):
    """Everything one ``vigil logs analyze`` run found."""

    schema_version: int = SCHEMA_VERSION
    generated_at: datetime
    files: list[FileAnalysis]
    skipped: list[SkippedInput]
