"""Log anomalies per 1-minute tumbling window, unsupervised and streaming.

Each record is mined into a template, then windows of ``window`` seconds are closed in time
order and four signals are computed from the stream's own history (nothing is learned from
labels):

- ``new_template``: a template seen for the first time, or seen fewer than ``rare_below``
  times before (a rare event);
- ``spike``: a template occurring in the window far more often than its own history says
  (count ``>= min_spike`` and above its exponentially weighted mean + ``z`` standard deviations
  of its per-window counts, silent windows included);
- ``error_burst``: more ERROR/CRITICAL records in the window than the stream's history of
  errors per window allows (at least ``min_burst``);
- ``sequence_break``: a record whose template never followed the template before it.

A record is an *alert* when one signal flags it and its level is WARN or above: a new or
rare INFO record is a notice for the template inventory, not an alert. The signals are kept
on each alert so a reader sees why it fired.
"""

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from telemetry.logs.records import LogRecord

ALERT_LEVELS = frozenset({"WARN", "ERROR", "CRITICAL"})
ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
SIGNALS = ("new_template", "spike", "error_burst", "sequence_break")


@dataclass(frozen=True)
class DetectorSettings:
    """Thresholds of the signals (see the module docstring).

    Attributes:
        window: Window length in seconds.
        rare_below: A template seen fewer times than this before is new (rare).
        min_spike: Fewest occurrences in a window for a spike.
        min_burst: Fewest error records in a window for an error burst.
        z: Standard deviations above the mean for a spike or a burst.
        half_life: Windows after which history weighs half (of the EWMA).
    """

    window: float = 60.0
    rare_below: int = 10
    min_spike: int = 3
    min_burst: int = 2
    z: float = 3.0
    half_life: float = 60.0


@dataclass(frozen=True)
class WindowedRecord:
    """A record with its template id, as the detector consumes them."""

    record: LogRecord
    template_id: int


@dataclass(frozen=True)
class Alert:
    """One record the detector flags, with the signals that flagged it."""

    line: int
    window_start: datetime
    template_id: int
    level: str | None
    signals: tuple[str, ...]


@dataclass
class _Rate:
    """An exponentially weighted mean and variance of a count per window."""

    mean: float = 0.0
    variance: float = 0.0
    last_window: int | None = None

    def expected(self, window: int, decay: float) -> tuple[float, float]:
        """Mean and standard deviation at ``window``: windows without the count since the
        last update decay both (close to feeding them as zeros, without a loop)."""
        if self.last_window is None:
            return 0.0, 0.0
        factor = decay ** max(0, window - self.last_window - 1)
        return self.mean * factor, math.sqrt(self.variance * factor)

    def update(self, window: int, count: float, decay: float) -> None:
        mean, deviation = self.expected(window, decay)
        variance = deviation**2
        delta = count - mean
        self.mean = mean + (1 - decay) * delta
        self.variance = decay * (variance + (1 - decay) * delta**2)
        self.last_window = window


@dataclass
class LogAnomalyDetector:
    """The streaming detector: feed records in time order with ``observe``, then ``flush``."""

    settings: DetectorSettings = field(default_factory=DetectorSettings)
    _seen: Counter[int] = field(default_factory=Counter)
    _rates: dict[int, _Rate] = field(default_factory=dict)
    _errors: _Rate = field(default_factory=_Rate)
    _transitions: set[tuple[int, int]] = field(default_factory=set)
    _previous: int | None = None
    _window: int | None = None
    _pending: list[WindowedRecord] = field(default_factory=list)

    @property
    def _decay(self) -> float:
        return float(0.5 ** (1 / self.settings.half_life))

    def observe(self, item: WindowedRecord) -> list[Alert]:
        """Add one record; the alerts of the window it closes, if it closes one.

        Records without a timestamp join the current window.

        Args:
            item: The record and its template id.

        Returns:
            Alerts of the window that ended before this record (usually none).
        """
        stamp = item.record.timestamp
        window = self._window if stamp is None else int(stamp.timestamp() // self.settings.window)
        alerts: list[Alert] = []
        if self._window is not None and window is not None and window != self._window:
            alerts = self._close()
        if window is not None:
            self._window = window
        self._pending.append(item)
        return alerts

    def flush(self) -> list[Alert]:
        """Close the last window; its alerts."""
        return self._close() if self._pending else []

    def _close(self) -> list[Alert]:
        window = self._window if self._window is not None else 0
        items, self._pending = self._pending, []
        counts = Counter(item.template_id for item in items)
        spiking = self._spiking(counts, window)
        errors = sum(1 for item in items if item.record.level in ERROR_LEVELS)
        burst = self._is_burst(errors, window)
        start = datetime.fromtimestamp(window * self.settings.window, UTC)
        alerts = []
        for item in items:
            signals = set()
            if self._seen[item.template_id] < self.settings.rare_below:
                signals.add("new_template")
            if item.template_id in spiking:
                signals.add("spike")
            if burst and item.record.level in ERROR_LEVELS:
                signals.add("error_burst")
            if self._previous is not None and (self._previous, item.template_id) not in (
                self._transitions
            ):
                signals.add("sequence_break")
                self._transitions.add((self._previous, item.template_id))
            self._previous = item.template_id
            self._seen[item.template_id] += 1
            if signals and item.record.level in ALERT_LEVELS:
                ordered = tuple(name for name in SIGNALS if name in signals)
                alerts.append(
                    Alert(item.record.line, start, item.template_id, item.record.level, ordered)
                )
        for template_id, count in counts.items():
            self._rates[template_id].update(window, count, self._decay)
        self._errors.update(window, errors, self._decay)
        return alerts

    def _spiking(self, counts: Counter[int], window: int) -> set[int]:
        """Known templates occurring far more often in the window than their history says."""
        spiking = set()
        for template_id, count in counts.items():
            rate = self._rates.setdefault(template_id, _Rate())
            mean, deviation = rate.expected(window, self._decay)
            if (
                self._seen[template_id] >= self.settings.rare_below
                and count >= self.settings.min_spike
                and count > mean + self.settings.z * deviation
            ):
                spiking.add(template_id)
        return spiking

    def _is_burst(self, errors: int, window: int) -> bool:
        """More error records in the window than the stream's history of them allows."""
        mean, deviation = self._errors.expected(window, self._decay)
        return errors >= self.settings.min_burst and errors > mean + self.settings.z * deviation


def detect(
    items: Iterable[WindowedRecord], settings: DetectorSettings | None = None
) -> Iterator[Alert]:
    """Every alert of a stream of templated records, in time order.

    Args:
        items: Records with their template ids, in time order.
        settings: Thresholds (the defaults without).

    Yields:
        The alerts, window by window.
    """
    detector = LogAnomalyDetector(settings or DetectorSettings())
    for item in items:
        yield from detector.observe(item)
    yield from detector.flush()
