"""Template statistics: every template of a log counted, rated and turned into evidence.

``collect_templates`` gathers each template's count, examples, levels, windows and named
parameter values, and rates it: a template is an error when a rule of ``remedies`` claims it,
its records carry level WARN or above, or its words say so (``ERROR_WORDS``, ``WARN_WORDS``;
syslog and many applications write no level). The findings, the timeline and the LLM pass all
read these statistics.
"""

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from contracts.log_analysis import SEVERITIES, Evidence, EvidenceLine, Severity
from telemetry.logs.analysis.remedies import Remedy, find_remedy
from telemetry.logs.analysis.windows import Window
from telemetry.logs.records import LogRecord
from telemetry.logs.templates import MinedRecord

SEVERITY_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}
LEVEL_SEVERITY: dict[str, Severity] = {"CRITICAL": "critical", "ERROR": "high", "WARN": "medium"}
ERROR_WORDS = re.compile(
    r"\b(errors?|fail(ed|ure|ing|s)?|fatal|exception|denied|refused|abort(ed|ing)?|"
    r"crash(ed)?|unable|cannot|could not|timed out|timeout)\b",
    re.IGNORECASE,
)
WARN_WORDS = re.compile(
    r"\b(warn(ing)?|deprecated|retry(ing)?|invalid|unknown|not found|missing|slow)\b",
    re.IGNORECASE,
)
EXCEPTION_LINE = re.compile(
    r"(?:Caused by: )?(?:[\w$]+\.)*[\w$]*(?:Exception|Error|Throwable|Panic)\b(?::|$)"
)
MAX_DETAIL_LINES = 8
# Parameter values worth naming in a cause: addresses, hosts, users, paths (not bare numbers,
# which are ports, ids and durations). Each template counts at most MAX_VALUES distinct ones.
NAMED_VALUE = re.compile(r"^(?=.*[A-Za-z.:/])[^\s]{3,80}$")
MAX_VALUES = 256
MAX_EXAMPLES = 3
EXAMPLE_CHARS = 300


@dataclass
class TemplateStats:
    """One template over the whole log."""

    template_id: int
    text: str
    count: int = 0
    first: MinedRecord | None = None
    last: MinedRecord | None = None
    examples: list[MinedRecord] = field(default_factory=list)
    levels: Counter[str] = field(default_factory=Counter)
    windows: list[int] = field(default_factory=list)
    values: Counter[str] = field(default_factory=Counter)
    detail: str = ""
    severity: Severity | None = None
    remedy: Remedy | None = None
    # How the severity was found: rule, level or words (the finding's confidence follows).
    basis: str = ""

    @property
    def words(self) -> str:
        """What rules and the classifier read: the template and the exception its first
        multi-line record names (``request failed`` + ``java.lang.OutOfMemoryError: …``)."""
        return f"{self.text}\n{self.detail}" if self.detail else self.text

    @property
    def first_line(self) -> int:
        """The first record's line."""
        assert self.first is not None
        return self.first.record.line

    @property
    def last_line(self) -> int:
        """The last record's line."""
        assert self.last is not None
        return self.last.record.line


def collect_templates(
    mined: Sequence[MinedRecord], windows: Sequence[Window]
) -> list[TemplateStats]:
    """Counts, examples, levels and windows of every template, in order of first appearance.

    Args:
        mined: The records with their templates, in input order.
        windows: The log's windows.

    Returns:
        One ``TemplateStats`` per template, its severity and rule filled in.
    """
    stats: dict[int, TemplateStats] = {}
    for item in mined:
        template_id = item.template.template_id
        entry = stats.get(template_id)
        if entry is None:
            entry = stats[template_id] = TemplateStats(template_id, item.template.text)
            entry.first = item
            entry.detail = exception_line(item.record)
        entry.count += 1
        entry.last = item
        if len(entry.examples) < MAX_EXAMPLES - 1 and (
            not entry.examples or entry.examples[-1].record.message != item.record.message
        ):
            entry.examples.append(item)
        entry.levels[item.record.level or "none"] += 1
        values = entry.values
        for value in item.parameters:
            if (value in values or len(values) < MAX_VALUES) and NAMED_VALUE.match(value):
                values[value] += 1
    for window in windows:
        for template_id in window.counts:
            stats[template_id].windows.append(window.index)
    for entry in stats.values():
        _rate(entry)
    return list(stats.values())


def _rate(entry: TemplateStats) -> None:
    """The template's severity and rule (see the module docstring)."""
    assert entry.first is not None
    text = f"{entry.words}\n{entry.first.record.first_line}"
    candidates: list[tuple[Severity, str]] = []
    entry.remedy = find_remedy(text)
    if entry.remedy is not None:
        candidates.append((entry.remedy.severity, "rule"))
    for level, severity in LEVEL_SEVERITY.items():
        if entry.levels.get(level):
            candidates.append((severity, "level"))
            break
    if ERROR_WORDS.search(entry.words):
        candidates.append(("medium", "words"))
    elif WARN_WORDS.search(entry.words):
        candidates.append(("low", "words"))
    if candidates:
        entry.severity, entry.basis = min(candidates, key=lambda c: SEVERITY_RANK[c[0]])


def exception_line(record: LogRecord) -> str:
    """The first continuation line of a multi-line record that names an exception or error
    (``java.lang.OutOfMemoryError: Java heap space``, ``ValueError: …``), or ``""``."""
    if "\n" not in record.message:
        return ""
    for line in record.message.split("\n")[1:MAX_DETAIL_LINES]:
        match = EXCEPTION_LINE.match(line.strip())
        if match:
            return line.strip()[:EXAMPLE_CHARS]
    return ""


def template_evidence(entry: TemplateStats) -> Evidence:
    """A template's evidence: its examples, count, first and last line and time."""
    assert entry.first is not None
    assert entry.last is not None
    examples = list(entry.examples)
    if entry.last is not examples[-1]:
        examples.append(entry.last)
    return Evidence(
        template_id=entry.template_id,
        template=entry.text,
        examples=[evidence_line(item) for item in examples],
        count=entry.count,
        first_line=entry.first_line,
        last_line=entry.last_line,
        first_seen=entry.first.record.timestamp,
        last_seen=entry.last.record.timestamp,
        windows=entry.windows,
    )


def record_summary(record: LogRecord) -> str:
    """A record on one line: level, component and the message's first line, cut short."""
    parts = [record.level or "", f"{record.component}:" if record.component else ""]
    text = " ".join(part for part in (*parts, record.first_line) if part)
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "…"


def evidence_line(item: MinedRecord) -> EvidenceLine:
    return EvidenceLine(line=item.record.line, text=record_summary(item.record))
