"""A window as text for a terminal (``--format text``): one line per window, then one line
per anomaly with an example, and the explanation when there is one."""

from rich.console import Console
from rich.markup import escape

from contracts.log_watch import LogWatchWindow

SEVERITY_STYLE = {
    "critical": "bold red",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


def print_window(window: LogWatchWindow, console: Console) -> None:
    """Print one window."""
    head = (
        f"[bold]{window.start:%H:%M:%S}–{window.end:%H:%M:%S}[/bold] window {window.index}: "
        f"{window.lines:,} lines, {window.records:,} records, {len(window.templates)} templates "
        f"({window.templates_known:,} known)"
    )
    if window.learning:
        head += " [dim]learning[/dim]"
    if window.anomalies:
        count = len(window.anomalies)
        head += f", [bold red]{count} anomal{'ies' if count > 1 else 'y'}[/bold red]"
    console.print(head, highlight=False)
    for anomaly in window.anomalies:
        style = SEVERITY_STYLE[anomaly.severity]
        console.print(
            f"  [{style}]{anomaly.severity:<8}[/{style}] {anomaly.kind:<12} "
            f"#{anomaly.template_id} {escape(anomaly.template)}  "
            f"[dim]({escape(anomaly.detail)})[/dim]",
            highlight=False,
        )
        example = anomaly.examples[0]
        console.print(
            f"    [dim]{escape(example.origin)}:{example.line}[/dim] {escape(example.text)}",
            highlight=False,
        )
    explanation = window.explanation
    if explanation is not None:
        if explanation.root_cause:
            console.print(
                f"  [bold]explanation[/bold] ({explanation.status}): "
                f"{escape(explanation.root_cause)}",
                highlight=False,
            )
            for action in explanation.actions:
                console.print(f"    - {escape(action)}", highlight=False)
        else:
            reason = escape(explanation.reason or "")
            console.print(
                f"  [dim]explanation {explanation.status}: {reason}[/dim]",
                highlight=False,
            )
