"""The watch loop: lines from a source, a window closed every ``window_s`` seconds.

Lines are parsed as they arrive (``stream.IncrementalParser``) and mined into templates by
the persistent ``LogTemplateMiner`` (ids stay the same across runs that share ``--state``);
each record counts under its template in the open window. Windows follow the watcher's clock,
not the records' timestamps: a live log's window is the time its lines arrived in, which also
works for lines without a timestamp. At each close the ``detector`` gives the window's
anomalies, the metrics are updated, and the window is queued for emission: at once, or once
the explainer has answered when the window is explained (windows are emitted in order). The
source's checkpoint taken at the close is committed after the window is emitted.

The miner's state and the detector's history are saved at most every
``state_save_interval_s`` and when the watcher stops.
"""

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime

from contracts.log_watch import LogWatchWindow, WatchedTemplate, WatchExplanation
from contracts.settings import Settings
from contracts.store import ObjectStore
from telemetry.logs.state import load_miner, save_miner, state_location
from telemetry.logs.templates import LogTemplateMiner
from telemetry.logs.watch.detector import History, WindowDetector, WindowTally
from telemetry.logs.watch.explain import WindowExplainer
from telemetry.logs.watch.metrics import WatchMetrics
from telemetry.logs.watch.settings import LogWatchSettings
from telemetry.logs.watch.sources import LineSource, SourceLine
from telemetry.logs.watch.stream import IncrementalParser, StreamRecord

# How often the live view of the open window is offered to a listener (the TUI).
LIVE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class StateFiles:
    """Where the miner's state and the detector's history are kept (a path or S3 key)."""

    store: ObjectStore
    key: str

    @classmethod
    def at(cls, uri: str, settings: Settings) -> "StateFiles":
        """The state at ``uri`` (see ``telemetry.logs.state.state_location``)."""
        store, key = state_location(uri, settings)
        return cls(store, key)

    @property
    def history_key(self) -> str:
        """Beside the miner's state: ``state.json`` → ``state.watch.json``."""
        return f"{self.key.removesuffix('.json')}.watch.json"

    def load(self) -> tuple[LogTemplateMiner, History | None]:
        """The saved miner (a new one when none is saved) and the history saved with it.

        Raises:
            ValueError: When a file holds something that is not a state or a history.
        """
        if not self.store.exists(self.key):
            return LogTemplateMiner(), None  # a history without its miner names nothing
        miner = load_miner(self.store, self.key)
        if not self.store.exists(self.history_key):
            return miner, None
        return miner, History.from_bytes(self.store.read_bytes(self.history_key))

    def save(self, miner: LogTemplateMiner, history: History) -> None:
        """Save both, each atomically (the miner first: a history never names templates its
        miner does not have)."""
        save_miner(miner, self.store, self.key)
        self.store.write_bytes(self.history_key, history.to_bytes())


@dataclass(frozen=True)
class LiveWindow:
    """The open window so far, for a live view."""

    start: datetime
    records: int
    templates: list[WatchedTemplate]


@dataclass
class _Queued:
    window: LogWatchWindow
    explanation: "Future[WatchExplanation] | None"
    position: object


class Watcher:
    """Windows of a source (see the module docstring).

    Args:
        source: Where the lines come from.
        settings: Window length and thresholds.
        miner: The template miner (loaded from the state); a new one without.
        history: The detector's saved history.
        log_format: A LogPAI header format or a named-group regex, tried first on each line.
        metrics: The metrics to update.
        explainer: Explains anomalous windows; None: no explanations.
        state: Where the miner and the history are saved; None: not kept.
        clock: Monotonic seconds (a parameter for tests).
        now: The wall clock of window bounds (a parameter for tests).
    """

    def __init__(
        self,
        source: LineSource,
        settings: LogWatchSettings,
        *,
        miner: LogTemplateMiner | None = None,
        history: History | None = None,
        log_format: str | None = None,
        metrics: WatchMetrics | None = None,
        explainer: WindowExplainer | None = None,
        state: StateFiles | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.source = source
        self.settings = settings
        self.miner = miner or LogTemplateMiner()
        self.detector = WindowDetector(settings, history, self.miner.template_count)
        self.parser = IncrementalParser(log_format)
        self.metrics = metrics
        self.explainer = explainer
        self.state = state
        self.windows_closed = 0
        self._clock, self._now = clock, now
        self._tally = WindowTally()
        self._window_start = now()
        self._read = (source.stats.lines, source.stats.skipped)
        self._pending: deque[_Queued] = deque()
        self._saved_at = clock()
        if metrics is not None:
            metrics.lag.set_function(source.lag_seconds)
            metrics.templates_known.set(self.miner.template_count)

    def feed(self, lines: list[SourceLine]) -> None:
        """Parse and count lines that arrived in the open window."""
        self._count(self.parser.feed(lines))
        if self.metrics is not None:
            self.metrics.observe_reading(self.source.stats)

    def live(self) -> LiveWindow:
        """The open window so far (records still held by the parser not yet counted)."""
        known = self.detector.is_known
        return LiveWindow(
            self._window_start,
            self._tally.records,
            [
                WatchedTemplate(
                    template_id=t.template.template_id,
                    template=t.template.text,
                    count=t.count,
                    level=t.level,
                    new=not known(t.template.template_id),
                )
                for t in self._tally.ranked()
            ],
        )

    def close_window(self) -> LogWatchWindow:
        """Close the open window: its record, with its anomalies (not yet explained)."""
        self._count(self.parser.flush())
        if self.metrics is not None:
            self.metrics.observe_reading(self.source.stats)
        end = self._now()
        stats = self.source.stats
        lines, skipped = stats.lines - self._read[0], stats.skipped - self._read[1]
        self._read = (stats.lines, stats.skipped)
        verdict = self.detector.close(self._tally)
        window = LogWatchWindow(
            source=self.source.name,
            source_kind=self.source.kind,
            index=self.windows_closed,
            start=self._window_start,
            end=end,
            lines=lines,
            records=self._tally.records,
            skipped_lines=skipped,
            templates_known=self.miner.template_count,
            learning=verdict.learning,
            lag_seconds=round(self.source.lag_seconds(), 3),
            templates=verdict.templates,
            anomalies=verdict.anomalies,
        )
        self._tally = WindowTally()
        self._window_start = end
        self.windows_closed += 1
        if self.metrics is not None:
            self.metrics.observe_window(window, self.settings.metrics_top_templates)
        return window

    def run(
        self,
        emit: Callable[[LogWatchWindow], None],
        stop: threading.Event | None = None,
        on_live: Callable[[LiveWindow], None] | None = None,
        max_windows: int | None = None,
    ) -> int:
        """Watch until ``stop`` is set, the source ends, or ``max_windows`` were closed.

        The open window is closed at the end too when it holds any line, and every window
        is emitted before this returns (explanations waited for); the state is saved.

        Args:
            emit: Called with each window, in order, on this thread.
            stop: Set from elsewhere (a signal handler, the TUI) to stop.
            on_live: Called about every second with the open window so far.
            max_windows: Stop after this many windows.

        Returns:
            The number of windows emitted.
        """
        stop = stop or threading.Event()
        window_s, poll_s = self.settings.window_s, self.settings.poll_interval_s
        deadline = self._clock() + window_s
        next_live = self._clock() + LIVE_INTERVAL_S
        emitted = 0
        try:
            while not stop.is_set() and not self.source.exhausted:
                wait = max(0.0, min(poll_s, deadline - self._clock()))
                lines = self.source.poll(wait)
                if lines:
                    self.feed(lines)
                emitted += self._emit_ready(emit, wait=False)
                now = self._clock()
                if on_live is not None and now >= next_live:
                    on_live(self.live())
                    next_live = now + LIVE_INTERVAL_S
                if now >= deadline:
                    self._queue(self.close_window())
                    # Behind by more than a window (a stalled source): start afresh.
                    deadline = max(deadline + window_s, now + window_s / 2)
                    self._save(force=False)
                    if max_windows is not None and self.windows_closed >= max_windows:
                        break
            if self.source.exhausted or stop.is_set():
                lines = self.source.poll(0)  # what arrived with the end of the stream
                if lines:
                    self.feed(lines)
                self._close_final()
            emitted += self._emit_ready(emit, wait=True)
        finally:
            self._save(force=True)
        return emitted

    def _close_final(self) -> None:
        """The last, partial window, when it holds anything."""
        self._count(self.parser.flush())
        if self._tally.records or self.source.stats.lines > self._read[0]:
            self._queue(self.close_window())

    def _count(self, records: list[StreamRecord]) -> None:
        settings = self.settings
        for item in records:
            template = self.miner.add(item.record.first_line)
            self._tally.add(item, template, settings.examples, settings.example_chars)

    def _queue(self, window: LogWatchWindow) -> None:
        explainer = self.explainer
        future = explainer.submit(window) if explainer and explainer.wants(window) else None
        self._pending.append(_Queued(window, future, self.source.checkpoint()))

    def _emit_ready(self, emit: Callable[[LogWatchWindow], None], *, wait: bool) -> int:
        emitted = 0
        while self._pending:
            queued = self._pending[0]
            window = queued.window
            if queued.explanation is not None:
                if not wait and not queued.explanation.done():
                    break
                window = window.model_copy(update={"explanation": queued.explanation.result()})
            self._pending.popleft()
            emit(window)
            self.source.commit(queued.position)
            emitted += 1
        return emitted

    def _save(self, *, force: bool) -> None:
        if self.state is None:
            return
        now = self._clock()
        if force or now - self._saved_at >= self.settings.state_save_interval_s:
            self.state.save(self.miner, self.detector.history)
            self._saved_at = now
