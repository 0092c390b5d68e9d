"""A report as a terminal reads it (rich), as CSV rows of findings, and the HTML timeline's
numbers. The JSON document is the report model itself (``contracts.log_analysis``); the HTML
page is rendered by the CLI from its template."""

import csv
import math
from collections.abc import Iterator
from typing import TextIO

from rich import box
from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from contracts.log_analysis import (
    FINDING_CSV_FIELDS,
    FileAnalysis,
    Finding,
    LogAnalysisReport,
    TimelineRow,
)

SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}
ORIGIN_SHORT = {"deterministic": "det", "llm": "llm", "deterministic+llm": "det+llm"}
DETAILED_FINDINGS = 10
LISTED_WINDOWS = 12


def print_report(report: LogAnalysisReport, console: Console) -> None:
    """The report for a terminal: per file a summary, its windows and its findings."""
    for analysis in report.files:
        console.print(_summary(analysis))
        if len(analysis.windows) <= LISTED_WINDOWS:
            console.print(_windows_table(analysis))
        console.print(_findings_table(analysis))
        for finding in analysis.findings[:DETAILED_FINDINGS]:
            console.print(_details(finding))
        if len(analysis.findings) > DETAILED_FINDINGS:
            rest = len(analysis.findings) - DETAILED_FINDINGS
            console.print(f"[dim]… {rest} more findings: --format json has them all[/dim]")
    for item in report.skipped:
        console.print(f"[bold red]skipped[/bold red] {escape(item.source)}: {escape(item.reason)}")


def _summary(analysis: FileAnalysis) -> Panel:
    kind = analysis.analysis_type
    stats = analysis.input
    settings = analysis.window_settings
    windows = analysis.windows
    tokens = [window.tokens for window in windows]
    llm = analysis.llm
    if llm.used:
        llm_line = (
            f"LLM: used ({llm.provider}, {llm.model}): {llm.windows_answered}/{llm.windows_sent} "
            f"windows answered, {llm.findings_added} findings added, "
            f"{llm.findings_confirmed} confirmed, {llm.findings_rejected} rejected"
        )
    else:
        llm_line = f"LLM: not used — {llm.error}"
    skipped = stats.skipped_binary + stats.skipped_too_long
    lines = [
        f"type [bold]{kind.used}[/bold]"
        + (
            f" (detected, confidence {kind.confidence:.2f})"
            if kind.requested == "auto"
            else f" (asked; detected {kind.detected}, confidence {kind.confidence:.2f})"
        ),
        f"{stats.lines:,} lines → {stats.records:,} records ({stats.format}), "
        f"{stats.templates:,} templates, {stats.continuation_lines:,} continuation lines joined"
        + (f", {skipped:,} lines skipped" if skipped else ""),
        f"{len(windows)} windows of ≤ {settings.max_tokens:,} tokens ({settings.tokenizer} "
        f"tokenizer), overlap {settings.overlap:.0%}: {min(tokens):,}–{max(tokens):,} tokens, "
        f"{min(w.records for w in windows):,}–{max(w.records for w in windows):,} records each",
        llm_line,
    ]
    if settings.tokenizer_note:
        lines.append(f"[dim]{escape(settings.tokenizer_note)}[/dim]")
    return Panel(
        "\n".join(lines[:1] + [escape(line) for line in lines[1:]]),
        title=escape(analysis.source),
        title_align="left",
    )


def _windows_table(analysis: FileAnalysis) -> Table:
    table = Table(
        "window",
        "lines",
        "records",
        "entries",
        "tokens",
        "overlap",
        "LLM",
        title="windows",
        box=box.SIMPLE_HEAD,
    )
    for window in analysis.windows:
        table.add_row(
            str(window.index),
            f"{window.first_line:,}–{window.last_line:,}",
            f"{window.records:,}",
            f"{window.entries:,}",
            f"{window.tokens:,}",
            f"{window.overlap_records:,} rec / {window.overlap_tokens:,} tok",
            "sent" if window.sent_to_llm else "",
        )
    return table


def _findings_table(analysis: FileAnalysis) -> Table:
    table = Table(title=f"findings ({len(analysis.findings)})", box=box.SIMPLE_HEAD)
    table.add_column("id", no_wrap=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("finding", ratio=1, min_width=24)
    table.add_column("count", justify="right", no_wrap=True)
    table.add_column("lines", no_wrap=True)
    table.add_column("conf.", no_wrap=True)
    table.add_column("origin", no_wrap=True)
    for finding in analysis.findings:
        first, last, count = finding_span(finding)
        table.add_row(
            finding.id,
            Text(finding.severity, style=SEVERITY_STYLE[finding.severity]),
            escape(finding.title),
            f"{count:,}",
            f"{first:,}–{last:,}" if first != last else f"{first:,}",
            f"{finding.confidence:.2f}",
            ORIGIN_SHORT[finding.origin],
        )
    if analysis.findings_omitted:
        table.caption = f"{analysis.findings_omitted} less severe findings left out"
    return table


def _details(finding: Finding) -> Group:
    head = Text.assemble(
        (f"{finding.id} ", "bold"),
        (finding.severity, SEVERITY_STYLE[finding.severity]),
        f" {finding.title}",
    )
    lines: list[Text | str] = [head]
    for evidence in finding.evidence[:3]:
        for example in evidence.examples[:2]:
            lines.append(
                Text(
                    f"    L{example.line}: {example.text}",
                    style="dim",
                    overflow="ellipsis",
                    no_wrap=True,
                )
            )
    lines.append(Text(f"  cause: {finding.likely_cause}"))
    for action in finding.actions:
        lines.append(Text(f"  - {action}"))
    return Group(*lines)


def finding_span(finding: Finding) -> tuple[int, int, int]:
    """First line, last line and record count over a finding's evidence."""
    return (
        min(item.first_line for item in finding.evidence),
        max(item.last_line for item in finding.evidence),
        sum(item.count for item in finding.evidence),
    )


def finding_rows(report: LogAnalysisReport) -> Iterator[dict[str, object]]:
    """One CSV row per finding (``FINDING_CSV_FIELDS``), in each file's rank order."""
    for analysis in report.files:
        for rank, finding in enumerate(analysis.findings, 1):
            first, last, count = finding_span(finding)
            lead = finding.evidence[0]
            seen = [e.first_seen for e in finding.evidence if e.first_seen is not None]
            last_seen = [e.last_seen for e in finding.evidence if e.last_seen is not None]
            yield {
                "source": analysis.source,
                "rank": rank,
                "id": finding.id,
                "severity": finding.severity,
                "title": finding.title,
                "kind": finding.kind,
                "origin": finding.origin,
                "confidence": finding.confidence,
                "template_id": lead.template_id,
                "template": lead.template,
                "count": count,
                "first_line": first,
                "last_line": last,
                "first_seen": min(seen).isoformat() if seen else None,
                "last_seen": max(last_seen).isoformat() if last_seen else None,
                "example_lines": " | ".join(
                    f"L{example.line}: {example.text}"
                    for item in finding.evidence
                    for example in item.examples[:2]
                ),
                "likely_cause": finding.likely_cause,
                "actions": " | ".join(finding.actions),
            }


def write_csv(report: LogAnalysisReport, stream: TextIO) -> int:
    """The findings as CSV; returns the number of rows."""
    writer = csv.DictWriter(stream, fieldnames=FINDING_CSV_FIELDS)
    writer.writeheader()
    rows = 0
    for row in finding_rows(report):
        writer.writerow(row)
        rows += 1
    return rows


def heat(row: TimelineRow) -> list[float]:
    """A timeline row's counts scaled to 0..1 on a log scale (its busiest window is 1)."""
    top = max(row.counts, default=0)
    if top == 0:
        return [0.0 for _ in row.counts]
    return [math.log1p(count) / math.log1p(top) for count in row.counts]
