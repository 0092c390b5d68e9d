"""``vigil logs watch --tui``: the watch in a terminal UI (Textual; works over SSH).

Left: the templates, most frequent first, with their count in the last window, their count
so far in the open window, their level and a sparkline of their counts over the last
windows; under them, a larger sparkline of the highlighted template. Right: the anomalies,
newest first, and a detail pane with the highlighted anomaly's template, examples and the
window's explanation. Keys: ``t`` templates, ``a`` anomalies, ``tab`` the next pane, arrows
and page keys inside a pane, ``q`` quit.

The watcher runs on its own thread and hands windows over as messages
(``MessagePump.post_message`` is thread-safe and never waits), so a closing UI can never
block the watcher, nor the watcher the UI.
"""

import threading
from collections import deque
from contextlib import suppress
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Sparkline, Static

from contracts.log_watch import LogWatchWindow, WatchAnomaly
from telemetry.logs.watch.render import SEVERITY_STYLE
from telemetry.logs.watch.watcher import LiveWindow, Watcher

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
HISTORY_WINDOWS = 30
MAX_ANOMALY_ROWS = 500
TEMPLATE_CHARS = 90


def sparkline(values: list[int]) -> str:
    """Counts as block characters, scaled to the largest (a blank for a zero)."""
    peak = max(values, default=0)
    if peak == 0:
        return " " * len(values)
    top = len(SPARK_BLOCKS) - 1
    return "".join(" " if v == 0 else SPARK_BLOCKS[round(v / peak * top)] for v in values)


class WindowClosed(Message):
    """The watcher emitted a window."""

    def __init__(self, window: LogWatchWindow) -> None:
        super().__init__()
        self.window = window


class LiveUpdate(Message):
    """The open window so far."""

    def __init__(self, live: LiveWindow) -> None:
        super().__init__()
        self.live = live


class LogWatchApp(App[None]):
    """The watch's terminal UI (see the module docstring).

    Args:
        watcher: The watcher to run on a thread; None shows only what ``add_window`` is given.
        max_windows: Stop the watcher after this many windows.
    """

    TITLE = "vigil logs watch"
    CSS = """
    #left { width: 3fr; }
    #right { width: 2fr; }
    #status { height: 2; padding: 0 1; }
    #templates { height: 1fr; }
    #trend-title { height: 1; padding: 0 1; }
    #trend { height: 3; margin: 0 1; }
    #anomalies { height: 1fr; }
    #detail { height: 1fr; border-top: solid $accent; padding: 0 1; overflow-y: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("t", "focus_templates", "Templates"),
        Binding("a", "focus_anomalies", "Anomalies"),
    ]

    def __init__(self, watcher: Watcher | None = None, max_windows: int | None = None) -> None:
        super().__init__()
        self.watcher = watcher
        self.max_windows = max_windows
        self.windows: list[LogWatchWindow] = []
        self.anomalies: list[tuple[LogWatchWindow, WatchAnomaly]] = []
        self._history: dict[int, deque[int]] = {}
        self._texts: dict[int, str] = {}
        self._levels: dict[int, str | None] = {}
        self._last: dict[int, int] = {}
        self._live: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal():
            with Vertical(id="left"):
                yield Static("waiting for the first window…", id="status")
                yield DataTable(id="templates", cursor_type="row", zebra_stripes=True)
                yield Static("", id="trend-title")
                yield Sparkline([], id="trend")
            with Vertical(id="right"):
                yield DataTable(id="anomalies", cursor_type="row")
                yield Static("no anomaly yet", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        templates = self.query_one("#templates", DataTable)
        templates.add_column("id", key="id")
        templates.add_column("last", key="last")
        templates.add_column("now", key="now")
        templates.add_column("level", key="level")
        templates.add_column(f"last {HISTORY_WINDOWS} windows", key="trend")
        templates.add_column("template", key="template")
        anomalies = self.query_one("#anomalies", DataTable)
        anomalies.add_columns("window", "severity", "kind", "id", "count", "template")
        if self.watcher is not None:
            self.sub_title = self.watcher.source.name
            self._thread = threading.Thread(target=self._watch, name="watch", daemon=True)
            self._thread.start()
        templates.focus()

    def stop_watcher(self, timeout: float | None = None) -> None:
        """Stop the watcher thread and wait for it (it emits the open window and saves the
        state first). Called once the UI has closed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _watch(self) -> None:
        assert self.watcher is not None
        self.watcher.run(
            lambda window: self._post(WindowClosed(window)),
            self._stop,
            on_live=lambda live: self._post(LiveUpdate(live)),
            max_windows=self.max_windows,
        )

    def _post(self, message: Message) -> None:
        # Once the UI has closed (its event loop too) the watcher only finishes its run.
        with suppress(RuntimeError):
            self.post_message(message)

    # --- what the watcher sends -----------------------------------------------------------

    def on_window_closed(self, message: WindowClosed) -> None:
        self.add_window(message.window)

    def on_live_update(self, message: LiveUpdate) -> None:
        self.show_live(message.live)

    def add_window(self, window: LogWatchWindow) -> None:
        """Show a closed window: its counts, its anomalies, the status line."""
        self.windows.append(window)
        counts = {t.template_id: t.count for t in window.templates}
        for template in window.templates:
            self._texts[template.template_id] = template.template
            self._levels[template.template_id] = template.level
        for template_id in set(self._history) | set(counts):
            history = self._history.setdefault(template_id, deque(maxlen=HISTORY_WINDOWS))
            history.append(counts.get(template_id, 0))
        self._last = counts
        self._live = {}
        # Newest window first; within a window, most severe first (the window's order).
        self.anomalies[0:0] = [(window, anomaly) for anomaly in window.anomalies]
        del self.anomalies[MAX_ANOMALY_ROWS:]
        self._refresh_templates()
        self._refresh_anomalies()
        status = (
            f"window {window.index} ({window.end:%H:%M:%S}): {window.lines:,} lines, "
            f"{window.records:,} records, {len(window.templates)} templates, "
            f"{window.templates_known:,} known, lag {window.lag_seconds:.1f} s"
        )
        if window.learning:
            status += " — learning the usual templates"
        self.query_one("#status", Static).update(
            f"{status}\n{len(window.anomalies)} anomalies in the window, "
            f"{len(self.anomalies)} in all"
        )

    def show_live(self, live: LiveWindow) -> None:
        """Show the open window's counts so far."""
        self._live = {t.template_id: t.count for t in live.templates}
        for template in live.templates:
            self._texts.setdefault(template.template_id, template.template)
            self._levels.setdefault(template.template_id, template.level)
        self._refresh_templates()

    # --- panes ----------------------------------------------------------------------------

    def _refresh_templates(self) -> None:
        table = self.query_one("#templates", DataTable)
        selected = self._selected_template()
        ids = sorted(
            self._texts,
            key=lambda tid: (-self._last.get(tid, 0), -self._live.get(tid, 0), tid),
        )
        table.clear()
        for template_id in ids:
            level = self._levels.get(template_id)
            style = "red" if level in ("ERROR", "CRITICAL") else "yellow" if level == "WARN" else ""
            table.add_row(
                str(template_id),
                self._last.get(template_id, 0),
                self._live.get(template_id, 0),
                Text(level or "-", style=style),
                sparkline(self._counts(template_id)),
                self._texts[template_id][:TEMPLATE_CHARS],
                key=str(template_id),
            )
        if selected is not None and selected in ids:
            table.move_cursor(row=ids.index(selected))
        self._show_trend()

    def _refresh_anomalies(self) -> None:
        table = self.query_one("#anomalies", DataTable)
        row = table.cursor_row
        table.clear()
        for window, anomaly in self.anomalies:
            table.add_row(
                str(window.index),
                Text(anomaly.severity, style=SEVERITY_STYLE[anomaly.severity]),
                anomaly.kind,
                str(anomaly.template_id),
                anomaly.count,
                anomaly.template[:TEMPLATE_CHARS],
            )
        if self.anomalies:
            table.move_cursor(row=min(row, len(self.anomalies) - 1))
            self._show_detail(min(row, len(self.anomalies) - 1))

    def _selected_template(self) -> int | None:
        table = self.query_one("#templates", DataTable)
        if table.row_count == 0:
            return None
        return int(table.get_row_at(table.cursor_row)[0])

    def _show_trend(self) -> None:
        template_id = self._selected_template()
        if template_id is None:
            return
        self.query_one("#trend-title", Static).update(
            f"template {template_id}: {self._texts[template_id][:TEMPLATE_CHARS]}"
        )
        self.query_one("#trend", Sparkline).data = self._counts(template_id)

    def _counts(self, template_id: int) -> list[int]:
        """The template's counts over the last windows, zeros before it first appeared."""
        history = list(self._history.get(template_id, []))
        shown = min(len(self.windows), HISTORY_WINDOWS)
        return [0] * (shown - len(history)) + history

    def _show_detail(self, index: int) -> None:
        if not 0 <= index < len(self.anomalies):
            return
        window, anomaly = self.anomalies[index]
        lines = [
            f"[b]{anomaly.severity} {anomaly.kind}[/b] in window {window.index} "
            f"({window.start:%H:%M:%S}–{window.end:%H:%M:%S})",
            f"template {anomaly.template_id}: {_escape(anomaly.template)}",
            f"level {anomaly.level or '-'}: {_escape(anomaly.detail)}",
            "",
            "[b]examples[/b]",
            *(f"  {_escape(e.origin)}:{e.line}  {_escape(e.text)}" for e in anomaly.examples),
            "",
        ]
        explanation = window.explanation
        if explanation is None:
            lines.append("[dim]not explained (no --explain-url, or not severe enough)[/dim]")
        else:
            lines.append(f"[b]explanation[/b] ({explanation.status})")
            if explanation.root_cause:
                lines.append(_escape(explanation.root_cause))
            if explanation.impact:
                lines.append(f"impact: {_escape(explanation.impact)}")
            lines += [f"  - {_escape(action)}" for action in explanation.actions]
            if explanation.reason:
                lines.append(f"[dim]{_escape(explanation.reason)}[/dim]")
        self.query_one("#detail", Static).update("\n".join(lines))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "anomalies":
            self._show_detail(event.cursor_row)
        else:
            self._show_trend()

    def action_focus_templates(self) -> None:
        self.query_one("#templates", DataTable).focus()

    def action_focus_anomalies(self) -> None:
        self.query_one("#anomalies", DataTable).focus()


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
