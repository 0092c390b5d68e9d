"""Deterministic findings: error templates, bursts and spikes, rare templates.

These come from the templates and the anomaly detector alone, so they are in every report,
with or without an LLM:

- **error templates**: a template is an error when ``template_stats`` rates it one (a rule of
  ``remedies`` claims it, its records carry level WARN or above, or its words say so).
  Templates one rule claims make one finding (every ``Failed password`` variant is one
  "Failed authentication attempts"); the others one finding each. A finding covering at
  least ``VOLUME_SHARE`` of the records (and ``VOLUME_MIN`` of them) is raised one severity
  step, up to high.
- **bursts and spikes**: ``anomalies.LogAnomalyDetector`` over the records in time order, a
  record without a level taking its template's (an error word counts as ERROR). Consecutive
  detector windows with an error burst make one burst finding, and the windows where one
  template spikes make one spike finding, each kept when its peak window holds at least
  ``PEAK_OVER_MEAN`` times the log's mean per window (the detector knows nothing in its
  first windows, so a log's first minute would otherwise always "burst"). A log without
  timestamps has no bursts.
- **rare templates**: templates of ``rare_max_count`` records or fewer that are no error, in
  a log of at least ``RARE_MIN_RECORDS`` records: one finding listing them, latest first.
"""

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from contracts.log_analysis import SEVERITIES, Evidence, Finding, FindingKind, Severity
from telemetry.logs.analysis.remedies import GENERIC_CAUSE, generic_actions
from telemetry.logs.analysis.template_stats import (
    MAX_EXAMPLES,
    NAMED_VALUE,
    SEVERITY_RANK,
    TemplateStats,
    evidence_line,
    template_evidence,
)
from telemetry.logs.anomalies import Alert, DetectorSettings, LogAnomalyDetector, WindowedRecord
from telemetry.logs.records import LogRecord
from telemetry.logs.templates import MinedRecord

SEVERITY_LEVEL: dict[Severity, str] = {
    "critical": "CRITICAL",
    "high": "ERROR",
    "medium": "ERROR",
    "low": "WARN",
}
TOP_VALUE_SHARE = 0.2
TOP_VALUE_MIN = 5
VOLUME_SHARE = 0.10
VOLUME_MIN = 100
PEAK_OVER_MEAN = 3.0
RARE_MIN_RECORDS = 50
MAX_EVIDENCE = 5
MAX_RARE_EVIDENCE = 10


def inferred_level(record: LogRecord, severity: Severity | None) -> str | None:
    """The record's level, or its template's severity as a level when it has none."""
    if record.level is not None or severity is None or severity == "info":
        return record.level
    return SEVERITY_LEVEL[severity]


@dataclass
class _Draft:
    """A finding before it is numbered."""

    title: str
    severity: Severity
    kind: FindingKind
    evidence: list[Evidence]
    cause: str
    actions: list[str]
    confidence: float

    @property
    def count(self) -> int:
        return sum(item.count for item in self.evidence)


def deterministic_findings(
    mined: Sequence[MinedRecord],
    templates: Sequence[TemplateStats],
    *,
    rare_max_count: int,
    burst_window_s: float,
    max_findings: int,
) -> tuple[list[Finding], int]:
    """Every deterministic finding of a log, most severe first, numbered ``D1``, ``D2``…

    Args:
        mined: The records with their templates, in input order.
        templates: ``collect_templates`` of the same records.
        rare_max_count: A template of at most this many records is rare.
        burst_window_s: The detector's window, in seconds.
        max_findings: Findings kept (the most severe, then the most frequent).

    Returns:
        The findings, and how many were left out past ``max_findings``.
    """
    drafts = _error_findings(templates, len(mined))
    drafts += _burst_findings(mined, templates, burst_window_s)
    rare = _rare_finding(templates, len(mined), rare_max_count)
    if rare is not None:
        drafts.append(rare)
    drafts.sort(key=lambda d: (SEVERITY_RANK[d.severity], -d.count))
    kept = drafts[:max_findings]
    findings = [
        Finding(
            id=f"D{number}",
            title=draft.title,
            severity=draft.severity,
            kind=draft.kind,
            origin="deterministic",
            evidence=draft.evidence,
            likely_cause=draft.cause,
            actions=draft.actions,
            confidence=draft.confidence,
        )
        for number, draft in enumerate(kept, 1)
    ]
    return findings, len(drafts) - len(kept)


def _error_findings(templates: Sequence[TemplateStats], records: int) -> list[_Draft]:
    groups: dict[str, list[TemplateStats]] = defaultdict(list)
    for entry in templates:
        if entry.severity is None:
            continue
        key = entry.remedy.rule if entry.remedy is not None else f"template-{entry.template_id}"
        groups[key].append(entry)
    drafts = []
    for members in groups.values():
        members.sort(key=lambda entry: -entry.count)
        severity = min((entry.severity for entry in members if entry.severity), key=_rank)
        count = sum(entry.count for entry in members)
        if count >= max(VOLUME_MIN, VOLUME_SHARE * records) and severity in ("medium", "low"):
            severity = SEVERITIES[SEVERITY_RANK[severity] - 1]  # type: ignore[assignment]
        remedy = members[0].remedy
        lead = members[0]
        if remedy is not None:
            title, cause, actions = remedy.title, remedy.cause, list(remedy.actions)
            confidence = 0.85
        else:
            noun = "Warnings" if _rank(severity) >= SEVERITY_RANK["medium"] else "Errors"
            if lead.levels.get("CRITICAL"):
                noun = "Critical records"
            title = f"{noun}: {_shorten(lead.text, 90)}"
            if lead.detail:
                title += f" ({_shorten(lead.detail, 60)})"
            cause, actions = GENERIC_CAUSE, generic_actions(lead.first_line)
            confidence = 0.75 if lead.basis == "level" else 0.6
        cause += top_values(sum((entry.values for entry in members), Counter()), count)
        drafts.append(
            _Draft(
                title,
                severity,
                "error_template",
                [template_evidence(entry) for entry in members[:MAX_EVIDENCE]],
                cause,
                actions,
                confidence,
            )
        )
    return drafts


def _burst_findings(
    mined: Sequence[MinedRecord], templates: Sequence[TemplateStats], window_s: float
) -> list[_Draft]:
    stamped = [item.record.timestamp for item in mined if item.record.timestamp is not None]
    if len(stamped) * 2 < len(mined) or not stamped:
        return []
    severities = {entry.template_id: entry.severity for entry in templates}
    detector = LogAnomalyDetector(DetectorSettings(window=window_s))
    alerts: list[Alert] = []
    errors = 0
    for item in mined:
        record = item.record
        template_id = item.template.template_id
        level = inferred_level(record, severities.get(template_id))
        if level != record.level:
            record = record._replace(level=level)
        alerts.extend(detector.observe(WindowedRecord(record, template_id)))
        if level in ("ERROR", "CRITICAL"):
            errors += 1
    alerts.extend(detector.flush())
    span = (max(stamped) - min(stamped)).total_seconds()
    slots = max(1, int(span // window_s) + 1)
    by_line = {item.record.line: item for item in mined}
    templates_by_id = {entry.template_id: entry for entry in templates}
    drafts = []
    mean_errors = errors / slots
    burst_windows: set[datetime] = set()
    for episode in _episodes(
        [alert for alert in alerts if "error_burst" in alert.signals], window_s
    ):
        peak = _peak(episode)
        if peak < PEAK_OVER_MEAN * mean_errors:
            continue
        burst_windows.update(alert.window_start for alert in episode)
        severity: Severity = (
            "critical"
            if any(by_line[a.line].record.level == "CRITICAL" for a in episode)
            else "high"
        )
        start, end = episode[0].window_start, episode[-1].window_start
        drafts.append(
            _Draft(
                f"Error burst {start:%Y-%m-%d %H:%M}"
                + (f"–{end:%H:%M}" if end != start else "")
                + f" UTC: {len(episode)} error records (peak {peak} in {window_s:g} s)",
                severity,
                "burst",
                _alert_evidence(episode, by_line, templates_by_id),
                f"Error records came far faster than the log's usual rate ({mean_errors:.1f} "
                f"per {window_s:g} s window): something failed at that time."
                + top_values(
                    Counter(
                        value
                        for alert in episode
                        for value in by_line[alert.line].parameters
                        if NAMED_VALUE.match(value)
                    ),
                    len(episode),
                ),
                [
                    f"Look at what happened at {start:%H:%M} UTC: deploys, restarts, traffic "
                    "changes, a dependency failing.",
                    "Start from the most frequent template of the burst.",
                ],
                0.7,
            )
        )
    # A spike inside a burst is part of the burst; the others are grouped like error
    # templates, by the rule that claims their template.
    spikes: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        if "spike" in alert.signals and alert.window_start not in burst_windows:
            entry = templates_by_id[alert.template_id]
            key = entry.remedy.rule if entry.remedy else f"template-{alert.template_id}"
            spikes[key].append(alert)
    for spiking in spikes.values():
        members = Counter(alert.template_id for alert in spiking)
        entry = templates_by_id[members.most_common(1)[0][0]]
        mean = sum(templates_by_id[tid].count for tid in members) / slots
        peak = _peak(spiking)
        if peak < PEAK_OVER_MEAN * mean:
            continue
        spike_severity: Severity = "high" if entry.severity in ("critical", "high") else "medium"
        name = entry.remedy.title if entry.remedy else _shorten(entry.text, 80)
        drafts.append(
            _Draft(
                f"Spike: {name} ({peak} in one {window_s:g} s window, usually {mean:.1f})",
                spike_severity,
                "spike",
                _alert_evidence(spiking, by_line, templates_by_id),
                "The event's rate rose far above its usual rate: it suddenly happened much "
                "more often.",
                [
                    f"Find what drove it at {spiking[0].window_start:%H:%M} UTC.",
                    "Check whether other templates rose at the same time.",
                ],
                0.65,
            )
        )
    return drafts


def top_values(values: Counter[str], records: int) -> str:
    """`` Most frequent values: …`` for the values in at least ``TOP_VALUE_SHARE`` of the
    records (at most three), or ``""``."""
    top = [
        f"{value} ({count / records:.0%})"
        for value, count in values.most_common(3)
        if count >= TOP_VALUE_MIN and count >= TOP_VALUE_SHARE * records
    ]
    return f" Most frequent values: {', '.join(top)}." if top else ""


def _episodes(alerts: list[Alert], window_s: float) -> list[list[Alert]]:
    """Alerts grouped into runs of consecutive detector windows."""
    episodes: list[list[Alert]] = []
    for alert in sorted(alerts, key=lambda a: (a.window_start, a.line)):
        if episodes:
            gap = (alert.window_start - episodes[-1][-1].window_start).total_seconds()
            if gap <= window_s:
                episodes[-1].append(alert)
                continue
        episodes.append([alert])
    return episodes


def _peak(alerts: list[Alert]) -> int:
    """Alerts in the busiest detector window."""
    return Counter(alert.window_start for alert in alerts).most_common(1)[0][1]


def _alert_evidence(
    alerts: list[Alert],
    by_line: dict[int, MinedRecord],
    templates: dict[int, TemplateStats],
) -> list[Evidence]:
    grouped: dict[int, list[Alert]] = defaultdict(list)
    for alert in alerts:
        grouped[alert.template_id].append(alert)
    evidence = []
    for template_id, members in sorted(grouped.items(), key=lambda g: -len(g[1]))[:MAX_EVIDENCE]:
        records = [by_line[alert.line] for alert in members]
        entry = templates[template_id]
        evidence.append(
            Evidence(
                template_id=template_id,
                template=entry.text,
                examples=[evidence_line(item) for item in _distinct(records)[:MAX_EXAMPLES]],
                count=len(members),
                first_line=records[0].record.line,
                last_line=records[-1].record.line,
                first_seen=records[0].record.timestamp,
                last_seen=records[-1].record.timestamp,
                windows=entry.windows,
            )
        )
    return evidence


def _rare_finding(
    templates: Sequence[TemplateStats], records: int, rare_max_count: int
) -> _Draft | None:
    if records < RARE_MIN_RECORDS:
        return None
    rare = [e for e in templates if e.severity is None and e.count <= rare_max_count]
    if not rare:
        return None
    rare.sort(key=lambda entry: -entry.first_line)
    late = [entry for entry in rare if entry.first_line > records * 0.75]
    return _Draft(
        f"{len(rare)} rare template{'s' if len(rare) > 1 else ''} (at most {rare_max_count} "
        f"records each)",
        "low" if late else "info",
        "rare_template",
        [template_evidence(entry) for entry in rare[:MAX_RARE_EVIDENCE]],
        "Events this log shows only once or twice: an unusual code path (a first login, a "
        "one-off handler, a reload) that may or may not be expected.",
        [
            "Read each example and confirm it is expected.",
            "Pay most attention to those that appear late in the log (listed first).",
        ],
        0.5,
    )


def _distinct(records: list[MinedRecord]) -> list[MinedRecord]:
    seen: set[str] = set()
    kept = []
    for item in records:
        if item.record.message not in seen:
            seen.add(item.record.message)
            kept.append(item)
    return kept


def _rank(severity: Severity | None) -> int:
    return SEVERITY_RANK[severity] if severity is not None else len(SEVERITIES)


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
