"""Counts per template in a window, and the window's anomalies against the stream's history.

Three kinds, each from the stream's own history (nothing is learned from labels):

- ``new_template``: a template the miner never saw before this window (in this run, in the
  template state it loaded, or in the history saved with it);
- ``spike``: a template known for ``spike_min_windows`` windows occurring in the window far
  more than usual: at least ``spike_min_count`` records, ``spike_ratio`` times its mean, and
  ``spike_z`` standard deviations above it. The deviation is at least the square root of the
  mean (a Poisson count's): a template at a steady rate has an estimated deviation near 0,
  and one more record than usual is no spike;
- ``error_burst``: more ERROR/CRITICAL records in the window than the stream's history allows
  (the same three tests with ``burst_*``); each error template of the window is listed.

Means and variances are exponentially weighted per window (half-life ``half_life_windows``),
windows without the template included. A watcher that starts without any template is
*learning* for ``learning_windows`` windows: every template is new then, and nothing is
reported. The history is saved beside the miner's state, so a restarted watcher keeps it.
"""

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from contracts.log_analysis import SEVERITIES, Severity
from contracts.log_watch import (
    WATCH_ANOMALY_KINDS,
    WatchAnomaly,
    WatchAnomalyKind,
    WatchedTemplate,
    WatchExample,
)
from telemetry.logs.templates import Template
from telemetry.logs.watch.settings import LogWatchSettings
from telemetry.logs.watch.stream import StreamRecord

HISTORY_VERSION = 1
ERROR_LEVELS = frozenset({"ERROR", "CRITICAL"})
LEVEL_RANK = {"DEBUG": 0, "INFO": 1, "WARN": 2, "ERROR": 3, "CRITICAL": 4}
NEW_TEMPLATE_SEVERITY: dict[str | None, Severity] = {
    "CRITICAL": "critical",
    "ERROR": "high",
    "WARN": "medium",
}
MAX_BURST_TEMPLATES = 5


@dataclass
class Ewma:
    """An exponentially weighted mean and variance of a count per window.

    Kept as weighted sums (of weights, counts and squared counts), each decayed once per
    window: the mean of a short history is its plain mean (no bias towards an initial zero),
    and the windows without the count since the last update are zeros, added in closed form
    (no loop over a long silence).
    """

    weight: float = 0.0
    total: float = 0.0
    squares: float = 0.0
    last_window: int | None = None

    def _at(self, window: int, decay: float) -> tuple[float, float, float]:
        """The sums over the windows before ``window``."""
        if self.last_window is None:
            return 0.0, 0.0, 0.0
        silent = max(0, window - self.last_window - 1)
        factor = decay**silent
        # Each silent window adds a zero of weight 1: sum of decay**i for i < silent.
        added = silent if decay == 1.0 else (1 - factor) / (1 - decay)
        return self.weight * factor + added, self.total * factor, self.squares * factor

    def expected(self, window: int, decay: float) -> tuple[float, float]:
        """Mean and standard deviation over the windows before ``window``."""
        weight, total, squares = self._at(window, decay)
        if weight == 0.0:
            return 0.0, 0.0
        mean = total / weight
        return mean, math.sqrt(max(0.0, squares / weight - mean**2))

    def update(self, window: int, count: float, decay: float) -> None:
        """Add the count of ``window``."""
        weight, total, squares = self._at(window, decay)
        self.weight = weight * decay + 1.0
        self.total = total * decay + count
        self.squares = squares * decay + count * count
        self.last_window = window

    def to_list(self) -> list[float | int | None]:
        return [self.weight, self.total, self.squares, self.last_window]

    @classmethod
    def from_list(cls, values: list[float | int | None]) -> "Ewma":
        weight, total, squares, last = values
        return cls(
            float(weight or 0.0),
            float(total or 0.0),
            float(squares or 0.0),
            None if last is None else int(last),
        )


@dataclass
class TemplateHistory:
    """When a template was first seen (window index) and its rate per window."""

    first_window: int
    rate: Ewma = field(default_factory=Ewma)


@dataclass
class History:
    """What the detector remembers of the stream; saved beside the miner's state."""

    windows: int = 0
    templates: dict[int, TemplateHistory] = field(default_factory=dict)
    errors: Ewma = field(default_factory=Ewma)

    def to_bytes(self) -> bytes:
        document = {
            "version": HISTORY_VERSION,
            "windows": self.windows,
            "errors": self.errors.to_list(),
            "templates": {
                str(tid): [h.first_window, *h.rate.to_list()] for tid, h in self.templates.items()
            },
        }
        return json.dumps(document).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> "History":
        """The history ``to_bytes`` wrote.

        Raises:
            ValueError: When the bytes are not a history of this version.
        """
        try:
            document = json.loads(data)
            if document.get("version") != HISTORY_VERSION:
                raise ValueError(f"version {document.get('version')!r}")
            templates = {
                int(tid): TemplateHistory(int(entry[0]), Ewma.from_list(entry[1:]))
                for tid, entry in document["templates"].items()
            }
            return cls(int(document["windows"]), templates, Ewma.from_list(document["errors"]))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(
                f"not a log watch history (version {HISTORY_VERSION}): {error}"
            ) from error


@dataclass
class TemplateTally:
    """A template's records in the open window."""

    template: Template
    count: int = 0
    errors: int = 0
    level: str | None = None
    examples: list[WatchExample] = field(default_factory=list)


@dataclass
class WindowTally:
    """What the open window has seen so far."""

    lines: int = 0
    records: int = 0
    errors: int = 0
    templates: dict[int, TemplateTally] = field(default_factory=dict)

    def add(self, item: StreamRecord, template: Template, examples: int, chars: int) -> None:
        """Count one record under its template (keeping its first line as an example)."""
        self.records += 1
        tally = self.templates.get(template.template_id)
        if tally is None:
            tally = self.templates[template.template_id] = TemplateTally(template)
        tally.template = template  # the latest text: Drain generalises templates as it learns
        tally.count += 1
        level = item.record.level
        if level in ERROR_LEVELS:
            tally.errors += 1
            self.errors += 1
        if level is not None and LEVEL_RANK.get(level, 0) >= LEVEL_RANK.get(tally.level or "", -1):
            tally.level = level
        if len(tally.examples) < examples:
            text = item.first.text  # the line as written, header included
            tally.examples.append(
                WatchExample(
                    line=max(1, item.record.line),
                    origin=item.first.origin,
                    text=text if len(text) <= chars else text[: chars - 1] + "…",
                )
            )

    def ranked(self) -> list[TemplateTally]:
        """Most frequent first (ties: the lower id)."""
        return sorted(self.templates.values(), key=lambda t: (-t.count, t.template.template_id))


@dataclass(frozen=True)
class WindowVerdict:
    """A closed window's templates and anomalies, as the record reports them."""

    templates: list[WatchedTemplate]
    anomalies: list[WatchAnomaly]
    learning: bool


class WindowDetector:
    """Flags each closed window's anomalies and keeps the history (see the module docstring).

    Args:
        settings: The thresholds.
        history: What a previous run saved; None for a fresh start.
        known_templates: Templates the miner knew at the start (ids 1..known_templates):
            known, even without a history (a state made by ``vigil logs parse --state``).
    """

    def __init__(
        self, settings: LogWatchSettings, history: History | None, known_templates: int
    ) -> None:
        self.settings = settings
        self.history = history or History()
        self.known_templates = known_templates
        self._fresh = known_templates == 0 and not self.history.templates
        self._closed_here = 0

    @property
    def learning(self) -> bool:
        """Still learning the usual templates of a stream watched from scratch."""
        return self._fresh and self._closed_here < self.settings.learning_windows

    @property
    def _decay(self) -> float:
        return float(0.5 ** (1 / self.settings.half_life_windows))

    def is_known(self, template_id: int) -> bool:
        return template_id in self.history.templates or template_id <= self.known_templates

    def close(self, tally: WindowTally) -> WindowVerdict:
        """The window's verdict; its counts then join the history."""
        history, decay, window = self.history, self._decay, self.history.windows
        learning = self.learning
        ranked = tally.ranked()
        new = {t.template.template_id for t in ranked if not self.is_known(t.template.template_id)}
        anomalies: list[WatchAnomaly] = []
        if not learning:
            for item in ranked:
                template_id = item.template.template_id
                if template_id in new:
                    anomalies.append(self._new_template(item))
                elif (spike := self._spike(item, window, decay)) is not None:
                    anomalies.append(spike)
            anomalies += self._burst(tally, ranked, window, decay)
        anomalies.sort(key=_anomaly_order)
        templates = [
            WatchedTemplate(
                template_id=t.template.template_id,
                template=t.template.text,
                count=t.count,
                level=t.level,
                new=t.template.template_id in new,
            )
            for t in ranked
        ]
        for item in ranked:
            template_id = item.template.template_id
            entry = history.templates.get(template_id)
            if entry is None:
                entry = history.templates[template_id] = TemplateHistory(first_window=window)
            entry.rate.update(window, item.count, decay)
        history.errors.update(window, tally.errors, decay)
        history.windows += 1
        self._closed_here += 1
        return WindowVerdict(templates, anomalies, learning)

    def _new_template(self, item: TemplateTally) -> WatchAnomaly:
        return _anomaly(
            item,
            "new_template",
            NEW_TEMPLATE_SEVERITY.get(item.level, "low"),
            item.count,
            0.0,
            f"never seen before this window: {item.count} record{'s' * (item.count != 1)}",
        )

    def _spike(self, item: TemplateTally, window: int, decay: float) -> WatchAnomaly | None:
        settings = self.settings
        entry = self.history.templates.get(item.template.template_id)
        if entry is None or window - entry.first_window < settings.spike_min_windows:
            return None
        mean, deviation = entry.rate.expected(window, decay)
        if not _exceeds(
            item.count,
            mean,
            deviation,
            settings.spike_min_count,
            settings.spike_ratio,
            settings.spike_z,
        ):
            return None
        severity: Severity = "high" if item.level in ERROR_LEVELS else "medium"
        return _anomaly(
            item,
            "spike",
            severity,
            item.count,
            mean,
            f"{item.count} records in the window, usually {mean:.1f}",
        )

    def _burst(
        self, tally: WindowTally, ranked: list[TemplateTally], window: int, decay: float
    ) -> list[WatchAnomaly]:
        settings = self.settings
        if self.history.windows == 0:
            return []  # no window to compare with yet
        mean, deviation = self.history.errors.expected(window, decay)
        if not _exceeds(
            tally.errors,
            mean,
            deviation,
            settings.burst_min_count,
            settings.burst_ratio,
            settings.burst_z,
        ):
            return []
        detail = f"{tally.errors} ERROR/CRITICAL records in the window, usually {mean:.1f}"
        errors = sorted((t for t in ranked if t.errors), key=lambda t: -t.errors)
        return [
            _anomaly(
                item,
                "error_burst",
                "critical" if item.level == "CRITICAL" else "high",
                item.errors,
                mean,
                detail,
            )
            for item in errors[:MAX_BURST_TEMPLATES]
        ]


def _exceeds(
    count: float, mean: float, deviation: float, minimum: int, ratio: float, z: float
) -> bool:
    """At least ``minimum``, above ``ratio`` times the mean, and ``z`` deviations above it
    (the deviation at least a Poisson count's, the square root of the mean)."""
    spread = max(deviation, math.sqrt(mean))
    return count >= minimum and count > ratio * mean and count > mean + z * spread


def _anomaly(
    item: TemplateTally,
    kind: WatchAnomalyKind,
    severity: Severity,
    count: int,
    expected: float,
    detail: str,
) -> WatchAnomaly:
    return WatchAnomaly(
        kind=kind,
        severity=severity,
        template_id=item.template.template_id,
        template=item.template.text,
        level=item.level,
        count=max(1, count),
        expected=round(expected, 3),
        detail=detail,
        examples=list(item.examples),
    )


def _anomaly_order(anomaly: WatchAnomaly) -> tuple[int, int, int, int]:
    return (
        SEVERITIES.index(anomaly.severity),
        WATCH_ANOMALY_KINDS.index(anomaly.kind),
        -anomaly.count,
        anomaly.template_id,
    )


def most_severe(anomalies: Iterable[WatchAnomaly]) -> Severity | None:
    """The most severe severity among ``anomalies`` (None when there are none)."""
    ranks = [SEVERITIES.index(a.severity) for a in anomalies]
    return SEVERITIES[min(ranks)] if ranks else None  # type: ignore[return-value]
